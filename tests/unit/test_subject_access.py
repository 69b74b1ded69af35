"""Subject access: re-checking every released query's logged filters for one pupil."""

from __future__ import annotations

import re

import duckdb
import pytest

import audit
from safesetting import administration as admin
from safesetting.control import open_control
from safesetting.engine.plan import QueryPlan
from safesetting.errors import UsageError
from safesetting.home import Home
from safesetting.service import QueryService
from safesetting.subject_access import count_doc, subject_access
from synthetic.load import generate_database

FUTURE = "2031-01-31"
QUERIES = {
    "fsm_2019": "SELECT region, COUNT(*) FROM census WHERE academic_year = 2019 AND fsm_eligible "
    "GROUP BY region",
    "ks2_high_maths": "SELECT COUNT(*) FROM census JOIN ks2 USING (pupil_id, academic_year) "
    "WHERE ks2.maths_score >= 110",
    "sen_by_year": "SELECT academic_year, sen_provision, COUNT(DISTINCT pupil_id) FROM census "
    "WHERE nc_year BETWEEN 1 AND 6 GROUP BY academic_year, sen_provision",
}
# The same filters, written directly: what "could have included pupil ?" means.
DIRECT = {
    "fsm_2019": "SELECT COUNT(*) FROM census WHERE academic_year = 2019 AND fsm_eligible "
    "AND pupil_id = ?",
    "ks2_high_maths": "SELECT COUNT(*) FROM census JOIN ks2 USING (pupil_id, academic_year) "
    "WHERE ks2.maths_score >= 110 AND pupil_id = ?",
    "sen_by_year": "SELECT COUNT(*) FROM census WHERE nc_year BETWEEN 1 AND 6 "
    "AND sen_provision IS NOT NULL AND pupil_id = ?",
}


@pytest.fixture
def setting(npd_tiny):
    home = Home(npd_tiny.parent)
    control = open_control(home, actor="admin:test")
    token = admin.add_researcher(
        control, "ada", organisation="UCL", role="researcher", accredited_until=FUTURE
    ).token
    admin.approve_project(
        control, "gaps", title="Gaps", org_type="academic", purpose="educational_research",
        tables=["census", "ks2"], special=["census.sen_provision"], budget_epsilon="5",
        expires=FUTURE, members=["ada"],
    )  # fmt: skip
    service = QueryService(control)
    ids = {}
    for name, sql in QUERIES.items():
        result = service.submit(service.login(token), sql, "gaps", "0.5")
        assert result.status == "released", result.reasons
        ids[name] = result.query_id
    return control, service, token, ids


def pupils(db, n=25):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT pupil_id, upn FROM pupils ORDER BY hash(pupil_id) LIMIT ?", [n]
        ).fetchall()
    finally:
        con.close()


def directly(db, name, pupil_id) -> bool:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(DIRECT[name], [pupil_id]).fetchall()[0][0] > 0
    finally:
        con.close()


def test_inclusion_matches_the_filters_evaluated_directly(setting):
    control, _service, _token, ids = setting
    db = control.home.database
    seen = {True: 0, False: 0}
    for pupil_id, upn in pupils(db):
        answer = subject_access(control, upn)
        assert answer.found
        by_id = {x.query_id: x for x in answer.queries}
        for name, qid in ids.items():
            expected = directly(db, name, pupil_id)
            assert by_id[qid].included is expected, (name, pupil_id)
            seen[expected] += 1
    assert seen[True] > 5
    assert seen[False] > 5  # both answers occur, so the test can fail either way


def test_optout_takes_effect_on_the_next_query_and_is_audited(setting):
    control, service, token, ids = setting
    db = control.home.database
    upn = next(u for p, u in pupils(db, 400) if directly(db, "fsm_2019", p))
    admin.add_optouts(control, [upn])
    again = service.submit(service.login(token), QUERIES["fsm_2019"], "gaps", "0.5")
    assert again.status == "released"  # not the cached answer: the register changed
    assert again.epsilon_spent == 0.5
    answer = subject_access(control, upn)
    by_id = {x.query_id: x for x in answer.queries}
    assert by_id[ids["fsm_2019"]].included is True
    assert by_id[again.query_id].included is False
    assert by_id[again.query_id].why == "opted out before the query ran"
    with control.engine.connect() as conn:
        added = audit.read_entries(conn, action="optout.added")
    assert [e.request for e in added] == [{"count": 1}]


