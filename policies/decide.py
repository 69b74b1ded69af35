"""``decide()``: facts in, allow or deny out, with every reason that applies. Pure.

The query engine turns a validated plan into :class:`ColumnUse` values (which ``table.column``
is used, how, and whether only on its public values), the service adds the researcher, the
project, the requested ε and what has been spent, and :func:`decide` applies the policy. It
never stops at the first problem: a researcher sees everything that stands in the way at
once. Column safety is decided here only, from the policy's *effective* classes (the
schema's, as ``policy.toml`` overrides them): the engine reports shape, never class.

>>> from datetime import date
>>> from policies.load import default_policy
>>> facts = Facts(
...     policy=default_policy(),
...     researcher=ResearcherFacts("ada", "researcher", date(2030, 1, 1)),
...     project=ProjectFacts("p1", "policing", "academic", frozenset({"census"}),
...                          frozenset(), 5_000_000, date(2030, 1, 1), "open",
...                          frozenset({"ada"})),
...     columns=(ColumnUse("census.la_code", Use.GROUP_KEY),),
...     epsilon_micro=500_000, project_spent_micro=0, dataset_spent_micro=0,
...     today=date(2026, 1, 1))
>>> decide(facts).codes
('purpose_refused',)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from policies.epsilon import format_epsilon
from policies.model import PRIVACY_UNIT, OrgLimits, Policy
from policies.reasons import Reason, reason


class Use(StrEnum):
    """How a query uses a column."""

    GROUP_KEY = "group_key"
    AGGREGATE = "aggregate"  # the argument of SUM/AVG/MEDIAN/…
    COUNT_DISTINCT = "count_distinct"  # COUNT(DISTINCT column)
    FILTER = "filter"
    JOIN_KEY = "join_key"


@dataclass(frozen=True)
class ColumnUse:
    """One use of a qualified column (``census.la_code``) in a query.

    ``coarse`` is False when the column is used other than on its declared public domain
    (a range comparison, a column without a public list, an aggregate's argument), which the
    policy refuses for quasi-identifiers.
    """

    column: str
    use: Use
    coarse: bool = True


def column_uses(
    usage: Mapping[str, Iterable[str]], fine: Iterable[str] = ()
) -> tuple[ColumnUse, ...]:
    """Turn a plan's ``table.column -> {usage, …}`` map into :class:`ColumnUse` values.

    The query engine reports every column a query names and how (a refused query's too);
    this module alone decides whether its class allows that. ``fine`` names the columns the
    query uses other than on their declared public values anywhere (a range comparison such
    as ``urn < 100500``, ``= 45.5`` on a column without a public list, an aggregate's
    argument): every use of such a column is not coarse, which the policy refuses for
    quasi-identifiers. An unknown usage name raises ``ValueError``: a new way of using a
    column must be taught to the policy, not silently allowed.

    >>> uses = column_uses({"census.pupil_id": {"join_key"}, "census.urn": ["filter"]},
    ...                    fine={"census.urn"})
    >>> [(u.column, u.use.value, u.coarse) for u in uses]
    [('census.pupil_id', 'join_key', True), ('census.urn', 'filter', False)]
    """
    ranged = frozenset(fine)
    return tuple(
        ColumnUse(column, Use(use), column not in ranged)
        for column in sorted(usage)
        for use in sorted(usage[column])
    )


@dataclass(frozen=True)
class ResearcherFacts:
    id: str
    role: str
    accredited_until: date | None
    token_revoked: bool = False


@dataclass(frozen=True)
class ProjectFacts:
    """A project as registered (or as applied for, when checked at approval)."""

    id: str
    purpose: str
    org_type: str
    tables: frozenset[str]
    approved_columns: frozenset[str]
    budget_micro: int
    expires: date
    status: str = "open"
    members: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Facts:
    """Everything :func:`decide` needs; ε values are exact integer micro-ε."""

    policy: Policy
    researcher: ResearcherFacts
    project: ProjectFacts
    columns: tuple[ColumnUse, ...]
    epsilon_micro: int
    project_spent_micro: int
    dataset_spent_micro: int
    today: date
    tables: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Decision:
    """Allow, or deny with every reason (in a stable order, without repeats)."""

    allowed: bool
    reasons: tuple[Reason, ...]

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)


def decide(facts: Facts) -> Decision:
    """Apply the policy to one query's facts."""
    policy, project = facts.policy, facts.project
    limits = policy.org_limits(project.org_type)
    return _decision(
        [
            *_researcher_reasons(facts.researcher, facts.today),
            *_membership_reasons(facts.researcher, project, facts.today),
            *_purpose_reasons(policy, project, limits),
            *_table_reasons(policy, project, _touched_tables(facts)),
            *_column_reasons(policy, project, limits, facts.columns),
            *_epsilon_reasons(facts, limits),
        ]
    )


def check_project(policy: Policy, project: ProjectFacts) -> Decision:
    """May ``project`` be approved as applied for? (Input checks such as dates are the caller's.)"""
    limits = policy.org_limits(project.org_type)
    cap = None if limits is None else limits.max_budget_epsilon
    budget: list[Reason] = []
    if cap is not None and project.budget_micro > cap:
        budget.append(
            reason(
                "budget_too_large",
                epsilon=format_epsilon(project.budget_micro),
                limit=format_epsilon(cap),
                org_type=project.org_type,
            )
        )
    approved = tuple(ColumnUse(c, Use.GROUP_KEY) for c in sorted(project.approved_columns))
    return _decision(
        [
            *_purpose_reasons(policy, project, limits),
            *_table_reasons(policy, project, project.tables),
            *_column_reasons(policy, project, limits, approved),
            *budget,
        ]
    )


def _decision(reasons: list[Reason]) -> Decision:
    unique = tuple(dict.fromkeys(reasons))
    return Decision(allowed=not unique, reasons=unique)


def _researcher_reasons(researcher: ResearcherFacts, today: date) -> Iterator[Reason]:
    if researcher.role != "researcher" or researcher.accredited_until is None:
        yield reason("not_accredited", researcher=researcher.id, role=researcher.role)
    elif researcher.accredited_until < today:
        yield reason(
            "accreditation_expired",
            researcher=researcher.id,
            date=researcher.accredited_until.isoformat(),
        )
    if researcher.token_revoked:
        yield reason("token_revoked", researcher=researcher.id)


def _membership_reasons(
    researcher: ResearcherFacts, project: ProjectFacts, today: date
) -> Iterator[Reason]:
    if researcher.id not in project.members:
        yield reason("not_a_member", researcher=researcher.id, project=project.id)
    if project.status != "open":
        yield reason("project_closed", project=project.id)
    if project.expires < today:
        yield reason("project_expired", project=project.id, date=project.expires.isoformat())


def _purpose_reasons(
    policy: Policy, project: ProjectFacts, limits: OrgLimits | None
) -> Iterator[Reason]:
    purposes = policy.purposes
    if project.purpose in purposes.refused or project.purpose not in purposes.allowed:
        yield reason("purpose_refused", purpose=project.purpose)
    if limits is None:
        yield reason(
            "org_type_limit",
            org_type=project.org_type,
            detail="it is not a known organisation type",
        )


def _touched_tables(facts: Facts) -> frozenset[str]:
    return facts.tables | {use.column.partition(".")[0] for use in facts.columns}


def _table_reasons(
    policy: Policy, project: ProjectFacts, tables: frozenset[str]
) -> Iterator[Reason]:
    for table in sorted(tables):
        if not policy.is_known_table(table):
            yield reason("unknown_table", table=table)
        elif not policy.is_public_table(table) and table not in project.tables:
            yield reason("table_not_approved", table=table, project=project.id)


def _column_reasons(
    policy: Policy,
    project: ProjectFacts,
    limits: OrgLimits | None,
    uses: tuple[ColumnUse, ...],
) -> Iterator[Reason]:
    for use in uses:
        column = use.column
        cls = policy.column_class(column)
        if cls is None:
            yield reason("unknown_column", column=column)
        elif cls == "direct_identifier":
            name = column.partition(".")[2]
            if name != PRIVACY_UNIT or use.use not in _UNIT_USES:
                yield reason("direct_identifier", column=column)
        elif cls == "quasi_identifier":
            if use.use not in _QUASI_USES or not use.coarse:
                yield reason("quasi_identifier", column=column)
        elif cls in ("special_category", "restricted"):
            yield from _sensitive_reasons(policy, project, limits, column, cls)


_UNIT_USES = frozenset({Use.JOIN_KEY, Use.COUNT_DISTINCT})
_QUASI_USES = frozenset({Use.GROUP_KEY, Use.FILTER, Use.JOIN_KEY})


def _sensitive_reasons(
    policy: Policy,
    project: ProjectFacts,
    limits: OrgLimits | None,
    column: str,
    cls: str,
) -> Iterator[Reason]:
    restricted = cls == "restricted"
    if restricted and project.purpose not in policy.purposes.educational:
        yield reason("restricted_purpose", column=column, purpose=project.purpose)
    if column not in project.approved_columns:  # at approval, these are what is asked for
        yield reason(
            "column_not_approved", column=column, cls=cls.replace("_", " "), project=project.id
        )
    allowed = limits is None or (
        limits.restricted_allowed if restricted else limits.special_category_allowed
    )
    if not allowed:
        yield reason(
            "org_type_limit",
            org_type=project.org_type,
            detail=f"{cls.replace('_', ' ')} columns such as {column} are not available to it",
        )


def _epsilon_reasons(facts: Facts, limits: OrgLimits | None) -> Iterator[Reason]:
    epsilon = facts.epsilon_micro
    shown = format_epsilon(epsilon)
    if epsilon <= 0:
        yield reason("epsilon_not_positive", epsilon=shown)
        return
    policy_max = facts.policy.epsilon.max_per_query
    org_max = None if limits is None else limits.max_epsilon_per_query
    if epsilon > policy_max:
        yield reason("epsilon_too_large", epsilon=shown, limit=format_epsilon(policy_max))
    elif org_max is not None and epsilon > org_max:
        yield reason(
            "org_type_limit",
            org_type=facts.project.org_type,
            detail=f"at most {format_epsilon(org_max)} epsilon per query",
        )
    project_left = facts.project.budget_micro - facts.project_spent_micro
    if epsilon > project_left:
        yield reason(
            "budget_exhausted",
            project=facts.project.id,
            remaining=format_epsilon(max(project_left, 0)),
            epsilon=shown,
        )
    dataset_left = facts.policy.epsilon.dataset_cap - facts.dataset_spent_micro
    if epsilon > dataset_left:
        yield reason(
            "dataset_cap_reached", remaining=format_epsilon(max(dataset_left, 0)), epsilon=shown
        )
