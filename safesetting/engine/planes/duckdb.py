"""The DuckDB data plane: one locked connection per process over the published snapshot.

The snapshot (``snapshot.py``) is attached read-only and read in place: no copy, so a
worker's memory does not grow with the data beyond DuckDB's own buffer limit
(``memory_limit``), and every worker and CLI process shares the operating system's page
cache of one file. Before any query runs, the connection exposes each table as a view of
the snapshot, then disables external access and locks its configuration: files, network,
extensions and settings are refused from then on. DuckDB allow-lists the attached file
itself (``read_blob`` of it would work), which is why the snapshot holds no direct
identifier; the engine's compiled SQL, rebuilt from allow-listed nodes, is the first line of
defence, and this is the second.

Each query runs on a cursor of its own with its opt-outs (and, for subject access, its one
pupil) as temporary tables of that cursor, so concurrent queries never see each other's; a
timer interrupts a query that runs too long; any DuckDB error becomes ``EngineError``
naming only its class (DuckDB's text could quote a value from the data).
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

from safesetting.engine.compile import OPTOUT_TABLE, SUBJECT_TABLE, CompiledQuery
from safesetting.engine.snapshot import SNAPSHOT_TABLES, DataUnavailableError
from safesetting.errors import SafeSettingError

_planes = itertools.count()
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY_LIMIT = "1GB"
HARDENED = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,
}


class EngineError(SafeSettingError):
    """The plane could not open the snapshot or run the engine's SQL. The message names only
    the error class: DuckDB's own text can quote a value from the data."""


#: What a damaged, missing or unreadable file raises (anything else a query can cause, a
#: timeout or memory, must not let one researcher stop the service for everyone).
UNREADABLE = (OSError, duckdb.IOException, duckdb.SerializationException)


class QueryTimeoutError(EngineError):
    """The bounded query ran past the time limit (it was interrupted; nothing was released)."""


class DuckDBPlane:
    """Locked, read-only DuckDB over one snapshot file."""

    name = "duckdb"

    def __init__(
        self,
        snapshot: Path,
        *,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        threads: int = 2,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.snapshot = snapshot
        self.timeout_s = timeout_s
        # Where a query larger than memory spills (a truncation window over a national
        # table, say): a private folder of this process beside the snapshot, never shared.
        _remove_stale_spills(snapshot.parent)
        self.spill = snapshot.parent / f".spill-{os.getpid()}-{next(_planes)}"
        self.spill.mkdir(mode=0o700, exist_ok=True)
        self.con = duckdb.connect(
            ":memory:", config={**HARDENED, "memory_limit": memory_limit, "threads": threads}
        )
        try:
            con = self.con
            con.execute("SET temp_directory = ?", [str(self.spill)])
            con.execute("SET preserve_insertion_order = false")  # less memory; order unused
            con.execute("SET enable_progress_bar = false")  # never draw on a server's stdout
            con.execute("ATTACH ? AS snap (READ_ONLY)", [str(snapshot)])
            for name, table in SNAPSHOT_TABLES.items():
                # Identifiers come from the schema declaration, never from a request.
                cols = ", ".join(f'"{c.name}"' for c in table.columns)
                con.execute(f'CREATE VIEW main."{name}" AS SELECT {cols} FROM snap."{name}"')  # noqa: S608
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except UNREADABLE as exc:
            self.con.close()
            raise DataUnavailableError(
                f"the engine could not open the data ({type(exc).__name__})"
            ) from None
        except duckdb.Error as exc:
            self.con.close()
            what = type(exc).__name__
            raise EngineError(f"the engine could not open the data ({what})") from None
        except BaseException:
            self.con.close()
            raise
        # A plane nobody holds any more (its session replaced after `data generate
        # --force`, say) closes its connection and removes its spill folder when collected;
        # never while a query still holds it.
        self._release = weakref.finalize(self, _release, self.con, self.spill)

    def run(
        self,
        compiled: CompiledQuery,
        optout_ids: Sequence[int] = (),
        *,
        subject_ids: Sequence[int] | None = None,
        timeout_s: float | None = None,
    ) -> list[tuple]:
        """Run compiled SQL with a time limit; the rows stay inside the engine."""
        limit = self.timeout_s if timeout_s is None else timeout_s
        cur = self.con.cursor()
        timer = threading.Timer(limit, cur.interrupt)
        timer.start()
        try:
            for table, ids in ((OPTOUT_TABLE, optout_ids), (SUBJECT_TABLE, subject_ids or ())):
                cur.execute(
                    f"CREATE TEMP TABLE {table} AS "  # noqa: S608 - engine constants
                    "SELECT unnest(?::BIGINT[]) AS pupil_id",
                    [[int(i) for i in ids]],
                )
            return _fetch(cur.sql(compiled.sql))
        except duckdb.InterruptException:
            raise QueryTimeoutError(f"the query ran longer than {limit:g} s") from None
        except UNREADABLE as exc:
            raise DataUnavailableError(
                f"the engine could not read the data ({type(exc).__name__})"
            ) from None
        except duckdb.Error as exc:
            # The message could quote data; keep only the error class.
            raise EngineError(
                f"the engine could not run the query ({type(exc).__name__})"
            ) from None
        finally:
            timer.cancel()
            cur.close()

    def close(self) -> None:
        self._release()


def _fetch(result: duckdb.DuckDBPyRelation) -> list[tuple]:
    """The result's rows as ``fetchall`` gives them, except that a list column (a
    quantile's values: every value of a group, ~540,000 a year at national scale) comes as
    one NumPy array per row through Arrow, about ten times faster than Python lists."""
    types = [str(t) for t in result.types]
    if not any(t.endswith("[]") for t in types):
        return result.fetchall()
    table = result.to_arrow_table()  # imports pyarrow, here only
    columns = []
    for kind, column in zip(types, table.columns, strict=True):
        if kind.endswith("[]"):
            columns.append(_arrays(column.combine_chunks()))
        elif kind in ("HUGEINT", "UHUGEINT"):  # Arrow carries them as decimal128(38, 0)
            columns.append([None if v is None else int(v) for v in column.to_pylist()])
        else:
            columns.append(column.to_pylist())
    return list(zip(*columns, strict=True))


def _arrays(column: pa.ListArray) -> list[np.ndarray | None]:
    """Each row's list as a float array (NULL elements as NaN), or None for a NULL list."""
    values = column.values.to_numpy(zero_copy_only=False).astype(float, copy=False)
    offsets = column.offsets.to_numpy()
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    return [values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(column))]


def _release(con: duckdb.DuckDBPyConnection, spill: Path) -> None:
    con.close()
    shutil.rmtree(spill, ignore_errors=True)


def _remove_stale_spills(folder: Path) -> None:
    """Spill folders left by processes that died (a killed worker)."""
    for stale in folder.glob(".spill-*-*"):
        try:
            pid = int(stale.name.split("-")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (ValueError, PermissionError):
            continue
