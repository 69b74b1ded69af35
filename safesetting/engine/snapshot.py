"""The published snapshot: the queryable columns of one data version, written once.

Every server worker and every CLI query reads the same immutable file in place (the data
plane, ``planes/duckdb.py``), instead of copying the data into memory per process or per
query. It holds every table the catalogue declares, with only the columns a query may read:
``pupil_id`` (the privacy unit, a join key) and every column that is not a direct
identifier, so never a name, UPN, postcode or date of birth. Its tables carry the same NOT
NULL and CHECK constraints as the source (those on dropped columns aside), and a snapshot
without one is not served. The keys the contribution bounds rely on (each table's primary
key and UNIQUE columns) are verified by a query when the snapshot is written, rather than
kept as indexes: the indexes would make the file five times larger and its writing four
times slower, for a file that is never written again.

A snapshot is named by its source's data version (``snapshots/<version>.duckdb`` beside
the data file); it is written under a temporary name, made read-only and renamed into
place, so a reader never sees half of one. ``data generate`` publishes it and removes the
snapshots of earlier versions beside it (``prune``); a data file from before snapshots is
published on first use (under a lock, once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
from pathlib import Path

import duckdb
import sqlglot
from sqlglot import exp

from safesetting.errors import SafeSettingError, StateError
from synthetic.schema import TABLES, ColumnClass, Table

SNAPSHOT_DIR = "snapshots"
METADATA_TABLE = "dataset_metadata"  # synthetic.load's, copied as it is
PUBLISH_MEMORY = "3GB"


class DataUnavailableError(SafeSettingError):
    """The snapshot could not be published, opened or read: the data's fault, not the
    query's (the service stops fresh queries until the operator has looked)."""


def queryable(table: Table) -> Table:
    """``table`` with only the columns a query may read (and the constraints on them)."""
    kept = tuple(
        c for c in table.columns if c.join_key or c.cls is not ColumnClass.DIRECT_IDENTIFIER
    )
    names = {c.name for c in kept}

    def only_kept(check: str) -> bool:
        tree = sqlglot.parse_one(check, read="duckdb")
        return all(col.name in names for col in tree.find_all(exp.Column))

    return dataclasses.replace(
        table,
        columns=kept,
        unique=tuple(u for u in table.unique if set(u) <= names),
        checks=tuple(c for c in table.checks if only_kept(c)),
        foreign_keys=tuple(fk for fk in table.foreign_keys if fk[0] in names),
    )


SNAPSHOT_TABLES = {name: queryable(t) for name, t in TABLES.items()}


def snapshot_path(db_path: Path, version: str) -> Path:
    """Beside the data file itself (a home may hold a link to it)."""
    return db_path.resolve().parent / SNAPSHOT_DIR / f"{version}.duckdb"


