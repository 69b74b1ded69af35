"""What the public may know about the safe setting: aggregate facts, never rows or people.

:func:`transparency_summary` is a pure data function over the control database and the
audit log; the server's ``GET /v1/transparency`` and ``GET /`` and the HTML transparency
report all render it. It names projects (title, organisation type, purpose, dates, ε) as
public registers of data sharing do, but never a researcher, a token, a query's text or
any value from the data.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

import audit
from policies.epsilon import to_float
from safesetting.control import Control
from safesetting.store import dataset_spent, project_spent
from safesetting.store.registry import list_projects

#: Audit actions counted as "kinds of queries", with the label the public sees.
QUERY_KINDS = {
    "query.released": "released",
    "query.cached": "cached",
    "query.denied": "denied",
    "query.dry_run": "dry_run",
    "query.invalid": "invalid",
    "query.failed": "failed",
}


def _query_counts(conn: sa.Connection) -> dict[str | None, dict[str, int]]:
    e = audit.store.entries
    rows = conn.execute(
        sa.select(e.c.project, e.c.action, sa.func.count())
        .where(e.c.action.in_(list(QUERY_KINDS)))
        .group_by(e.c.project, e.c.action)
    )
    counts: dict[str | None, dict[str, int]] = {}
    for project, action, n in rows:
        counts.setdefault(project, dict.fromkeys(QUERY_KINDS.values(), 0))
        counts[project][QUERY_KINDS[action]] += int(n)
    return counts


def _checkpoint(note: str | None) -> dict[str, Any] | None:
    if note is None:
        return None
    origin, size, root = note.split("\n", 3)[:3]
    return {"origin": origin, "tree_size": int(size), "root_hash": root, "note": note}


def transparency_summary(control: Control) -> dict[str, Any]:
    """Projects, how many queries of each kind they made, ε spent, and the log's head.

    Every figure is an aggregate the operators would publish anyway; keys are stable
    (the HTML report and the HTTP API depend on them).
    """
    zero = dict.fromkeys(QUERY_KINDS.values(), 0)
    with control.engine.connect() as conn:
        counts = _query_counts(conn)
        projects = [
            {
                "id": p.id,
                "title": p.title,
                "org_type": p.org_type,
                "purpose": p.purpose,
                "status": p.status,
                "approved": p.created_at.date().isoformat(),
                "expires": p.expires.isoformat(),
                "tables": list(p.tables),
                "budget_epsilon": to_float(p.budget_micro),
                "epsilon_spent": to_float(project_spent(conn, p.id)),
                "queries": counts.get(p.id, dict(zero)),
            }
            for p in list_projects(conn)
        ]
        spent = dataset_spent(conn)
        note = audit.store.latest_note(conn)
        size = audit.tree_head(conn).size
    totals = dict(zero)
    for per_project in counts.values():
        for kind, n in per_project.items():
            totals[kind] += n
    return {
        "projects": projects,
        "queries": totals,
        "dataset": {
            "epsilon_spent": to_float(spent),
            "epsilon_cap": to_float(control.policy.epsilon.dataset_cap),
            "min_cell_count": control.policy.min_cell_count,
        },
        "audit": {"entries": size, "checkpoint": _checkpoint(note)},
        "policy_sha256": control.policy_digest,
    }
