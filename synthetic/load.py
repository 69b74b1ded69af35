"""Create the NPD tables in DuckDB from the schema declaration and bulk-load generated data.

``generate_database`` writes into a temporary file beside the target and renames it into
place only when every table, constraint and the data version are written, so an interrupted
run (Ctrl-C, kill, a full disk) leaves any previous database untouched.

The tables carry every declared NOT NULL and CHECK constraint, enforced by DuckDB on insert.
Their keys (PRIMARY KEY, UNIQUE) are verified by the loader instead of being DuckDB indexes,
and recorded as verified on each table (``integrity.py``): the indexes would not fit in
memory at national scale. ``key_indexes=True`` declares them in DuckDB as well.
"""

# SQL here is assembled from names in the schema declaration and constants, never from input.
# ruff: noqa: S608
from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import sqlglot
from sqlglot import exp

from synthetic import GENERATOR_VERSION, codes, schema
from synthetic.keys import attestation, attested_keys

if TYPE_CHECKING:  # the generator (numpy, Arrow, Faker) is imported only to generate
    import pyarrow as pa

    from synthetic.generator import Generator, YearRange
    from synthetic.integrity import ChunkChecks

Progress = Callable[[str, int, int], None]  # (what is under way, steps done, steps in all)
METADATA_TABLE = "dataset_metadata"
MAX_PUPILS = 50_000_000
# Declared foreign keys are verified on each chunk's Arrow data before it is inserted
# (``integrity.ChunkChecks``) rather than by DuckDB on every insert: checking them row by row
# doubles the load (1M pupils: 57 s with the pupil_id keys alone, 28 s without), and the
# anti-joins of ``verify_references`` grow with the rows (2M pupils: 1.8 s); the per-chunk
# checks cost milliseconds. The database is never written again after generation, so the
# one-time check gives the same guarantee.
# ``enforce_foreign_keys=True`` declares them in DuckDB as well.
GENERATION_MEMORY_LIMIT = "2GB"  # DuckDB's share while generating (it spills beyond it)
#: Tables inserted on a cursor of their own, beside the others, so that two cores load at
#: once; each table is inserted by one cursor, in chunk order (its rows stay in key order).
LANES: tuple[tuple[str, ...], ...] = (
    ("census",),
    ("pupils", "ks2", "ks4", "absence", "exclusions"),
)


class GenerationError(Exception):
    """Generation cannot proceed: bad arguments, an existing database, an unwritable place."""


@dataclass(frozen=True)
class DataVersion:
    """What the audit log cites: which data a released number was computed from.

    ``id`` is short and stable for the same seed, size, years and generator version.
    """

    seed: int
    pupils: int
    first_year: int
    last_year: int
    generator_version: str
    digest: str
    created_at: str
    rows: dict[str, int] = field(default_factory=dict, compare=False)
    seconds: float | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return f"npd-g{self.generator_version}-{self.digest[:12]}"

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "seed": self.seed,
            "pupils": self.pupils,
            "years": f"{self.first_year}-{self.last_year}",
            "generator_version": self.generator_version,
            "digest": self.digest,
            "created_at": self.created_at,
            "rows": dict(self.rows),
        }


def _check_sql(col: schema.Column) -> str | None:
    """A CHECK constraint keeping a small public domain closed (NULL passes a CHECK).

    Long domains are left out: an ``IN`` over the 153 LA codes costs ~2.5 s of CPU per 1M
    pupils on insert; ``la_code`` is closed by its foreign key to ``local_authorities``
    instead, verified after loading.
    """
    if col.domain is None or col.dtype not in ("VARCHAR", "SMALLINT") or len(col.domain) > 40:
        return None
    if col.dtype == "VARCHAR":
        values = ", ".join("'" + str(v).replace("'", "''") + "'" for v in col.domain)
    else:
        values = ", ".join(str(int(v)) for v in col.domain)  # type: ignore[call-overload]
    return f"{col.name} IN ({values})"


