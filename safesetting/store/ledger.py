"""The privacy-budget ledger: exact integer micro-ε debits that can never overspend.

``debit`` runs inside the caller's transaction, so the query path commits the debit and its
audit entry together (or neither). It first takes the ledger lock row (``FOR UPDATE`` on
PostgreSQL; under SQLite the transaction's ``BEGIN IMMEDIATE`` already holds the write lock),
checks that the ledger still agrees with the audit log's running ε totals (the project's and
the dataset's: one statement, two primary-key reads besides the sums), then inserts the
debit with ONE conditional statement that re-checks both the project budget and the
dataset-wide cap against committed totals.

The ledger can be edited by whoever owns the database file (drop the append-only triggers,
then UPDATE); the log cannot be without ``audit verify`` noticing. A ledger that spends less
than the log says was spent would let a project overspend, so ``debit`` refuses to charge
anything until the two agree again (:class:`IntegrityError`, exit 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from audit import store as audit_store
from policies.epsilon import format_epsilon
from policies.reasons import reason
from safesetting.errors import BudgetExhaustedError, IntegrityError, NotFoundError
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


# The ledger's sums (project, dataset) beside the log's running totals, in one row; built
# once (the project is a parameter).
_PROJECT = sa.bindparam("project", type_=t.ledger.c.project_id.type)
_TOTALS = sa.select(
    sa.select(sa.func.coalesce(sa.func.sum(t.ledger.c.epsilon_micro), 0))
    .where(t.ledger.c.project_id == _PROJECT)
    .scalar_subquery(),
    _spent().scalar_subquery(),
    sa.func.coalesce(
        sa.select(audit_store.epsilon_totals.c.epsilon_micro)
        .where(audit_store.epsilon_totals.c.project == _PROJECT)
        .scalar_subquery(),
        0,
    ),
    audit_store.head.c.epsilon_micro,
).where(audit_store.head.c.id == 1)


def _check_against_log(conn: sa.Connection, project: str) -> tuple[int, int]:
    """The ledger's ``(project, dataset)`` totals, once they are known to equal the log's
    (read before this debit's entry is appended); :class:`IntegrityError` otherwise."""
    row = conn.execute(_TOTALS, {"project": project}).one_or_none()
    if row is None:  # no head row: the log itself is damaged
        raise IntegrityError(
            "refusing to charge: the audit log has no head row; run `safesetting audit verify`"
        )
    spent, overall, logged, logged_overall = (int(v) for v in row)
    if (spent, overall) != (logged, logged_overall):
        raise IntegrityError(
            f"refusing to charge project {project}: the budget ledger disagrees with the "
            f"audit log (project {project}: ledger ε {format_epsilon(spent)}, log ε "
            f"{format_epsilon(logged)}; all projects: ledger ε {format_epsilon(overall)}, "
            f"log ε {format_epsilon(logged_overall)}); nothing was charged: run "
            "`safesetting audit verify` to find the difference"
        )
    return spent, overall


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
    :class:`IntegrityError`, writing nothing, if the ledger's total for the project or for
    the dataset differs from the audit log's running total (the caller appends this
    debit's ``query.accepted`` entry after this call, in the same transaction);
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
    spent, overall = _check_against_log(conn, project)
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
    if inserted is not None:  # the lock is held: nobody else debited in between
        return Debit(
            project, query_id, epsilon_micro, spent + epsilon_micro, overall + epsilon_micro
        )
    reasons = []
    shown = format_epsilon(epsilon_micro)
    if spent + epsilon_micro > int(budget):
        left = format_epsilon(max(int(budget) - spent, 0))
        reasons.append(reason("budget_exhausted", project=project, remaining=left, epsilon=shown))
    if overall + epsilon_micro > dataset_cap_micro:
        left = format_epsilon(max(dataset_cap_micro - overall, 0))
        reasons.append(reason("dataset_cap_reached", remaining=left, epsilon=shown))
    raise BudgetExhaustedError("the privacy budget cannot pay for this query", reasons)
