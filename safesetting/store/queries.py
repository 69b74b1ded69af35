"""Accepted queries and the release cache (released, noisy results only)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from safesetting.errors import NotFoundError
from safesetting.store import tables as t

ACCEPTED, RELEASED, FAILED = "accepted", "released", "failed"


def insert_query(
    conn: sa.Connection,
    *,
    query_id: str,
    researcher: str,
    project: str,
    cache_key: str,
    plan_digest: str,
    epsilon_micro: int,
    data_version: str,
) -> None:
    """Record an accepted (paid-for) query, in the same transaction as its debit."""
    conn.execute(
        sa.insert(t.queries).values(
            id=query_id,
            researcher_id=researcher,
            project_id=project,
            status=ACCEPTED,
            cache_key=cache_key,
            plan_digest=plan_digest,
            epsilon_micro=epsilon_micro,
            data_version=data_version,
            created_at=datetime.now(UTC),
        )
    )


def finish_query(
    conn: sa.Connection, query_id: str, status: str, result: dict[str, Any] | None
) -> None:
    """Store the released result (or mark the query failed)."""
    conn.execute(
        sa.update(t.queries)
        .where(t.queries.c.id == query_id)
        .values(
            status=status,
            result=json.dumps(result, separators=(",", ":")) if result is not None else None,
            released_at=datetime.now(UTC),
        )
    )


def cached_result(conn: sa.Connection, cache_key: str) -> dict[str, Any] | None:
    """The first release made for ``cache_key``, if any."""
    row = conn.execute(
        sa.select(t.queries.c.result)
        .where(t.queries.c.cache_key == cache_key, t.queries.c.status == RELEASED)
        .order_by(t.queries.c.created_at)
        .limit(1)
    ).first()
    return json.loads(row.result) if row is not None and row.result else None


def in_flight(conn: sa.Connection, cache_key: str, since: datetime) -> str | None:
    """The id of a query paid for since ``since`` for ``cache_key`` and not yet finished."""
    row = conn.execute(
        sa.select(t.queries.c.id)
        .where(
            t.queries.c.cache_key == cache_key,
            t.queries.c.status == ACCEPTED,
            t.queries.c.created_at >= since,
        )
        .limit(1)
    ).first()
    return str(row.id) if row is not None else None


def running(conn: sa.Connection, researcher: str, since: datetime) -> int:
    """How many of ``researcher``'s queries, paid for since ``since``, are still running."""
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(t.queries)
            .where(
                t.queries.c.researcher_id == researcher,
                t.queries.c.status == ACCEPTED,
                t.queries.c.created_at >= since,
            )
        ).scalar_one()
    )


def status_of(conn: sa.Connection, query_id: str) -> str | None:
    return conn.execute(
        sa.select(t.queries.c.status).where(t.queries.c.id == query_id)
    ).scalar_one_or_none()


def get_query(conn: sa.Connection, query_id: str, *, member: str | None = None) -> sa.Row[Any]:
    """Query ``query_id``; with ``member``, only if that researcher asked it and is still a
    member of its project (one lookup: someone else's query costs what a missing one does)."""
    query = sa.select(t.queries).where(t.queries.c.id == query_id)
    if member is not None:
        query = query.where(
            t.queries.c.researcher_id == member,
            sa.exists().where(
                t.project_members.c.project_id == t.queries.c.project_id,
                t.project_members.c.researcher_id == member,
            ),
        )
    row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"no query {query_id}")
    return row


def abandoned_queries(conn: sa.Connection, before: datetime) -> list[sa.Row]:
    """Queries paid for before ``before`` and still neither released nor failed."""
    query = (
        sa.select(
            t.queries.c.id,
            t.queries.c.researcher_id,
            t.queries.c.project_id,
            t.queries.c.data_version,
        )  # fmt: skip
        .where(t.queries.c.status == ACCEPTED, t.queries.c.created_at < before)
        .order_by(t.queries.c.created_at)
    )
    return list(conn.execute(query))