def test_subject_access_is_audited_without_the_upn_and_reveals_no_value(setting):
    control, _service, _token, _ids = setting
    _pid, upn = pupils(control.home.database, 1)[0]
    answer = subject_access(control, upn)
    with control.engine.connect() as conn:
        entry = audit.get_entry(conn, answer.audit_seq)
    assert entry.action == "subject.access"
    assert entry.actor == "admin:test"
    assert upn.encode() not in entry.canonical
    doc = answer.to_json()
    assert set(doc["queries"][0]) == {
        "query_id", "project", "released_on", "tables", "included", "why", "data_changed",
        "served_from_cache",
    }  # fmt: skip
    assert not re.search(r"\b[A-Z]\d{11}[0-9A-Z]\b", str(doc))


def test_unknown_upn_is_answered_and_audited(setting):
    control, *_ = setting
    answer = subject_access(control, "Z999999999999")
    assert not answer.found
    assert answer.queries == []
    with control.engine.connect() as conn:
        assert audit.get_entry(conn, answer.audit_seq).decision == "not_found"


def test_a_malformed_upn_is_unusable_input(setting):
    control, *_ = setting
    with pytest.raises(UsageError):
        subject_access(control, "not-a-upn'; DROP TABLE pupils; --")


def test_changed_data_is_flagged(setting):
    control, *_ = setting
    _pid, upn = pupils(control.home.database, 1)[0]
    generate_database(control.home.database, 3_000, seed=99, years="2016-2020", force=True)
    answer = subject_access(control, upn)
    assert all(x.data_changed for x in answer.queries)


def test_count_doc_round_trips_a_join_plan():
    from safesetting.engine.parse import parse_query

    plan = parse_query(QUERIES["ks2_high_maths"])
    rebuilt = QueryPlan.from_doc(count_doc(plan.to_doc()))
    assert rebuilt.tables == plan.tables
    assert rebuilt.where.sql() == plan.where.sql()


def test_count_doc_round_trips_a_self_join_with_its_aliases():
    from safesetting.engine.parse import parse_query

    plan = parse_query(
        "SELECT b.sen_provision, COUNT(*) FROM census a JOIN census b USING (pupil_id)"
        " JOIN ks2 k ON k.pupil_id = b.pupil_id AND k.academic_year = b.academic_year"
        " WHERE a.academic_year = 2017 AND b.fsm_eligible GROUP BY b.sen_provision"
    )
    rebuilt = QueryPlan.from_doc(count_doc(plan.to_doc()))
    assert [n.alias for n in rebuilt.nodes] == ["census", "census_2", "ks2"]
    assert rebuilt.where.sql() == plan.where.sql()
    assert [k.column.in_node for k in rebuilt.keys] == ["census_2.sen_provision"]
    assert rebuilt.pinned_years == plan.pinned_years == frozenset({"census"})


def test_a_logged_plan_that_cannot_be_rebuilt_is_reported_as_unknown(setting, monkeypatch):
    control, _service, _token, ids = setting
    from safesetting import subject_access as sa_module

    real = sa_module._accepted_plans

    def garbled(conn):
        plans, cached = real(conn)
        plans[ids["fsm_2019"]] = '{"from": ["census"], "where": "((("}'
        plans[ids["sen_by_year"]] = "not json"
        return plans, cached

    monkeypatch.setattr(sa_module, "_accepted_plans", garbled)
    _pid, upn = pupils(control.home.database, 1)[0]
    by_id = {x.query_id: x for x in subject_access(control, upn).queries}
    assert by_id[ids["fsm_2019"]].included is None
    assert by_id[ids["sen_by_year"]].included is None
    assert by_id[ids["sen_by_year"]].why == "the logged plan could not be re-checked"
    assert by_id[ids["ks2_high_maths"]].included is not None