def publish(db_path: Path, version: str) -> Path:
    """The snapshot of ``db_path`` (data version ``version``), written if it is not there
    yet; concurrent callers wait for the one that writes it."""
    target = snapshot_path(db_path, version)
    if target.is_file():
        return target
    target.parent.mkdir(mode=0o700, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():  # written while this process waited
            return target
        for stale in target.parent.glob("*.duckdb.tmp*"):
            stale.unlink(missing_ok=True)
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        try:
            _write(db_path, tmp)
            if (written := _version_of(tmp)) != version:
                # The data file was replaced since its version was read (a `data generate
                # --force` racing a first query): never file new data under an old name.
                raise DataUnavailableError(
                    f"{db_path.name} changed while its snapshot was written (version "
                    f"{written}, not {version}): ask again"
                )
            tmp.chmod(0o444)
            os.replace(tmp, target)
            _mark_checked(target)
        except (OSError, duckdb.Error) as exc:
            raise DataUnavailableError(
                f"cannot publish the snapshot of {db_path.name} in {target.parent} "
                f"({type(exc).__name__})"
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
            Path(f"{tmp}.wal").unlink(missing_ok=True)
        _sync_dir(target.parent)
    return target


def prune(db_path: Path, version: str) -> list[Path]:
    """Remove the snapshots beside ``db_path`` of any version but ``version`` (a data file
    regenerated with ``--force`` leaves its old snapshot behind: 2.4 GB at national scale).

    A process still reading an old snapshot keeps it open until it notices the new data
    (every request compares the data file's version), and an unlinked file stays readable
    to whoever holds it open, so nothing in flight fails. Returns what was removed."""
    current = snapshot_path(db_path, version)
    folder = current.parent
    if not folder.is_dir():
        return []
    removed = []
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # never while a snapshot is being written
        for old in sorted(folder.glob("*.duckdb")):
            if old.name == current.name:
                continue
            old.unlink(missing_ok=True)
            _marker(old).unlink(missing_ok=True)
            removed.append(old)
    if removed:
        _sync_dir(folder)
    return removed


def _write(db_path: Path, tmp: Path) -> None:
    from synthetic.load import create_table_sql, missing_constraints  # noqa: PLC0415 - Faker

    con = duckdb.connect(str(tmp))
    try:
        con.execute("SET enable_progress_bar = false")
        # Bounded, spilling beside the file: the key checks group hundreds of millions of
        # rows at national scale (DuckDB's default would take 80 % of the machine).
        con.execute(f"SET memory_limit = '{PUBLISH_MEMORY}'")
        con.execute("ATTACH ? AS src (READ_ONLY)", [str(db_path)])
        for name, table in SNAPSHOT_TABLES.items():
            con.execute(create_table_sql(table, keys=False))
            # Identifiers come from the schema declaration, never from a request.
            cols = ", ".join(f'"{c.name}"' for c in table.columns)
            con.execute(f'INSERT INTO main."{name}" SELECT {cols} FROM src."{name}"')  # noqa: S608
        con.execute(f"CREATE TABLE main.{METADATA_TABLE} AS FROM src.{METADATA_TABLE}")  # noqa: S608
        con.execute("DETACH src")
        missing = missing_constraints(con, SNAPSHOT_TABLES.values(), keys=False)
        if missing:
            raise StateError(f"the snapshot lacks {missing[0]}")
        if broken := duplicate_keys(con):
            raise StateError(f"the snapshot's {broken} is not unique: regenerate the data")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def _version_of(path: Path) -> str:
    from synthetic.load import read_data_version  # noqa: PLC0415 - brings the generator

    return read_data_version(path).id


def duplicate_keys(con: duckdb.DuckDBPyConnection) -> str | None:
    """The first declared key (primary key or UNIQUE columns) that some rows share, as
    ``table (columns)``, or None when every key is unique (``synthetic.integrity.key_unique``:
    a key stored in strictly increasing order is proved unique by one streamed pass, as the
    generator writes them; anything else by a ``GROUP BY``, which spills)."""
    from synthetic.integrity import key_unique  # noqa: PLC0415 - only when publishing

    for name, table in SNAPSHOT_TABLES.items():
        for key in (table.primary_key, *table.unique):
            if not key_unique(con, name, key):
                return f"{name} ({', '.join(key)})"
    return None


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".checked")


def _mark_checked(path: Path) -> None:
    """Record that ``path``, as it is now (size, time, inode), passed every check."""
    with contextlib.suppress(OSError):  # only a saving: the checks run again next time
        _marker(path).write_text(_stamp(path))


def checked(path: Path) -> bool:
    """Whether the snapshot at ``path`` passed every check as the file it is now (a file
    replaced or rewritten since has another size, time or inode and is checked again)."""
    try:
        return _marker(path).read_text() == _stamp(path)
    except OSError:
        return False


def check_snapshot(path: Path) -> None:
    """Refuse a snapshot that lacks a constraint the bounds rely on, or holds a column that
    is not queryable (a file put there by hand, say). The constraints are compared once per
    file (``checked``); the columns every time the plane opens it."""
    from synthetic.load import missing_constraints  # noqa: PLC0415 - brings the generator

    full = not checked(path)
    con = duckdb.connect(str(path), read_only=True)
    try:
        missing = missing_constraints(con, SNAPSHOT_TABLES.values(), keys=False) if full else []
        columns = con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() "
            "WHERE database_name = current_database()"
        ).fetchall()
    finally:
        con.close()
    allowed = {(t, c.name) for t, table in SNAPSHOT_TABLES.items() for c in table.columns}
    extra = sorted((t, c) for t, c in columns if t != METADATA_TABLE and (t, c) not in allowed)
    if missing:
        raise StateError(f"{path.name} cannot be served: it lacks {missing[0]}")
    if extra:
        raise StateError(
            f"{path.name} cannot be served: it holds {'.'.join(extra[0])}, which is not queryable"
        )


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
