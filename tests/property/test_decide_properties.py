"""No combination of facts lets a direct identifier or a refused purpose through."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from policies.decide import (
    ColumnUse,
    Facts,
    ProjectFacts,
    ResearcherFacts,
    Use,
    check_project,
    decide,
)
from policies.load import DEFAULT_POLICY_TOML, parse_policy
from policies.model import ORG_TYPES, PRIVACY_UNIT
from synthetic.schema import TABLES, column_classes

DEFAULT = parse_policy(DEFAULT_POLICY_TOML)
# The most permissive policy a file can express: every other column general, no org limits.
_PERMISSIVE_TOML = (
    DEFAULT_POLICY_TOML.replace("special_category_allowed = false", "")
    .replace("restricted_allowed = false", "")
    .replace(
        "[columns]\n",
        "[columns]\n"
        + "".join(
            f'"{name}" = "general"\n'
            for name, cls in column_classes().items()
            if cls != "direct_identifier"
        ),
    )
)
PERMISSIVE = parse_policy(_PERMISSIVE_TOML)
ALL_COLUMNS = sorted(column_classes())
DIRECT = [c for c, cls in column_classes().items() if cls == "direct_identifier"]
REFUSED = sorted(set(DEFAULT.purposes.refused))
ALLOWED = sorted(DEFAULT.purposes.allowed)

dates = st.dates(min_value=date(2020, 1, 1), max_value=date(2032, 1, 1))
purposes = st.sampled_from([*ALLOWED, *REFUSED]) | st.text(min_size=1, max_size=12)
column_uses = st.builds(
    ColumnUse,
    column=st.sampled_from(ALL_COLUMNS) | st.text(max_size=8),
    use=st.sampled_from(list(Use)),
    coarse=st.booleans(),
)
researchers = st.builds(
    ResearcherFacts,
    id=st.sampled_from(["ada", "bob"]),
    role=st.sampled_from(["researcher", "auditor", "admin", "x"]),
    accredited_until=st.none() | dates,
    token_revoked=st.booleans(),
)
micro = st.integers(min_value=-(10**6), max_value=10**8)


def projects(purpose=purposes):
    return st.builds(
        ProjectFacts,
        id=st.just("p1"),
        purpose=purpose,
        org_type=st.sampled_from([*ORG_TYPES, "bank"]),
        tables=st.frozensets(st.sampled_from(sorted(TABLES))),
        approved_columns=st.frozensets(st.sampled_from(ALL_COLUMNS)),
        budget_micro=micro,
        expires=dates,
        status=st.sampled_from(["open", "closed"]),
        members=st.frozensets(st.sampled_from(["ada", "bob"])),
    )


def facts(project=None, columns=None):
    return st.builds(
        Facts,
        policy=st.sampled_from([DEFAULT, PERMISSIVE]),
        researcher=researchers,
        project=projects() if project is None else project,
        columns=st.lists(column_uses, max_size=6).map(tuple) if columns is None else columns,
        epsilon_micro=micro,
        project_spent_micro=micro,
        dataset_spent_micro=micro,
        today=dates,
        tables=st.frozensets(st.sampled_from(sorted(TABLES)) | st.text(max_size=5)),
    )


def _forbidden_use(use: ColumnUse) -> bool:
    name = use.column.partition(".")[2]
    return name != PRIVACY_UNIT or use.use not in (Use.JOIN_KEY, Use.COUNT_DISTINCT)


direct_use = st.builds(
    ColumnUse,
    column=st.sampled_from(DIRECT),
    use=st.sampled_from(list(Use)),
    coarse=st.booleans(),
).filter(_forbidden_use)


@settings(max_examples=400, deadline=None)
@given(
    data=st.data(),
    bad=direct_use,
    others=st.lists(column_uses, max_size=5),
    position=st.integers(0, 5),
)
def test_direct_identifier_never_allowed(data, bad, others, position):
    columns = tuple([*others[:position], bad, *others[position:]])
    decision = decide(data.draw(facts(columns=st.just(columns))))
    assert not decision.allowed
    assert "direct_identifier" in decision.codes


@settings(max_examples=400, deadline=None)
@given(data=st.data(), purpose=st.sampled_from(REFUSED))
def test_refused_purpose_never_allowed(data, purpose):
    decision = decide(data.draw(facts(project=projects(st.just(purpose)))))
    assert not decision.allowed
    assert "purpose_refused" in decision.codes


@settings(max_examples=400, deadline=None)
@given(f=facts())
def test_allowed_only_when_every_rule_holds(f):
    decision = decide(f)
    assert decision.allowed == (decision.reasons == ())
    if decision.allowed:
        assert f.project.purpose in f.policy.purposes.allowed
        assert f.researcher.id in f.project.members
        assert 0 < f.epsilon_micro <= f.policy.epsilon.max_per_query
        assert f.project_spent_micro + f.epsilon_micro <= f.project.budget_micro
        assert f.dataset_spent_micro + f.epsilon_micro <= f.policy.epsilon.dataset_cap
        assert not any(_forbidden_use(u) for u in f.columns if u.column in DIRECT)


@settings(max_examples=300, deadline=None)
@given(
    project=projects(),
    direct=st.sampled_from(DIRECT),
    policy=st.sampled_from([DEFAULT, PERMISSIVE]),
)
def test_project_approval_never_grants_identifier_or_refused_purpose(project, direct, policy):
    with_direct = replace(project, approved_columns=project.approved_columns | {direct})
    assert "direct_identifier" in check_project(policy, with_direct).codes
    if project.purpose in REFUSED or project.purpose not in policy.purposes.allowed:
        assert "purpose_refused" in check_project(policy, project).codes


def test_permissive_policy_really_is_permissive():
    # Guard that the property tests exercise the relaxed policy they think they do.
    assert PERMISSIVE.column_class("census.nationality") == "general"
    assert PERMISSIVE.organisation_types["press"].special_category_allowed is True
    assert PERMISSIVE.column_class("pupils.upn") == "direct_identifier"
