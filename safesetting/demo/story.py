"""The demo's script, as data: who is registered, which projects apply, and each step of the
story with what happens, why it matters and the outcome it must have.

:mod:`safesetting.demo.play` runs these steps against the real service; the expectations
make the demo a self-check too (it exits non-zero if any step turns out differently).
"""

from __future__ import annotations

from dataclasses import dataclass

# Outcomes a step can have.
REFUSED, RELEASED, CACHED, EXHAUSTED = "refused", "released", "cached", "exhausted"
RECORDED, ANSWERED, VERIFIED, CAUGHT = "recorded", "answered", "verified", "caught"


@dataclass(frozen=True)
class Person:
    id: str
    organisation: str
    role: str
    description: str


@dataclass(frozen=True)
class Application:
    """A project application, as an admin would enter it with ``admin project add``."""

    id: str
    title: str
    org_type: str
    purpose: str
    tables: tuple[str, ...]
    special: tuple[str, ...]
    budget_epsilon: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """One scene. ``action`` says what :mod:`~safesetting.demo.play` does; ``expect`` and
    ``codes`` are the outcome it must have (``codes``: reason codes that must be among the
    refusal's)."""

    key: str
    title: str
    what: str
    why: str
    action: str  # apply | query | exhaust | optout | subject_access | verify | tamper
    expect: str
    codes: tuple[str, ...] = ()
    who: str | None = None
    project: str | None = None
    sql: str | None = None
    epsilon: str | None = None
    sqls: tuple[str, ...] = ()
    application: str | None = None
    show_truth: bool = False


PEOPLE = (
    Person("ada", "UCL Institute of Education", "researcher",
           "an accredited academic researcher studying the attainment gap"),
    Person("cleo", "Fair Start Trust (charity)", "researcher",
           "an accredited charity researcher studying school exclusions"),
    Person("hugo", "Home Office", "researcher",
           "a researcher whose organisation wants pupil data for immigration enforcement"),
    Person("ida", "Independent Data Audit Office", "auditor",
           "an auditor who checks the log and never sees the data"),
)  # fmt: skip

APPLICATIONS = (
    Application(
        "fsm-gap", "The free school meals attainment gap at KS2, by region", "academic",
        "educational_research", ("census", "ks2"), (), "3", ("ada",),
    ),
    Application(
        "exclusions", "Who is excluded from school, and for how long", "charity",
        "educational_research", ("census", "exclusions"), ("census.sen_provision",), "2",
        ("cleo",),
    ),
    Application(
        "enforcement", "Pupils' nationality and country of birth for immigration enforcement",
        "government", "immigration_enforcement", ("census",),
        ("census.nationality", "census.country_of_birth"), "5", ("hugo",),
    ),
)  # fmt: skip

FSM_GAP_SQL = (
    "SELECT region, ever_fsm_6, AVG(CAST(rwm_expected AS INTEGER)) AS share_meeting_standard\n"
    "FROM census JOIN ks2 USING (pupil_id, academic_year)\n"
    "WHERE academic_year = {year}\nGROUP BY region, ever_fsm_6"
)
EXCLUSIONS_SQL = (
    "SELECT category, COUNT(DISTINCT pupil_id) AS pupils\n"
    "FROM exclusions\nWHERE academic_year = 2023\nGROUP BY category"
)
TYPICAL_SQL = "SELECT region, COUNT(*) FROM census WHERE academic_year = 2023 GROUP BY region"
TYPICAL_REPEATED_SQL = (
    "SELECT category, COUNT(*) FROM exclusions WHERE academic_year = 2023 GROUP BY category"
)

