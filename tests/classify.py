"""What a query is refused for, as the service decides it: the parser's shape reasons, then
``decide()`` classifying the columns the parser reports (a refused query's too), for a
project approved for every table and every sensitive column, so that only the query itself
can be refused. For engine tests that need no home."""

from __future__ import annotations

from policies.decide import column_uses, decide
from policies.load import default_policy
from policies.model import Policy
from policies.reasons import Reason
from safesetting.engine.parse import Catalogue, parse_query
from safesetting.engine.plan import QueryPlan, Refusal
from synthetic.schema import PRIVATE_TABLES, column_classes
from tests.unit.policies.factories import facts, project

POLICY = default_policy()
EVERYTHING = project(
    tables=frozenset(PRIVATE_TABLES),
    approved_columns=frozenset(
        name for name, cls in column_classes().items() if cls in ("special_category", "restricted")
    ),
)


def policy_reasons(parsed: QueryPlan | Refusal, policy: Policy = POLICY) -> tuple[Reason, ...]:
    """``decide()``'s reasons for the columns ``parsed`` reports."""
    uses = column_uses(parsed.usage, parsed.fine)
    decision = decide(facts(policy=policy, project=EVERYTHING, columns=uses, tables=frozenset()))
    return decision.reasons


def reasons(
    sql: str, policy: Policy = POLICY, catalogue: Catalogue | None = None
) -> tuple[Reason, ...]:
    """Every reason ``sql`` is refused for (none: it would be answered)."""
    parsed = parse_query(sql, catalogue)
    shape = parsed.reasons if isinstance(parsed, Refusal) else ()
    return (*shape, *(r for r in policy_reasons(parsed, policy) if r not in shape))


def codes(sql: str, policy: Policy = POLICY, catalogue: Catalogue | None = None) -> set[str]:
    return {r.code for r in reasons(sql, policy, catalogue)}
