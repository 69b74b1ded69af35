"""What may be asked: the schema declaration as public metadata (never a value from the data).

Built from ``schema`` alone, so it needs no database and cannot leak one.
"""

from __future__ import annotations

from typing import Any

from synthetic import codes, schema

LISTED_DOMAIN_MAX = 40  # longer domains are summarised by size in the human listing


def describe_column(col: schema.Column) -> dict[str, Any]:
    """One column's public metadata.

    >>> describe_column(schema.table("census").column("sen_provision"))["domain"]
    ['N', 'K', 'E']
    """
    return {
        "name": col.name,
        "type": col.dtype,
        "class": col.cls.value,
        "description": col.description,
        "npd_field": col.npd_field,
        "nullable": col.nullable,
        "join_key": col.join_key,
        "groupable": col.groupable,
        "domain": list(col.domain) if col.domain is not None else None,
        "domain_size": len(col.domain) if col.domain is not None else None,
        "domain_ref": col.domain_ref,
        "labels": _labels(col),
        "bounds": list(col.bounds) if col.bounds is not None else None,
    }


def _labels(col: schema.Column) -> dict[str, str] | None:
    """What each code means (DfE's descriptions), keyed by the code as text."""
    found = codes.labels(tuple(col.domain) if col.domain is not None else None)
    return {str(k): v for k, v in found.items()} if found else None


def describe_table(table: schema.Table) -> dict[str, Any]:
    return {
        "name": table.name,
        "description": table.description,
        "private": table.private,
        "primary_key": list(table.primary_key),
        "unique": [list(u) for u in table.unique],
        "foreign_keys": [{"column": c, "references": r} for c, r in table.foreign_keys],
        "max_rows_per_pupil": table.max_rows_per_pupil,
        "bound_enforced_by": table.bound_enforced_by,
        "columns": [describe_column(c) for c in table.columns],
    }


def describe() -> dict[str, Any]:
    """Every table and column: classes, domains, bounds and per-pupil bounds."""
    return {
        "privacy_unit": "pupil_id",
        "tables": [describe_table(t) for t in schema.TABLES.values()],
    }


def domain_summary(col: dict[str, Any], *, full: bool = False) -> str:
    """A human rendering of a column's public domain (or its reference), each code with
    what it means; ``full`` lists every value, one per line, however many.

    >>> domain_summary({"domain": [False, True], "domain_size": 2, "domain_ref": None})
    'False, True'
    >>> col = describe_column(schema.table("census").column("sen_provision"))
    >>> domain_summary(col)
    'N (No special educational need), K (SEN support), E (Education, health and care plan)'
    >>> print(domain_summary(col, full=True))
    N  No special educational need
    K  SEN support
    E  Education, health and care plan
    """
    if col["domain_ref"]:
        return f"values of {col['domain_ref']}"
    if col["domain"] is None:
        return ""
    labels = col.get("labels") or {}
    if full:
        return "\n".join(
            f"{v}  {labels[str(v)]}" if str(v) in labels else str(v) for v in col["domain"]
        )
    if col["domain_size"] > LISTED_DOMAIN_MAX:
        lo, hi = col["domain"][0], col["domain"][-1]
        return f"{col['domain_size']} values ({lo} .. {hi}; --full lists them)"
    shown: list[str] = []
    budget = 96 if labels else 48
    for v in col["domain"]:
        text = f"{v} ({labels[str(v)]})" if str(v) in labels else str(v)
        if shown and sum(len(s) + 2 for s in shown) + len(text) > budget:
            return f"{col['domain_size']} codes: {', '.join(shown)}, … (--full lists them)"
        shown.append(text)
    return ", ".join(shown)
