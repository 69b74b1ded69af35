"""The declared keys and references of generated rows, verified without DuckDB indexes.

A PRIMARY KEY or UNIQUE constraint in DuckDB is an ART index: at 20 million pupils (over
340 million rows) the indexes alone would take more memory than the machine has, and they
make the file five times larger, for a file that is never written again. The loader
verifies the keys instead, and records on each table (its comment, ``keys.py``) that it did:

* every key of a private table starts with ``pupil_id``; the generator emits each table's
  rows in key order and gives every chunk of pupils ids above the previous chunk's, so
  each key must be *strictly increasing* across the whole table, which proves it unique.
  ``ChunkChecks`` verifies this on the Arrow data before it is inserted: within each chunk
  and from the last row of the previous chunk to the first of this one (any other order
  is refused, never assumed);
* the other keys (``pupils.upn`` and the reference tables') are verified after loading
  by a ``GROUP BY`` (``key_unique``);
* declared foreign keys are checked per chunk in Arrow: a private row must refer to a
  pupil of its own chunk, a school or LA must be in the reference table.

``key_unique`` works on any DuckDB table (the published snapshot's too): a stream of the
key columns in table order proves them unique when they are strictly increasing (memory:
one batch), else it falls back to a ``GROUP BY``.
"""

# SQL here is assembled from names in the schema declaration, never from input.
# ruff: noqa: S608
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthetic import schema
from synthetic.keys import key_constraints

STREAM_BATCH_ROWS = 1 << 20


class IntegrityError(RuntimeError):
    """Generated rows break a declared key or reference (a generator bug): nothing is
    written."""


def strictly_increasing(columns: Sequence[np.ndarray]) -> bool:
    """Whether the rows (one array per key column) are in strictly increasing
    lexicographic order, which makes them all distinct.

    >>> strictly_increasing([np.array([1, 1, 2]), np.array([5, 6, 1])])
    True
    >>> strictly_increasing([np.array([1, 1, 2]), np.array([5, 5, 1])])
    False
    """
    if len(columns[0]) < 2:
        return True
    decided = np.zeros(len(columns[0]) - 1, dtype=bool)  # rows already shown smaller
    for col in columns:
        before, after = col[:-1], col[1:]
        if (~decided & (before > after)).any():
            return False
        decided |= before < after
    return bool(decided.all())


def _ordered(table: schema.Table, key: Sequence[str]) -> bool:
    """Keys verified by order: those of private tables (they start with pupil_id)."""
    return table.private and key[0] == "pupil_id"


def _key_arrays(data: pa.Table, key: Sequence[str], what: str) -> list[np.ndarray]:
    arrays = [data.column(c) for c in key]
    if any(a.null_count for a in arrays):
        raise IntegrityError(f"{what} has a NULL in its key")
    return [a.to_numpy() for a in arrays]


class ChunkChecks:
    """Verifies each chunk's keys and references in Arrow before it is loaded."""

    def __init__(self, reference: Mapping[str, pa.Table]) -> None:
        self._last: dict[tuple[str, tuple[str, ...]], tuple[object, ...]] = {}
        self._reference = reference
        self._allowed: dict[str, pa.Array] = {}
        for name, data in reference.items():
            self._references(name, data, {})

    def chunk(self, tables: Mapping[str, pa.Table]) -> None:
        """Raise ``IntegrityError`` unless every key of every table in the chunk continues
        strictly increasing and every reference is to a row that exists."""
        for name, data in tables.items():
            table = schema.table(name)
            for kind, key in key_constraints(table):
                if _ordered(table, key):
                    self._increasing(name, kind, key, data)
            self._references(name, data, tables)

    def _increasing(self, name: str, kind: str, key: tuple[str, ...], data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        what = f"{name}: {kind} ({', '.join(key)})"
        cols = _key_arrays(data, key, what)
        if not strictly_increasing(cols):
            raise IntegrityError(f"{what}: rows out of key order or repeated within a chunk")
        first = tuple(c[0].item() for c in cols)
        last = self._last.get((name, key))
        if last is not None and not last < first:
            raise IntegrityError(f"{what}: a chunk does not start above the previous one")
        self._last[(name, key)] = tuple(c[-1].item() for c in cols)

    def _references(self, name: str, data: pa.Table, chunk: Mapping[str, pa.Table]) -> None:
        for col, ref in schema.table(name).foreign_keys:
            ref_table, ref_col = ref.split(".")
            if ref_table in self._reference:
                allowed = self._allowed.setdefault(
                    ref, pc.unique(self._reference[ref_table].column(ref_col).combine_chunks())
                )
            elif ref_table in chunk:
                allowed = chunk[ref_table].column(ref_col).combine_chunks()
            else:
                raise IntegrityError(f"{name}.{col}: {ref_table} is not in the same chunk")
            if not _all_in(data.column(col), allowed):
                raise IntegrityError(f"{name}.{col}: a row without a {ref}")


def _all_in(values: pa.ChunkedArray, allowed: pa.Array) -> bool:
    if values.null_count:
        return False
    if pa.types.is_dictionary(allowed.type):
        allowed = allowed.dictionary_decode()
    for part in values.chunks:
        if pa.types.is_dictionary(part.type):
            # every value is one of the dictionary's: enough that all of those are allowed
            if pc.all(pc.is_in(part.dictionary, value_set=allowed)).as_py() is not False:
                continue
            part = part.dictionary_decode()
        if len(part) and not pc.all(pc.is_in(part, value_set=allowed)).as_py():
            return False
    return True


def unordered_keys(tables: Iterable[schema.Table] | None = None) -> list[tuple[str, tuple]]:
    """The keys ``ChunkChecks`` does not verify by order, as ``(table, columns)``."""
    return [
        (t.name, key)
        for t in (schema.TABLES.values() if tables is None else tables)
        for _kind, key in key_constraints(t)
        if not _ordered(t, key)
    ]


def stored_in_key_order(con: duckdb.DuckDBPyConnection, table: str, key: Sequence[str]) -> bool:
    """Whether the rows of ``table``, read in table order, have strictly increasing
    ``key`` (integer columns): proof that the key is unique, for one scan of its columns
    and one batch of memory. False says only that this proof does not apply."""
    cols = ", ".join(f'"{c}"' for c in key)
    reader = con.sql(f'SELECT {cols} FROM "{table}"').to_arrow_reader(STREAM_BATCH_ROWS)
    last: tuple[object, ...] | None = None
    try:
        for batch in reader:
            if batch.num_rows == 0:
                continue
            arrays = batch.columns
            if any(a.null_count or not pa.types.is_integer(a.type) for a in arrays):
                return False
            values = [a.to_numpy() for a in arrays]
            first = tuple(v[0].item() for v in values)
            if not strictly_increasing(values) or (last is not None and not last < first):
                return False
            last = tuple(v[-1].item() for v in values)
    finally:
        reader.close()
    return True


def key_unique(con: duckdb.DuckDBPyConnection, table: str, key: Sequence[str]) -> bool:
    """Whether no two rows of ``table`` share ``key``: ``stored_in_key_order`` if it
    applies, else a ``GROUP BY`` (which holds every key in memory, or spills)."""
    if stored_in_key_order(con, table, key):
        return True
    cols = ", ".join(f'"{c}"' for c in key)
    ((dupes,),) = con.execute(
        f'SELECT count(*) FROM (SELECT 1 FROM "{table}" GROUP BY {cols} HAVING count(*) > 1)'
    ).fetchall()
    return bool(dupes == 0)