def create_table_sql(
    table: schema.Table, foreign_keys: bool = False, value_checks: bool = True, keys: bool = True
) -> str:
    """``CREATE TABLE`` with types, NOT NULL, keys, CHECKs (and foreign keys) from the schema.

    ``value_checks=False`` keeps only the constraints the privacy bounds rely on (keys,
    UNIQUE, NOT NULL and the CHECKs on key columns, such as ``exclusion_seq BETWEEN 1 AND
    6``): the neighbour tests use it to put values outside the declared ranges in front of
    the engine, whose clamps must hold anyway.

    >>> "PRIMARY KEY (pupil_id, academic_year)" in create_table_sql(schema.table("census"))
    True
    """
    parts = [f"{c.name} {c.dtype}{'' if c.nullable else ' NOT NULL'}" for c in table.columns]
    if keys:  # keys=False: verified instead (by the loader, or by the snapshot's query)
        parts.append(f"PRIMARY KEY ({', '.join(table.primary_key)})")
        parts += [f"UNIQUE ({', '.join(u)})" for u in table.unique]
    checks = [*table.checks, *(s for c in table.columns if (s := _check_sql(c)))]
    if not value_checks:
        keys = set(table.primary_key) - {"pupil_id", "academic_year"}
        checks = [c for c in checks if c.split(" ", 1)[0] in keys]
    parts += [f"CHECK ({c})" for c in checks]
    for col, ref in table.foreign_keys if foreign_keys else ():
        ref_table, ref_col = ref.split(".")
        parts.append(f"FOREIGN KEY ({col}) REFERENCES {ref_table} ({ref_col})")
    return f"CREATE TABLE {table.name} (\n  " + ",\n  ".join(parts) + "\n)"


def declared_constraints(
    tables: Iterable[schema.Table] | None = None, keys: bool = True
) -> set[tuple[str, str, str]]:
    """Every PRIMARY KEY, UNIQUE, NOT NULL and CHECK constraint the schema declares (or
    ``tables`` declare), as ``(table, kind, columns or expression)`` in the form
    ``duckdb_constraints()`` reports."""
    wanted: set[tuple[str, str, str]] = set()
    for table in schema.TABLES.values() if tables is None else tables:
        if keys:
            wanted.add((table.name, "PRIMARY KEY", ", ".join(table.primary_key)))
            wanted |= {(table.name, "UNIQUE", ", ".join(u)) for u in table.unique}
        wanted |= {(table.name, "NOT NULL", c.name) for c in table.columns if not c.nullable}
        checks = [*table.checks, *(s for c in table.columns if (s := _check_sql(c)))]
        wanted |= {(table.name, "CHECK", _normal_check(c)) for c in checks}
    return wanted


def missing_constraints(
    con: duckdb.DuckDBPyConnection,
    tables: Iterable[schema.Table] | None = None,
    keys: bool = True,
) -> list[str]:
    """The declared constraints a database lacks, each named (``census: PRIMARY KEY
    (pupil_id, academic_year)``); empty when every one is in force. The engine's
    contribution bounds rely on them, so a file that lacks one is not served.

    A key is in force when DuckDB declares it (an index) or when the loader recorded on
    the table that it verified it (``integrity.attested_keys``); NOT NULL and CHECK
    constraints only when DuckDB declares them."""
    found: set[tuple[str, str, str]] = attested_keys(con) if keys else set()
    rows = con.execute(
        "SELECT table_name, constraint_type, constraint_column_names, expression "
        "FROM duckdb_constraints() WHERE database_name = current_database()"
    ).fetchall()
    for table, kind, columns, expression in rows:
        if kind == "CHECK":
            found.add((table, kind, _normal_check(expression or "")))
        else:
            found.add((table, kind, ", ".join(columns)))
    rank = {"PRIMARY KEY": 0, "UNIQUE": 1, "CHECK": 2, "NOT NULL": 3}  # keys first
    missing = sorted(declared_constraints(tables, keys) - found, key=lambda c: (rank[c[1]], c))
    return [f"{table}: {kind} ({what})" for table, kind, what in missing]


def _normal_check(text: str) -> str:
    """A CHECK expression in one canonical spelling (brackets and spacing aside)."""
    tree = sqlglot.parse_one(text, read="duckdb")
    while isinstance(tree, exp.Paren):
        tree = tree.this
    for paren in list(tree.find_all(exp.Paren)):
        paren.replace(paren.this)
    return tree.sql(dialect="duckdb")


def create_tables(
    con: duckdb.DuckDBPyConnection, foreign_keys: bool = False, key_indexes: bool = False
) -> None:
    """The declared tables, with DuckDB indexes for their keys only if ``key_indexes`` (or
    ``foreign_keys``: DuckDB needs an index on a referenced column)."""
    for table in schema.TABLES.values():
        con.execute(create_table_sql(table, foreign_keys, keys=key_indexes or foreign_keys))
    con.execute(
        f"CREATE TABLE {METADATA_TABLE} (seed BIGINT, pupils BIGINT, first_year SMALLINT, "
        "last_year SMALLINT, generator_version VARCHAR, digest VARCHAR, rows VARCHAR, "
        "created_at VARCHAR)"
    )


