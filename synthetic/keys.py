"""How a table records that its keys were verified when it was generated (no DuckDB index).

Light on purpose (DuckDB and the schema only): the engine reads it through
``load.missing_constraints`` before it serves a data file. The verification itself is in
``integrity.py``.
"""

from __future__ import annotations

import duckdb

from synthetic import schema

KEYS_VERIFIED = "keys verified at generation: "


def key_constraints(table: schema.Table) -> list[tuple[str, tuple[str, ...]]]:
    """The table's keys as ``(kind, columns)``: its primary key, then each UNIQUE."""
    return [("PRIMARY KEY", table.primary_key), *(("UNIQUE", u) for u in table.unique)]


def attestation(table: schema.Table) -> str:
    """The table comment recording that every key of ``table`` was verified.

    >>> attestation(schema.table("ks2"))
    'keys verified at generation: PRIMARY KEY (pupil_id, academic_year); UNIQUE (pupil_id)'
    """
    keys = [f"{kind} ({', '.join(cols)})" for kind, cols in key_constraints(table)]
    return KEYS_VERIFIED + "; ".join(keys)


def attested_keys(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str, str]]:
    """The keys the tables' comments record as verified, as ``(table, kind, columns)``.

    The comment belongs to the table the loader wrote: a table replaced by another (``CREATE
    TABLE … AS``, say) has none, so its keys count as missing."""
    rows = con.execute(
        "SELECT table_name, comment FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()
    found: set[tuple[str, str, str]] = set()
    for table, comment in rows:
        if not comment or not comment.startswith(KEYS_VERIFIED):
            continue
        for part in comment.removeprefix(KEYS_VERIFIED).split("; "):
            kind, _, columns = part.partition(" (")
            if kind in ("PRIMARY KEY", "UNIQUE") and columns.endswith(")"):
                found.add((table, kind, columns[:-1]))
    return found
