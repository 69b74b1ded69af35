"""A researcher's own record: the projects they are on and the questions they have asked.

Researchers see their own projects and their own queries only; auditors and admins see
every one. Nothing here is new information to the caller: a project's budget is what
``budget`` shows its members, and a query's answer is what was released to them (read
again with ``QueryService.get_result``, at no cost). The SQL text is never kept (it may
hold a literal naming a pupil), so a query is listed by its id, its answer's columns, its
ε and when it was asked.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from policies.epsilon import to_float
from safesetting.caller import Caller, Role
from safesetting.control import Control
from safesetting.store import project_spent
from safesetting.store import tables as t
from safesetting.store.registry import list_projects
from safesetting.validation import check_id

MAX_LISTED = 1_000


def projects(control: Control, caller: Caller) -> list[dict[str, Any]]:
    """The caller's projects (every project for auditors and admins), oldest first, each
    with its budget as ``budget`` reports it."""
    member = caller.id if caller.role is Role.RESEARCHER else None
    with control.reader() as conn:
        found = list_projects(conn, member=member)
        return [
            {
                "project": p.id,
                "title": p.title,
                "purpose": p.purpose,
                "org_type": p.org_type,
                "tables": list(p.tables),
                "status": p.status,
                "expires": p.expires.isoformat(),
                "budget_epsilon": to_float(p.budget_micro),
                "epsilon_spent": to_float(spent := project_spent(conn, p.id)),
                "budget_remaining": to_float(max(p.budget_micro - spent, 0)),
            }
            for p in found
        ]


def queries(
    control: Control, caller: Caller, *, project: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The caller's queries (every researcher's for auditors and admins), newest first, at
    most ``limit`` (≤ 1,000), optionally of one project: id, project, status, ε, when it
    was asked and answered, and the answer's columns."""
    if project is not None:
        check_id("project", project)
    limit = max(1, min(limit, MAX_LISTED))
    q = t.queries
    select = sa.select(
        q.c.id, q.c.researcher_id, q.c.project_id, q.c.status, q.c.epsilon_micro,
        q.c.created_at, q.c.released_at, q.c.result,
    )  # fmt: skip
    if caller.role is Role.RESEARCHER:
        select = select.where(q.c.researcher_id == caller.id)
    if project is not None:
        select = select.where(q.c.project_id == project)
    select = select.order_by(q.c.created_at.desc(), q.c.id).limit(limit)
    with control.reader() as conn:
        rows = conn.execute(select).all()
    return [
        {
            "query_id": row.id,
            "researcher": row.researcher_id,
            "project": row.project_id,
            "status": row.status,
            "epsilon": to_float(row.epsilon_micro),
            "asked_at": _iso(row.created_at),
            "released_at": _iso(row.released_at),
            "columns": json.loads(row.result).get("columns", []) if row.result else [],
        }
        for row in rows
    ]


def _iso(moment: Any) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")