def insert_arrow(con: duckdb.DuckDBPyConnection, name: str, data: pa.Table) -> None:
    """Bulk insert, by column name, through DuckDB's zero-copy Arrow scan."""
    cols = ", ".join(data.column_names)
    con.register(f"_incoming_{name}", data)
    try:
        con.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM _incoming_{name}")
    finally:
        con.unregister(f"_incoming_{name}")


def content_digest(con: duckdb.DuckDBPyConnection) -> tuple[str, dict[str, int]]:
    """SHA-256 over each table's row count and order-independent XOR of row hashes.

    Cheap (one scan per table, in SQL) and independent of insertion order; rows are unique
    by primary key (verified when they were generated), so the XOR cannot cancel.
    """
    h = hashlib.sha256()
    rows: dict[str, int] = {}
    for table in schema.TABLES.values():
        cols = ", ".join(table.column_names)
        count, xor = con.execute(
            f"SELECT count(*), coalesce(bit_xor(hash({cols})), 0) FROM {table.name}"
        ).fetchall()[0]
        rows[table.name] = int(count)
        h.update(f"{table.name}:{count}:{xor};".encode())
    return h.hexdigest(), rows


def verify_references(con: duckdb.DuckDBPyConnection) -> None:
    """Every declared foreign key holds, by an anti-join per key (generation checks them
    per chunk instead: ``integrity.ChunkChecks``)."""
    for table in schema.TABLES.values():
        for col, ref in table.foreign_keys:
            ref_table, ref_col = ref.split(".")
            (missing,) = con.execute(
                f"SELECT count(*) FROM {table.name} t ANTI JOIN {ref_table} r "
                f"ON t.{col} = r.{ref_col}"
            ).fetchall()[0]
            if missing:
                raise RuntimeError(f"{table.name}.{col}: {missing} rows without a {ref}")


def read_data_version(path: str | os.PathLike[str]) -> DataVersion:
    """The data version recorded in a generated database (opened read-only)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no database at {p}")
    con = duckdb.connect(str(p), read_only=True)
    try:
        return data_version_of(con)
    finally:
        con.close()


def data_version_of(con: duckdb.DuckDBPyConnection) -> DataVersion:
    """The data version recorded in the database ``con`` has open."""
    row = con.execute(
        f"SELECT seed, pupils, first_year, last_year, generator_version, digest, rows, "
        f"created_at FROM {METADATA_TABLE}"
    ).fetchall()
    if len(row) != 1:
        raise GenerationError("the database has no data version")
    seed, pupils, first, last, gen, digest, rows, created = row[0]
    return DataVersion(seed, pupils, first, last, gen, digest, created, json.loads(rows))


def parse_years(text: str) -> YearRange:
    """``2012-2024`` (or one year) to a checked ``YearRange``.

    >>> parse_years("2012-2024")
    YearRange(first=2012, last=2024)
    """
    from synthetic.generator import YearRange  # noqa: PLC0415 - only to generate

    parts = text.strip().split("-")
    try:
        if len(parts) == 1:
            first = last = int(parts[0])
        elif len(parts) == 2:
            first, last = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise GenerationError(f"years must look like 2012-2024, not {text!r}") from None
    if first > last:
        raise GenerationError(f"year range {first}-{last} ends before it starts")
    if first < codes.FIRST_YEAR or last > codes.LAST_YEAR:
        raise GenerationError(
            f"years must lie within {codes.FIRST_YEAR}-{codes.LAST_YEAR}, not {first}-{last}"
        )
    return YearRange(first, last)


def _check_size(pupils: int, seed: int) -> None:
    if isinstance(pupils, bool) or not isinstance(pupils, int) or pupils < 1:
        raise GenerationError(f"pupils must be a whole number of at least 1, not {pupils!r}")
    if pupils > MAX_PUPILS:
        raise GenerationError(f"pupils must be at most {MAX_PUPILS:,}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise GenerationError(f"seed must be a whole number from 0 to 2**63-1, not {seed!r}")


def _temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporary files left beside ``path`` by runs that were killed (their process is
    gone), and the folders DuckDB spilled into for them; return what was removed."""
    removed = []
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        try:
            pid = int(tmp.name.split(".tmp-", 1)[1].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)


