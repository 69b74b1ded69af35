"""The sandbox: an in-memory DuckDB copy of the tables a query needs, hardened and locked.

DuckDB allow-lists its own database file even on a locked connection (``read_blob`` of the
file would return it), so the sandbox never keeps the file attached: it copies the tables
into ``:memory:``, detaches, then disables external access and locks the configuration.
Re-emitted SQL is the first line of defence; the sandbox is the second.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import duckdb

from safesetting.engine.compile import OPTOUT_TABLE
from safesetting.errors import SafeSettingError, StateError
from synthetic.schema import TABLES, ColumnClass

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY_LIMIT = "2GB"
SHARED_MEMORY_LIMIT = "8GB"
UPN_TABLE = "__pupil_upn"
_shared: dict[tuple[str, int], Sandbox] = {}
_shared_lock = threading.Lock()


class EngineError(SafeSettingError):
    """The sandbox could not be built or could not run the engine's SQL. The message names
    only the error class: DuckDB's own text can quote a value from the data."""


class QueryTimeoutError(EngineError):
    """The bounded query ran past the time limit (it was interrupted; nothing was released)."""


class Sandbox:
    """A locked, in-memory DuckDB holding copies of some tables of ``npd.duckdb``."""

    def __init__(
        self,
        db_path: Path,
        tables: Iterable[str] | Mapping[str, Iterable[str]],
        optout_upns: Sequence[str] = (),
        *,
        row_filters: Mapping[str, str] | None = None,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        threads: int = 2,
        shared: bool = False,
    ) -> None:
        if not db_path.exists():
            raise StateError(f"no data in {db_path.parent}: run `safesetting data generate` first")
        # Either table names (copy every column) or {table: the columns a query needs}.
        wanted = tables if isinstance(tables, Mapping) else dict.fromkeys(tables)
        self.columns: dict[str, tuple[str, ...]] = {}
        for name, cols in wanted.items():
            declared = TABLES[name].column_names  # KeyError: only declared tables, ever
            chosen = declared if cols is None else tuple(c for c in declared if c in set(cols))
            if cols is not None and len(chosen) != len(set(cols)):
                raise ValueError(f"undeclared columns asked of {name}")
            self.columns[name] = chosen
        self.tables = frozenset(self.columns)
        self.con = duckdb.connect(
            ":memory:",
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "allow_community_extensions": False,
                "python_enable_replacements": False,
                "memory_limit": memory_limit,
                "threads": threads,
            },
        )
        self.row_filters = dict(row_filters or {})
        # A shared sandbox serves many queries: opt-outs are then given per query (run()).
        self.shared = shared
        try:
            self._load(db_path, optout_upns)
            self._lock()
        except duckdb.Error as exc:
            self.con.close()
            # Loading runs the pushed-down filters over the data: keep only the class.
            raise EngineError(
                f"the engine could not prepare the data ({type(exc).__name__})"
            ) from None

    def _load(self, db_path: Path, optout_upns: Sequence[str]) -> None:
        con = self.con
        con.execute("SET temp_directory = ''")
        con.execute("SET enable_progress_bar = false")  # never draw on the server's stdout
        con.execute("ATTACH ? AS src (READ_ONLY)", [str(db_path)])
        for name, cols in sorted(self.columns.items()):
            # Identifiers come from the schema declaration, never from the researcher.
            listed = ", ".join(f'"{c}"' for c in cols)
            # Row filters are engine-built SQL over this table's own columns (compile.py).
            where = f" WHERE {self.row_filters[name]}" if name in self.row_filters else ""
            source = f'src."{name}" AS "{name}"{where}'
            con.execute(f'CREATE TABLE main."{name}" AS SELECT {listed} FROM {source}')  # noqa: S608
        if self.shared:
            # UPN -> pupil_id, to resolve each query's opt-outs after the file is detached.
            # Not a declared table, so no researcher query can name it.
            con.execute(f"CREATE TABLE {UPN_TABLE} AS SELECT pupil_id, upn FROM src.pupils")  # noqa: S608
            con.execute("DETACH src")
            return
        con.execute(f"CREATE TABLE {OPTOUT_TABLE} (pupil_id BIGINT)")
        if optout_upns:
            con.execute(
                f"INSERT INTO {OPTOUT_TABLE} SELECT pupil_id FROM src.pupils "  # noqa: S608
                "WHERE upn IN (SELECT unnest(?::VARCHAR[]))",
                [list(optout_upns)],
            )
        con.execute("DETACH src")

    def _lock(self) -> None:
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def run(
        self,
        sql: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        optout_upns: Sequence[str] | None = None,
    ) -> list[tuple]:
        """Run compiled SQL with a time limit; the rows stay inside the engine.

        A shared sandbox takes this query's opt-outs here: they become a temporary table of
        this cursor's own connection, so concurrent queries never see each other's.
        """
        if self.shared and optout_upns is None:
            raise ValueError("a shared sandbox needs the opt-outs of each query")
        cur = self.con.cursor()
        timer = threading.Timer(timeout_s, cur.interrupt)
        timer.start()
        try:
            if self.shared:
                cur.execute(
                    f"CREATE TEMP TABLE {OPTOUT_TABLE} AS SELECT pupil_id FROM {UPN_TABLE} "  # noqa: S608
                    "WHERE upn IN (SELECT unnest(?::VARCHAR[]))",
                    [list(optout_upns or ())],
                )
            return cur.execute(sql).fetchall()
        except duckdb.InterruptException:
            raise QueryTimeoutError(f"the query ran longer than {timeout_s:g} s") from None
        except duckdb.Error as exc:
            # The message could quote data; keep only the error class.
            raise EngineError(
                f"the engine could not run the query ({type(exc).__name__})"
            ) from None
        finally:
            timer.cancel()
            cur.close()

    def close(self) -> None:
        self.con.close()


def shared_sandbox(db_path: Path) -> Sandbox:
    """One locked in-memory copy of every table per process and data file, loaded on first
    use (~2 s and ~1 GB for 1M pupils) and reused by every query: a server's fresh query
    then costs the aggregation itself, not a copy. A new data file (mtime) gets a new copy."""
    if not db_path.exists():
        raise StateError(f"no data in {db_path.parent}: run `safesetting data generate` first")
    key = (str(db_path.resolve()), db_path.stat().st_mtime_ns)
    with _shared_lock:
        box = _shared.get(key)
        if box is None:
            for old in [k for k in _shared if k[0] == key[0]]:
                _shared.pop(old).close()
            # Every column a query may read; never names, postcodes or dates of birth.
            queryable = {
                t.name: [c.name for c in t.columns
                         if c.join_key or c.cls is not ColumnClass.DIRECT_IDENTIFIER]
                for t in TABLES.values()
            }  # fmt: skip
            box = _shared[key] = Sandbox(
                db_path, queryable, memory_limit=SHARED_MEMORY_LIMIT, shared=True
            )
        return box
