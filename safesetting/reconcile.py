"""The ledger against the log: every ε debited is an ε the log says was accepted.

A debit and its ``query.accepted`` entry are written in one transaction (``service.py``),
so in an honest home they pair one to one: the same query id, project and micro-ε. The log
is tamper-evident and the ledger is not, so ``audit verify`` checks the ledger against the
log (after the log itself verifies) and names the first disagreement: a debit deleted or
edited, a debit that no entry accounts for, or an entry with no debit.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

import audit
from policies.epsilon import format_epsilon
from safesetting.store import tables as t


@dataclass(frozen=True)
class Reconciliation:
    """What was compared, and each disagreement in log order (empty when they agree)."""

    debits: int
    epsilon_micro: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "debits": self.debits,
            "epsilon": format_epsilon(self.epsilon_micro),
            "problems": self.problems,
        }


def reconcile_ledger(conn: sa.Connection) -> Reconciliation:
    """Pair every ledger debit with its ``query.accepted`` entry; list what does not pair."""
    debits: dict[str, tuple[str, int]] = {}
    if sa.inspect(conn).has_table(t.ledger.name):
        rows = conn.execute(
            sa.select(t.ledger.c.query_id, t.ledger.c.project_id, t.ledger.c.epsilon_micro)
        )
        debits = {r.query_id: (r.project_id, int(r.epsilon_micro)) for r in rows}
    problems: list[str] = []
    accepted: set[str] = set()
    for entry in audit.read_entries(conn, action="query.accepted"):
        query_id = str((entry.request or {}).get("query_id", ""))
        accepted.add(query_id)
        logged = (entry.project, entry.epsilon_micro)
        shown = f"ε {format_epsilon(entry.epsilon_micro)} for project {entry.project}"
        if query_id not in debits:
            problems.append(
                f"entry {entry.seq} accepted query {query_id} ({shown}) but the ledger has "
                "no debit for it"
            )
        elif debits[query_id] != logged:
            project, micro = debits[query_id]
            problems.append(
                f"entry {entry.seq} accepted query {query_id} ({shown}) but the ledger "
                f"debited ε {format_epsilon(micro)} for project {project}"
            )
    for query_id in sorted(set(debits) - accepted):
        project, micro = debits[query_id]
        problems.append(
            f"the ledger debited ε {format_epsilon(micro)} for project {project} (query "
            f"{query_id}) but no log entry accepted that query"
        )
    total = sum(micro for _, micro in debits.values())
    return Reconciliation(len(debits), total, problems)
