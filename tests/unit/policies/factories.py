"""Facts that pass every rule, to vary one thing at a time."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from policies.decide import ColumnUse, Facts, ProjectFacts, ResearcherFacts, Use
from policies.load import default_policy

TODAY = date(2026, 6, 1)
POLICY = default_policy()


def researcher(**changes: object) -> ResearcherFacts:
    return replace(ResearcherFacts("ada", "researcher", date(2027, 1, 1)), **changes)


def project(**changes: object) -> ProjectFacts:
    base = ProjectFacts(
        id="p1",
        purpose="educational_research",
        org_type="academic",
        tables=frozenset({"census", "ks2"}),
        approved_columns=frozenset({"census.ethnicity_major", "census.nationality"}),
        budget_micro=5_000_000,
        expires=date(2027, 1, 1),
        status="open",
        members=frozenset({"ada"}),
    )
    return replace(base, **changes)


def facts(**changes: object) -> Facts:
    base = Facts(
        policy=POLICY,
        researcher=researcher(),
        project=project(),
        columns=(
            ColumnUse("census.la_code", Use.GROUP_KEY),
            ColumnUse("ks2.read_score", Use.AGGREGATE),
            ColumnUse("census.pupil_id", Use.JOIN_KEY),
            ColumnUse("ks2.pupil_id", Use.JOIN_KEY),
        ),
        epsilon_micro=500_000,
        project_spent_micro=0,
        dataset_spent_micro=0,
        today=TODAY,
        tables=frozenset({"census", "ks2"}),
    )
    return replace(base, **changes)
