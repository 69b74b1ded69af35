"""The privacy-budget ledger: exact integer micro-ε debits that can never overspend.

``debit`` runs inside the caller's transaction, so the query path commits the debit and its
audit entry together (or neither). It first takes the ledger lock row (``FOR UPDATE`` on
PostgreSQL; under SQLite the transaction's ``BEGIN IMMEDIATE`` already holds the write lock),
then inserts the debit with ONE conditional statement that re-checks both the project
budget and the dataset-wide cap against committed totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from policies.epsilon import format_epsilon
from policies.reasons import reason
from safesetting.errors import BudgetExhaustedError, NotFoundError
from safesetting.store import tables as t


@dataclass(frozen=True)
class Debit:
    project: str
    query_id: str
    epsilon_micro: int
    project_spent_micro: int  # after this debit
    dataset_spent_micro: int  # after this debit


def _spent(project: str | None = None) -> sa.Select[Any]:
    """Micro-ε charged to ``project`` (all projects if None), as a query."""
    query = sa.select(sa.func.coalesce(sa.func.sum(t.ledger.c.epsilon_micro), 0))
    return query if project is None else query.where(t.ledger.c.project_id == project)


def project_spent(conn: sa.Connection, project: str) -> int:
    """Micro-ε spent by ``project`` so far."""
    return int(conn.execute(_spent(project)).scalar_one())


def dataset_spent(conn: sa.Connection) -> int:
    """Micro-ε spent by all projects together: the privacy loss any one pupil may have had."""
    return int(conn.execute(_spent()).scalar_one())


def debit(
    conn: sa.Connection,
    project: str,
    epsilon_micro: int,
    query_id: str,
    *,
    dataset_cap_micro: int,
    now: datetime | None = None,
) -> Debit:
    """Charge ``epsilon_micro`` to ``project`` in the caller's transaction.

    Raises :class:`BudgetExhaustedError` (reasons ``budget_exhausted`` and/or
    ``dataset_cap_reached``) and writes nothing if either limit would be exceeded;
    :class:`NotFoundError` for an unknown project; ``ValueError`` for ε ≤ 0.
    """
    if isinstance(epsilon_micro, bool) or not isinstance(epsilon_micro, int) or epsilon_micro <= 0:
        raise ValueError("a debit must be a positive integer number of micro-epsilon")
    conn.execute(sa.select(t.ledger_lock.c.id).where(t.ledger_lock.c.id == 1).with_for_update())
    budget = conn.execute(
        sa.select(t.projects.c.budget_micro).where(t.projects.c.id == project).with_for_update()
    ).scalar()
    if budget is None:
        raise NotFoundError(f"no project {project}")
    fits = sa.and_(
        _spent(project).scalar_subquery() + epsilon_micro <= int(budget),
        _spent().scalar_subquery() + epsilon_micro <= dataset_cap_micro,
    )
    row = sa.select(
        sa.literal(project, t.ledger.c.project_id.type),
        sa.literal(query_id, t.ledger.c.query_id.type),
        sa.literal(epsilon_micro, sa.BigInteger),
        sa.literal(now or datetime.now(UTC), t.ledger.c.created_at.type),
    ).where(fits)
    inserted = conn.execute(
        sa.insert(t.ledger)
        .from_select(["project_id", "query_id", "epsilon_micro", "created_at"], row)
        .returning(t.ledger.c.id)
    ).first()
    project_total, dataset_total = project_spent(conn, project), dataset_spent(conn)
    if inserted is not None:
        return Debit(project, query_id, epsilon_micro, project_total, dataset_total)
    reasons = []
    shown = format_epsilon(epsilon_micro)
    if project_total + epsilon_micro > int(budget):
        left = format_epsilon(max(int(budget) - project_total, 0))
        reasons.append(reason("budget_exhausted", project=project, remaining=left, epsilon=shown))
    if dataset_total + epsilon_micro > dataset_cap_micro:
        left = format_epsilon(max(dataset_cap_micro - dataset_total, 0))
        reasons.append(reason("dataset_cap_reached", remaining=left, epsilon=shown))
    raise BudgetExhaustedError("the privacy budget cannot pay for this query", reasons)