def check_generation(
    path: str | os.PathLike[str],
    pupils: int,
    seed: int,
    years: YearRange | str,
    force: bool,
) -> YearRange:
    """Refuse bad arguments, an existing database or an unwritable folder before any work
    starts (creating the folder if need be); return the checked year range."""
    _check_size(pupils, seed)
    year_range = parse_years(years) if isinstance(years, str) else years
    if year_range.first > year_range.last:
        raise GenerationError(
            f"year range {year_range.first}-{year_range.last} ends before it starts"
        )
    target = Path(path)
    if target.exists() and not force:
        raise GenerationError(f"{target} already exists (use --force to replace it)")
    if target.exists() and not target.is_file():
        raise GenerationError(f"{target} exists and is not a file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenerationError(f"cannot create {target.parent}: {exc.strerror}") from None
    if not os.access(target.parent, os.W_OK):
        raise GenerationError(f"cannot write to {target.parent}")
    return year_range


def generate_database(
    path: str | os.PathLike[str],
    pupils: int,
    seed: int = 0,
    years: YearRange | str = "2012-2024",
    force: bool = False,
    progress: Progress | None = None,
    enforce_foreign_keys: bool = False,
    key_indexes: bool = False,
) -> DataVersion:
    """Generate a synthetic NPD of ``pupils`` pupils into the DuckDB file ``path``.

    Refuses an existing file unless ``force``. Writes into a temporary file in the same
    folder and renames it over ``path`` only when complete. Raises ``GenerationError`` for
    bad arguments or an unwritable place, ``IntegrityError`` if generated rows break a
    declared key or reference. ``key_indexes`` also declares the keys as DuckDB indexes
    (small data only: they need memory in proportion to the rows).
    """
    started = time.perf_counter()
    year_range = check_generation(path, pupils, seed, years, force)
    target = Path(path)
    remove_stale_temporaries(target)
    tmp = _temporary_path(target)
    _remove(tmp)
    try:
        version = _write(tmp, pupils, seed, year_range, progress,
                         enforce_foreign_keys, key_indexes)  # fmt: skip
        # a WAL left by a crashed writer of the old file must not be replayed onto the new one
        Path(str(target) + ".wal").unlink(missing_ok=True)
        os.replace(tmp, target)
    except OSError as exc:
        raise GenerationError(f"cannot write {target}: {exc.strerror or exc}") from None
    except duckdb.IOException as exc:
        raise GenerationError(f"cannot write {target}: {str(exc).splitlines()[0]}") from None
    finally:
        _remove(tmp)
    return DataVersion(**{**version.__dict__, "seconds": time.perf_counter() - started})


class _Producer:
    """Generates the chunks in a thread of its own, one ahead of the loading."""

    def __init__(self, gen: Generator) -> None:
        self._pending: queue.Queue[object] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(gen,), name="npd-generate",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._pending.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self, gen: Generator) -> None:
        try:
            for chunk in gen.chunks():
                if self._stop.is_set():
                    return
                self._put(chunk)
            self._put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the loading thread
            self._put(exc)

    def __iter__(self) -> Iterator[dict[str, pa.Table]]:
        while (item := self._pending.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _Lanes:
    """Inserts on one cursor per lane (``LANES``), each in a thread of its own (DuckDB
    releases the GIL), so the tables of a chunk load on two cores at once. A lane inserts
    its tables in the order submitted, so each table's rows are stored in chunk order."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, lanes: tuple[tuple[str, ...], ...] = LANES
    ) -> None:
        self._lane = {name: i for i, names in enumerate(lanes) for name in names}
        self._cursors = [con.cursor() for _ in lanes]
        self._jobs: list[queue.Queue[tuple[int, str, pa.Table] | None]] = [
            queue.Queue() for _ in lanes
        ]
        self._done: queue.Queue[tuple[int, str] | BaseException] = queue.Queue()
        self._outstanding: dict[int, int] = {}  # chunk -> inserts not yet done
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"npd-load-{i}", daemon=True)
            for i in range(len(lanes))
        ]
        for cur in self._cursors:
            cur.execute("SET enable_progress_bar = false")
        for th in self._threads:
            th.start()

    def _run(self, i: int) -> None:
        cur = self._cursors[i]
        while (job := self._jobs[i].get()) is not None:
            k, name, data = job
            try:
                insert_arrow(cur, name, data)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self._done.put(exc)
                return
            self._done.put((k, name))

    def submit(self, k: int, name: str, data: pa.Table) -> None:
        self._outstanding[k] = self._outstanding.get(k, 0) + 1
        self._jobs[self._lane[name]].put((k, name, data))

    def finished(self, through: int) -> Iterator[tuple[int, str]]:
        """Wait until every insert of chunks up to ``through`` is done, yielding each
        ``(chunk, table)`` as it finishes (an insert's error is raised here)."""
        while any(k <= through for k in self._outstanding):
            item = self._done.get()
            if isinstance(item, BaseException):
                raise item
            k, name = item
            self._outstanding[k] -= 1
            if not self._outstanding[k]:
                del self._outstanding[k]
            yield k, name

    def close(self) -> None:
        """Stop the lanes: interrupt an insert under way, drop those not started."""
        for jobs in self._jobs:
            while not jobs.empty():
                jobs.get_nowait()
            jobs.put(None)
        if self._outstanding:
            for cur in self._cursors:
                cur.interrupt()
        for th in self._threads:
            th.join()
        for cur in self._cursors:
            cur.close()


def _write(
    tmp: Path,
    pupils: int,
    seed: int,
    years: YearRange,
    progress: Progress | None,
    foreign_keys: bool,
    key_indexes: bool,
) -> DataVersion:
    # numpy, Arrow, Faker: imported only to generate
    from synthetic import generator  # noqa: PLC0415
    from synthetic.integrity import (  # noqa: PLC0415
        ChunkChecks,
        IntegrityError,
        key_unique,
        unordered_keys,
    )

    n_chunks = -(-pupils // generator.CHUNK_PUPILS)
    steps = 2 + n_chunks * len(schema.PRIVATE_TABLES) + 2
    done = 0

    def tick(next_step: str, advance: int = 1) -> None:
        nonlocal done
        done += advance
        if progress is not None:
            progress(next_step, done, steps)

    tick("building schools and name pools", 0)
    gen = generator.Generator(pupils, seed, years)

    con = duckdb.connect(str(tmp))
    try:
        # DuckDB draws its own progress bar on stdout for long statements: not here
        con.execute("SET enable_progress_bar = false")
        # DuckDB keeps every block it wrote cached up to its limit (80 % of the machine's
        # memory by default): generation never reads them back, so a small cache will do
        con.execute(f"SET memory_limit = '{GENERATION_MEMORY_LIMIT}'")
        create_tables(con, foreign_keys, key_indexes)
        reference = gen.reference_tables()
        checks = ChunkChecks(reference)
        for name, data in reference.items():
            insert_arrow(con, name, data)
        tick("loading reference tables")
        # foreign keys enforced by DuckDB: a chunk's pupils must be in before its other rows
        lanes = (schema.PRIVATE_TABLES,) if foreign_keys else LANES
        _load_chunks(con, gen, checks, n_chunks, lanes, tick)
        tick("verifying keys")
        for name, key in unordered_keys():
            if not key_unique(con, name, key):
                raise IntegrityError(f"{name}: ({', '.join(key)}) is not unique")
        tick("computing the data version")
        digest, rows = content_digest(con)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        for table in schema.TABLES.values():
            # what the keys rest on, now that every one was verified (missing_constraints)
            con.execute(f"COMMENT ON TABLE {table.name} IS '{attestation(table)}'")
        con.execute(
            f"INSERT INTO {METADATA_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [seed, pupils, years.first, years.last, GENERATOR_VERSION, digest,
             json.dumps(rows), created],
        )  # fmt: skip
        con.execute("CHECKPOINT")
        tick("done")
    finally:
        con.close()
    return DataVersion(seed, pupils, years.first, years.last, GENERATOR_VERSION, digest,
                       created, rows)  # fmt: skip


def _load_chunks(
    con: duckdb.DuckDBPyConnection,
    gen: Generator,
    checks: ChunkChecks,
    n_chunks: int,
    lane_tables: tuple[tuple[str, ...], ...],
    tick: Callable[[str], None],
) -> None:
    """Generate (one thread), check (this thread) and insert (one thread per lane) every
    chunk; at most two chunks are being inserted at a time."""
    producer = _Producer(gen)
    lanes = _Lanes(con, lane_tables)
    try:
        k = 0
        for chunk in producer:
            k += 1
            checks.chunk(chunk)
            for name, data in chunk.items():
                lanes.submit(k, name, data)
            for j, name in lanes.finished(through=k - 1):
                tick(f"loading {name} (chunk {j}/{n_chunks})")
            del chunk
        for j, name in lanes.finished(through=k):
            tick(f"loading {name} (chunk {j}/{n_chunks})" if j < n_chunks else "finishing")
    finally:
        lanes.close()
        producer.close()
