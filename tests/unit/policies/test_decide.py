"""decide() and check_project(): every rule, every reason, boundaries exact."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from policies.decide import ColumnUse, Use, check_project, column_uses, decide
from policies.load import DEFAULT_POLICY_TOML, parse_policy
from tests.unit.policies.factories import POLICY, TODAY, facts, project, researcher


def codes(**changes):
    return decide(facts(**changes)).codes


def test_ordinary_query_is_allowed():
    decision = decide(facts())
    assert decision.allowed
    assert decision.reasons == ()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"role": "auditor"}, "not_accredited"),
        ({"role": "admin"}, "not_accredited"),
        ({"accredited_until": None}, "not_accredited"),
        ({"accredited_until": TODAY - timedelta(days=1)}, "accreditation_expired"),
        ({"token_revoked": True}, "token_revoked"),
    ],
)
def test_researcher_rules(change, code):
    assert codes(researcher=researcher(**change)) == (code,)


def test_accreditation_valid_through_its_last_day():
    assert codes(researcher=researcher(accredited_until=TODAY)) == ()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"members": frozenset({"bob"})}, "not_a_member"),
        ({"status": "closed"}, "project_closed"),
        ({"expires": TODAY - timedelta(days=1)}, "project_expired"),
        ({"purpose": "policing"}, "purpose_refused"),
        ({"purpose": "immigration_enforcement"}, "purpose_refused"),
        ({"purpose": "selling_holidays"}, "purpose_refused"),
    ],
)
def test_project_rules(change, code):
    assert codes(project=project(**change)) == (code,)


def test_project_valid_through_expiry_day():
    assert codes(project=project(expires=TODAY)) == ()


def test_unknown_org_type_is_refused():
    assert codes(project=project(org_type="bank")) == ("org_type_limit",)


def test_every_reason_is_reported_at_once():
    decision = decide(
        facts(
            researcher=researcher(accredited_until=date(2020, 1, 1), token_revoked=True),
            project=project(members=frozenset(), status="closed", purpose="policing"),
            columns=(ColumnUse("pupils.upn", Use.FILTER),),
            epsilon_micro=2_000_000,
            project_spent_micro=5_000_000,
            dataset_spent_micro=50_000_000,
        )
    )
    assert not decision.allowed
    assert decision.codes == (
        "accreditation_expired",
        "token_revoked",
        "not_a_member",
        "project_closed",
        "purpose_refused",
        "table_not_approved",
        "direct_identifier",
        "epsilon_too_large",
        "budget_exhausted",
        "dataset_cap_reached",
    )
    assert all(r.message for r in decision.reasons)


def test_tables_must_be_approved_public_ones_need_not():
    assert codes(tables=frozenset({"census", "ks4"})) == ("table_not_approved",)
    assert codes(tables=frozenset({"census", "schools", "local_authorities"})) == ()


def test_tables_are_inferred_from_columns_too():
    # Fail closed: a column of an unapproved table counts even if the plan forgot the table.
    assert codes(columns=(ColumnUse("absence.sessions_possible", Use.AGGREGATE),)) == (
        "table_not_approved",
    )


def test_unknown_table_and_column():
    assert codes(tables=frozenset({"secret"})) == ("unknown_table",)
    assert codes(columns=(ColumnUse("census.shoe_size", Use.GROUP_KEY),)) == ("unknown_column",)


@pytest.mark.parametrize("use", list(Use))
@pytest.mark.parametrize(
    "column", ["pupils.upn", "pupils.forename", "pupils.surname", "pupils.postcode"]
)
def test_direct_identifiers_are_never_usable(column, use):
    result = codes(
        project=project(tables=frozenset({"pupils"})),
        columns=(ColumnUse(column, use),),
        tables=frozenset({"pupils"}),
    )
    assert result == ("direct_identifier",)


@pytest.mark.parametrize(
    ("use", "allowed"),
    [
        (Use.JOIN_KEY, True),
        (Use.COUNT_DISTINCT, True),
        (Use.GROUP_KEY, False),
        (Use.FILTER, False),
        (Use.AGGREGATE, False),
    ],
)
def test_pupil_id_only_as_join_key_or_distinct_count(use, allowed):
    result = codes(columns=(ColumnUse("census.pupil_id", use),))
    assert result == (() if allowed else ("direct_identifier",))


@pytest.mark.parametrize(
    ("use", "coarse", "allowed"),
    [
        (Use.GROUP_KEY, True, True),
        (Use.FILTER, True, True),
        (Use.JOIN_KEY, True, True),
        (Use.GROUP_KEY, False, False),
        (Use.FILTER, False, False),
        (Use.AGGREGATE, True, False),
        (Use.COUNT_DISTINCT, True, False),
    ],
)
def test_quasi_identifiers_only_on_their_domain(use, coarse, allowed):
    result = codes(
        project=project(tables=frozenset({"pupils"})),
        columns=(ColumnUse("pupils.sex", use, coarse=coarse),),
        tables=frozenset({"pupils"}),
    )
    assert result == (() if allowed else ("quasi_identifier",))


def test_special_category_needs_approval():
    ethnicity = (ColumnUse("census.ethnicity_major", Use.GROUP_KEY),)
    assert codes(columns=ethnicity) == ()
    assert codes(columns=ethnicity, project=project(approved_columns=frozenset())) == (
        "column_not_approved",
    )
    sen = (ColumnUse("census.sen_provision", Use.FILTER),)
    decision = decide(facts(columns=sen))
    assert decision.codes == ("column_not_approved",)
    assert "special category" in decision.reasons[0].message


@pytest.mark.parametrize("org_type", ["commercial", "press"])
def test_special_and_restricted_closed_to_commercial_and_press(org_type):
    columns = (
        ColumnUse("census.ethnicity_major", Use.GROUP_KEY),
        ColumnUse("census.nationality", Use.GROUP_KEY),
    )
    decision = decide(facts(columns=columns, project=project(org_type=org_type)))
    assert decision.codes == ("org_type_limit", "org_type_limit")  # one per column
    assert "ethnicity_major" in decision.reasons[0].message
    assert "nationality" in decision.reasons[1].message


def test_restricted_needs_educational_purpose_and_approval():
    nationality = (ColumnUse("census.nationality", Use.GROUP_KEY),)
    assert codes(columns=nationality) == ()
    assert codes(columns=nationality, project=project(approved_columns=frozenset())) == (
        "column_not_approved",
    )
    policy = parse_policy(
        DEFAULT_POLICY_TOML.replace(
            'educational = ["educational_research", "official_statistics", '
            '"education_policy_evaluation"]',
            'educational = ["educational_research"]',
        )
    )
    result = decide(
        facts(
            policy=policy,
            columns=nationality,
            project=project(purpose="official_statistics"),
        )
    )
    assert result.codes == ("restricted_purpose",)


def test_column_classes_can_be_overridden():
    policy = parse_policy(
        DEFAULT_POLICY_TOML.replace(
            '# "census.language_group" = "special_category"',
            '"census.language_group" = "special_category"',
        )
    )
    language = (ColumnUse("census.language_group", Use.GROUP_KEY),)
    assert codes(columns=language) == ()
    assert decide(facts(policy=policy, columns=language)).codes == ("column_not_approved",)


def test_repeated_problems_are_reported_once():
    columns = (ColumnUse("census.sen_provision", Use.FILTER),) * 3
    assert decide(facts(columns=columns)).reasons == decide(facts(columns=columns[:1])).reasons


@pytest.mark.parametrize("epsilon", [0, -1])
def test_epsilon_must_be_positive(epsilon):
    assert codes(epsilon_micro=epsilon) == ("epsilon_not_positive",)


def test_epsilon_limits_exact_at_the_boundary():
    assert codes(epsilon_micro=POLICY.epsilon.max_per_query) == ()
    assert codes(epsilon_micro=POLICY.epsilon.max_per_query + 1) == ("epsilon_too_large",)
    commercial = project(org_type="commercial")
    assert codes(project=commercial, epsilon_micro=500_000) == ()
    assert codes(project=commercial, epsilon_micro=500_001) == ("org_type_limit",)


def test_project_budget_exact():
    assert codes(project_spent_micro=4_500_000, epsilon_micro=500_000) == ()
    result = decide(facts(project_spent_micro=4_500_001, epsilon_micro=500_000))
    assert result.codes == ("budget_exhausted",)
    assert "0.499999 of its privacy budget left" in result.reasons[0].message


def test_overspent_project_reports_zero_left():
    result = decide(facts(project_spent_micro=9_000_000))
    assert "has 0 of its privacy budget left" in result.reasons[0].message


def test_dataset_cap_exact():
    cap = POLICY.epsilon.dataset_cap
    assert codes(dataset_spent_micro=cap - 500_000) == ()
    assert codes(dataset_spent_micro=cap - 499_999) == ("dataset_cap_reached",)
    assert codes(dataset_spent_micro=cap + 7) == ("dataset_cap_reached",)


class TestCheckProject:
    def test_ordinary_application_is_approved(self):
        assert check_project(POLICY, project()).allowed

    def test_refused_purpose(self):
        decision = check_project(POLICY, project(purpose="policing"))
        # The nationality column it asked for is restricted: that is a second reason.
        assert decision.codes == ("purpose_refused", "restricted_purpose")

    def test_budget_over_org_type_cap(self):
        decision = check_project(POLICY, project(org_type="press", approved_columns=frozenset()))
        assert decision.codes == ("budget_too_large",)
        assert check_project(
            POLICY, project(org_type="press", budget_micro=1_000_000, approved_columns=frozenset())
        ).allowed

    def test_no_cap_for_org_type_without_one(self):
        policy = parse_policy(DEFAULT_POLICY_TOML.replace("max_budget_epsilon = 10\n", "", 1))
        assert check_project(policy, project(budget_micro=40_000_000)).allowed

    def test_unknown_org_type(self):
        assert check_project(POLICY, project(org_type="bank")).codes == ("org_type_limit",)

    def test_tables_and_columns(self):
        decision = check_project(
            POLICY,
            project(
                tables=frozenset({"census", "nowhere"}),
                approved_columns=frozenset(
                    {"pupils.upn", "census.pupil_id", "ks4.maths_grade", "x.y", "pupils.sex"}
                ),
            ),
        )
        assert decision.codes == (
            "unknown_table",
            "direct_identifier",
            "direct_identifier",
            "unknown_column",
        )

    def test_special_for_commercial(self):
        decision = check_project(POLICY, project(org_type="commercial", budget_micro=1_000_000))
        assert decision.codes == ("org_type_limit", "org_type_limit")

    def test_restricted_for_non_educational_allowed_purpose(self):
        policy = parse_policy(
            DEFAULT_POLICY_TOML.replace(
                'allowed = ["educational_research",',
                'allowed = ["journalism", "educational_research",',
            )
        )
        decision = check_project(policy, replace(project(), purpose="journalism"))
        assert decision.codes == ("restricted_purpose",)


def test_column_uses_from_a_plan_usage_map():
    uses = column_uses(
        {"pupils.upn": {"filter"}, "census.pupil_id": {"join_key", "count_distinct"}}
    )
    assert uses == (
        ColumnUse("census.pupil_id", Use.COUNT_DISTINCT),
        ColumnUse("census.pupil_id", Use.JOIN_KEY),
        ColumnUse("pupils.upn", Use.FILTER),
    )
    with pytest.raises(ValueError, match="peek"):
        column_uses({"census.la_code": {"peek"}})


@pytest.mark.parametrize(
    ("special", "restricted"),
    [(True, False), (False, True)],
    ids=["special-only", "restricted-only"],
)
def test_an_organisation_types_special_and_restricted_limits_are_separate(special, restricted):
    """An organisation type may be allowed special-category columns and not restricted ones
    (or the other way round): each column class is checked against its own flag."""
    policy = parse_policy(
        DEFAULT_POLICY_TOML.replace(
            "[organisation_types.charity]",
            "[organisation_types.charity]\n"
            f"special_category_allowed = {str(special).lower()}\n"
            f"restricted_allowed = {str(restricted).lower()}",
            1,
        )
    )
    ethnicity = (ColumnUse("census.ethnicity_major", Use.GROUP_KEY),)
    nationality = (ColumnUse("census.nationality", Use.GROUP_KEY),)
    charity = project(org_type="charity")
    assert codes(policy=policy, project=charity, columns=ethnicity) == (
        () if special else ("org_type_limit",)
    )
    assert codes(policy=policy, project=charity, columns=nationality) == (
        () if restricted else ("org_type_limit",)
    )


def test_a_range_filter_on_a_quasi_identifier_is_not_coarse():
    uses = column_uses({"census.urn": {"filter"}, "pupils.sex": {"filter"}}, fine={"census.urn"})
    assert [(u.column, u.coarse) for u in uses] == [("census.urn", False), ("pupils.sex", True)]
    both = project(tables=frozenset({"census", "pupils"}))
    decision = decide(facts(columns=uses, project=both, tables=frozenset({"census", "pupils"})))
    assert decision.codes == ("quasi_identifier",)
    assert "census.urn" in decision.reasons[0].message


def test_every_reason_names_the_facts_it_is_about():
    """The messages carry the researcher, project, column, table, dates and amounts that
    apply: a reason that lost one of them would tell a researcher or an auditor less."""
    stranger = researcher(id="eve", role="auditor", token_revoked=True)
    gone = project(id="p9", purpose="policing", org_type="press", status="closed",
                   expires=date(2026, 1, 2), tables=frozenset({"census"}),
                   approved_columns=frozenset(), budget_micro=1_000_000)  # fmt: skip
    columns = (
        ColumnUse("pupils.upn", Use.FILTER),
        ColumnUse("pupils.sex", Use.FILTER, coarse=False),
        ColumnUse("census.nationality", Use.GROUP_KEY),
        ColumnUse("census.ethnicity_major", Use.GROUP_KEY),
        ColumnUse("census.nosuch", Use.GROUP_KEY),
        ColumnUse("nosuch.x", Use.FILTER),
    )
    result = decide(
        facts(researcher=stranger, project=gone, columns=columns, epsilon_micro=1_500_000,
              project_spent_micro=900_000, dataset_spent_micro=49_900_000,
              tables=frozenset({"census", "ks4"}))
    )  # fmt: skip
    assert [(r.code, r.message) for r in result.reasons] == [
        ("not_accredited", "researcher eve is not accredited to query the data (role auditor)"),
        ("token_revoked", "the token presented for researcher eve has been revoked"),
        ("not_a_member", "researcher eve is not a member of project p9"),
        ("project_closed", "project p9 is closed"),
        ("project_expired", "project p9 expired on 2026-01-02"),
        ("purpose_refused", "the purpose 'policing' is refused: pupil data may be used only "
         "for the educational purposes the policy allows"),
        ("table_not_approved", "table ks4 is not approved for project p9"),
        ("unknown_table", "table nosuch is not in the catalogue"),
        ("table_not_approved", "table pupils is not approved for project p9"),
        ("direct_identifier", "column pupils.upn is a direct identifier and can never be queried"
         " (pupil_id only joins tables or is counted distinct)"),
        ("quasi_identifier", "column pupils.sex is a quasi-identifier: it may only be grouped "
         "by or filtered on its declared coarse values"),
        ("restricted_purpose", "column census.nationality is restricted and may be used only "
         "for an educational purpose, not 'policing'"),
        ("column_not_approved", "column census.nationality is restricted and project p9 is not "
         "approved for it"),
        ("org_type_limit", "organisation type 'press' may not do this: restricted columns such "
         "as census.nationality are not available to it"),
        ("column_not_approved", "column census.ethnicity_major is special category and project "
         "p9 is not approved for it"),
        ("org_type_limit", "organisation type 'press' may not do this: special category "
         "columns such as census.ethnicity_major are not available to it"),
        ("unknown_column", "column census.nosuch is not in the catalogue"),
        ("unknown_column", "column nosuch.x is not in the catalogue"),
        ("epsilon_too_large", "epsilon 1.5 is more than the per-query maximum of 1"),
        ("budget_exhausted", "project p9 has 0.1 of its privacy budget left; this query needs "
         "1.5"),
        ("dataset_cap_reached", "the dataset-wide privacy cap has 0.1 left; this query needs "
         "1.5"),
    ]  # fmt: skip


def test_reasons_about_time_epsilon_and_organisations_name_them():
    expired = researcher(accredited_until=date(2026, 5, 31))
    assert [r.message for r in decide(facts(researcher=expired)).reasons] == [
        "researcher ada's accreditation expired on 2026-05-31"
    ]
    assert [r.message for r in decide(facts(epsilon_micro=0)).reasons] == [
        "epsilon must be greater than 0 (asked for 0)"
    ]
    odd = decide(facts(project=project(org_type="guild")))
    assert [r.message for r in odd.reasons] == [
        "organisation type 'guild' may not do this: it is not a known organisation type"
    ]
    press = decide(facts(project=project(org_type="press"), epsilon_micro=600_000,
                         columns=(ColumnUse("census.la_code", Use.GROUP_KEY),)))  # fmt: skip
    assert [r.message for r in press.reasons] == [
        "organisation type 'press' may not do this: at most 0.5 epsilon per query"
    ]
    approval = check_project(POLICY, project(budget_micro=11_000_000))
    assert [r.message for r in approval.reasons] == [
        "a project budget of 11 is more than 10 allowed for organisation type 'academic'"
    ]


def test_a_project_is_approved_for_the_sensitive_columns_it_asks_for():
    """At approval, asking for a special-category column is not refused as unapproved (it is
    what is being approved), but a direct identifier is refused whatever its use."""
    ok = check_project(POLICY, project(approved_columns=frozenset({"census.ethnicity_major"})))
    assert ok.allowed
    upn = check_project(POLICY, project(approved_columns=frozenset({"census.pupil_id"})))
    assert upn.codes == ("direct_identifier",)


def test_the_smallest_epsilon_is_positive_and_an_overspent_cap_shows_zero_left():
    assert codes(epsilon_micro=1) == ()
    over = decide(facts(dataset_spent_micro=POLICY.epsilon.dataset_cap + 5))
    assert [r.message for r in over.reasons] == [
        "the dataset-wide privacy cap has 0 left; this query needs 0.5"
    ]