STEPS = (
    Step(
        "refuse-enforcement",
        "An application for immigration enforcement is refused",
        "The Home Office applies for pupils' nationality and country of birth, for immigration "
        "enforcement. The policy checks the application before anything is registered.",
        "School records were collected to educate children. Using them to enforce immigration "
        "law is refused outright, whoever asks; nationality is only ever available for "
        "educational research. The refusal itself is recorded in the audit log.",
        "apply", REFUSED, ("purpose_refused", "restricted_purpose"), application="enforcement",
    ),
    Step(
        "refuse-extract",
        "A raw extract is refused",
        "Ada asks for every row of the pupils table.",
        "Users come to the data: no row ever leaves. The old model copied whole records out; "
        "here the engine only answers aggregate questions.",
        "query", REFUSED, ("select_star",), who="ada", project="fsm-gap",
        sql="SELECT * FROM pupils",
    ),
    Step(
        "refuse-upn",
        "A UPN hidden in a filter is refused",
        "Ada asks only for a count, but filters on pupils' UPNs (unique pupil numbers).",
        "A count over a filter on an identifier can single out a child. Direct identifiers "
        "are refused wherever they appear, not just in what is selected.",
        "query", REFUSED, ("direct_identifier",), who="ada", project="fsm-gap",
        sql="SELECT la_code, COUNT(*) FROM pupils WHERE upn LIKE 'K8%' GROUP BY la_code",
    ),
    Step(
        "refuse-name",
        "A name hidden inside a function is refused",
        "Ada tries to reach pupils' surnames through a function in the filter.",
        "The validator reads the whole query: a name inside a function is still a name.",
        "query", REFUSED, ("direct_identifier",), who="ada", project="fsm-gap",
        sql="SELECT region, COUNT(*) FROM census JOIN pupils USING (pupil_id)\n"
        "WHERE length(surname) > 8 GROUP BY region",
    ),
    Step(
        "refuse-nationality",
        "Nationality is refused to a project not approved for it",
        "Cleo's charity project asks how many pupils there are of each nationality.",
        "Nationality and country of birth are restricted: only a project approved for them, "
        "with an educational purpose, may ask (and the enforcement application above was "
        "refused for exactly that reason).",
        "query", REFUSED, ("column_not_approved",), who="cleo", project="exclusions",
        sql="SELECT nationality, COUNT(*) FROM census WHERE academic_year = 2023 "
        "GROUP BY nationality",
    ),
    Step(
        "release-gap",
        "The free school meals gap by region is released, with error bars",
        "Ada asks, for 2023, what share of pupils met the expected standard in reading, writing "
        "and maths, by region and by whether they had free school meals in the last six years. "
        "She spends ε = 1 of her project's budget of 3.",
        "The answer is useful for policy, and no child can be picked out of it: OpenDP adds "
        "carefully sized random noise, and every number comes with its 95 % error bar.",
        "query", RELEASED, who="ada", project="fsm-gap", sql=FSM_GAP_SQL.format(year=2023),
        epsilon="1", show_truth=True,
    ),
    Step(
        "cache-gap",
        "The same question again is answered from the cache, at no cost",
        "Ada sends exactly the same question again.",
        "Asking the same thing twice and averaging would wear the noise away. Instead the "
        "first answer is given again: nothing new is learned, so nothing is spent.",
        "query", CACHED, who="ada", project="fsm-gap", sql=FSM_GAP_SQL.format(year=2023),
        epsilon="1",
    ),
    Step(
        "exhaust-budget",
        "Questions until the budget runs out, then a refusal",
        "Ada asks about other years, ε = 0.5 each, until her project's budget of 3 is spent; "
        "the next question is refused.",
        "Every answer leaks a little. The budget caps how much any project can learn about any "
        "pupil, and the ledger never lets it be overspent.",
        "exhaust", EXHAUSTED, ("budget_exhausted",), who="ada", project="fsm-gap",
        epsilon="0.5",
        sqls=tuple(FSM_GAP_SQL.format(year=y) for y in (2024, 2022, 2019, 2018, 2017)),
    ),
    Step(
        "release-exclusions",
        "The charity's question about exclusions is released",
        "Cleo asks how many pupils were suspended or permanently excluded in 2023.",
        "Charities get the same protections and the same kind of answer as academics.",
        "query", RELEASED, who="cleo", project="exclusions", sql=EXCLUSIONS_SQL,
        epsilon="0.5", show_truth=True,
    ),
    Step(
        "optout",
        "A parent opts their child out",
        "A parent asks for their child (who was excluded in 2023) to be left out of research. "
        "The operator records the opt-out against the child's UPN.",
        "Opting out takes effect on the very next query. The audit log records that an "
        "opt-out happened, never whose.",
        "optout", RECORDED,
    ),
    Step(
        "release-after-optout",
        "The next answer leaves that child out",
        "Cleo asks exactly the same question again.",
        "This time it is not answered from the cache: the opt-out register changed, so the "
        "question is answered afresh without the child (see the true values, which only this "
        "synthetic demo can show, go down by one).",
        "query", RELEASED, who="cleo", project="exclusions", sql=EXCLUSIONS_SQL,
        epsilon="0.5", show_truth=True,
    ),
    Step(
        "subject-access",
        "The parent asks which answers could have included their child",
        "The operator runs a subject-access request for the child's UPN.",
        "Parents should see what is done with their child's record. Each released query's "
        "logged filters are re-checked against that one child's record; no released number "
        "is shown.",
        "subject_access", ANSWERED,
    ),
    Step(
        "verify-log",
        "The auditor verifies the log",
        "Ida recomputes every hash in the log and checks it against the checkpoint the safe "
        "setting signed and published earlier.",
        "Anyone holding the published checkpoint and public key can check that no entry was "
        "changed, removed or reordered since.",
        "verify", VERIFIED,
    ),
    Step(
        "tamper",
        "A tampered entry is caught",
        "In a COPY of the control database, an insider with the file removes the append-only "
        "triggers, edits one entry so Ada's first answer seems to have cost ε = 0.1 instead of "
        "1, and recomputes every hash so the copy looks consistent. The auditor verifies it.",
        "The log is tamper-evident: each commit was followed by a checkpoint signed with a key "
        "the insider does not have, so verification finds the root no longer matches and "
        "names the entry that was changed.",
        "tamper", CAUGHT,
    ),
)  # fmt: skip
