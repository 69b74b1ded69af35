"""Each step of the demo, played against the real service, has the outcome the story tells."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import audit
from safesetting.demo import story
from safesetting.demo.play import DemoHome, run_demo
from safesetting.demo.truth import pupil_with_exclusion
from safesetting.errors import UsageError


@pytest.fixture(scope="module")
def run(demo_run):
    return demo_run[0]


def outcome(run, key):
    return next(o for o in run.outcomes if o.step.key == key)


def codes(o):
    return {r["code"] for r in o.reasons}


def test_every_step_turned_out_as_expected(run):
    assert [o.step.key for o in run.outcomes] == [s.key for s in story.STEPS]
    assert [(o.step.key, o.status) for o in run.outcomes if not o.ok] == []
    assert run.ok


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("refuse-enforcement", {"purpose_refused", "restricted_purpose"}),
        ("refuse-extract", {"select_star"}),
        ("refuse-upn", {"direct_identifier"}),
        ("refuse-name", {"direct_identifier"}),
        ("refuse-nationality", {"column_not_approved"}),
    ],
)
def test_refusals_carry_the_right_codes(run, key, expected):
    o = outcome(run, key)
    assert o.status == story.REFUSED
    assert expected <= codes(o)
    for result in o.results:
        assert result["rows"] == []
        assert result["epsilon_spent"] == 0


def test_refused_application_registers_nothing_and_is_audited(run):
    with run.control.engine.connect() as conn:
        refused = audit.read_entries(conn, action="project.refused")
        approved = audit.read_entries(conn, action="project.approved")
    assert [e.project for e in refused] == ["enforcement"]
    assert {"purpose_refused", "restricted_purpose"} <= set(refused[0].reasons)
    assert "enforcement" not in {e.project for e in approved}


def test_gap_is_released_with_error_bars_and_true_values_beside(run):
    o = outcome(run, "release-gap")
    res = o.results[0]
    assert res["status"] == "released"
    assert res["epsilon_spent"] == 1.0
    assert res["columns"] == ["region", "ever_fsm_6", "share_meeting_standard"]
    assert len(res["rows"]) == 9 * 2  # every region x FSM flag, from the public domain
    truth = o.truth[0]
    assert len(truth.rows) == len(res["rows"])
    for row, errs, true in zip(res["rows"], res["error"], truth.rows, strict=True):
        assert row[:2] == true[:2]  # same groups in the same order
        if row[2] is not None:
            assert errs[2] > 0
            assert 0.0 <= row[2] <= 1.0
    # The error bars are honest: most true values lie within them (95 % each, 18 cells).
    inside = sum(
        abs(r[2] - t[2]) <= e[2]
        for r, e, t in zip(res["rows"], res["error"], truth.rows, strict=True)
        if r[2] is not None and t[2] is not None
    )
    assert inside >= 12


def test_same_query_is_cached_at_zero_cost(run):
    first, again = outcome(run, "release-gap"), outcome(run, "cache-gap")
    a, b = first.results[0], again.results[0]
    assert b["status"] == "cached"
    assert b["epsilon_spent"] == 0
    assert b["rows"] == a["rows"]
    assert b["budget_remaining"] == a["budget_remaining"]


def test_queries_until_the_budget_runs_out_then_refused(run):
    o = outcome(run, "exhaust-budget")
    *answered, last = o.results
    assert all(r["status"] == "released" for r in answered)
    assert last["status"] == "denied"
    assert "budget_exhausted" in {r["code"] for r in last["reasons"]}
    assert answered[-1]["budget_remaining"] == 0
    assert sum(r["epsilon_spent"] for r in answered) == 2.0  # 3 - 1 spent on the gap


def test_optout_takes_effect_on_the_next_query_and_is_audited(run):
    before, after = outcome(run, "release-exclusions"), outcome(run, "release-after-optout")
    record = outcome(run, "optout")
    assert record.status == story.RECORDED
    # Not served from the cache: the opt-out register is part of the cache key.
    assert after.results[0]["status"] == "released"
    assert after.results[0]["epsilon_spent"] == 0.5
    # The true count (demo only) falls by exactly the one opted-out pupil.
    true_before = sum(before.truth[0].values(i)[0] for i in range(len(before.truth[0].rows)))
    true_after = sum(after.truth[0].values(i)[0] for i in range(len(after.truth[0].rows)))
    assert true_before - true_after == 1
    with run.control.engine.connect() as conn:
        entries = audit.read_entries(conn, action="optout.added")
    assert len(entries) == 1
    assert entries[0].request == {"count": 1}
    assert entries[0].seq == record.detail["audit_seq"]


def test_no_audit_entry_holds_the_opted_out_upn_or_any_upn(run):
    upn = pupil_with_exclusion(str(run.control.home.database), 2023)  # the demo's choice
    with run.control.engine.connect() as conn:
        canon = b"".join(e.canonical for e in audit.read_entries(conn))
    assert upn.encode() not in canon
    assert not re.search(rb"\b[A-Z]\d{11}[0-9A-Z]\b", canon)


def test_subject_access_names_the_queries_before_the_optout_only(run):
    o = outcome(run, "subject-access")
    answer = o.detail["answer"]
    before = outcome(run, "release-exclusions").results[0]["query_id"]
    after = outcome(run, "release-after-optout").results[0]["query_id"]
    by_id = {x["query_id"]: x for x in answer["queries"]}
    assert by_id[before]["included"] is True
    assert by_id[after]["included"] is False
    assert "opted out" in by_id[after]["why"]
    assert answer["opted_out_on"] is not None
    # Never a released value: no rows, no errors, no numbers of the answers.
    text = json.dumps(answer)
    assert '"rows"' not in text
    assert '"error"' not in text
    with run.control.engine.connect() as conn:
        entry = audit.get_entry(conn, answer["audit_seq"])
    assert entry.action == "subject.access"
    assert entry.request["count"] == answer["could_have_included"]


def test_auditor_verifies_the_log_against_the_published_checkpoint(run):
    v = outcome(run, "verify-log").detail["verify"]
    assert v["ok"]
    sources = {c["source"] for c in v["checkpoints_verified"]}
    assert sources == {"stored", "given"}
    assert (run.out / "published-checkpoint.txt").read_text().strip()


def test_tampered_copy_is_caught_and_the_entry_named(run):
    o = outcome(run, "tamper")
    v = o.detail["verify"]
    assert not v["ok"]
    assert v["first_bad_seq"] == o.detail["edited_seq"]
    # The live log is untouched.
    assert audit.verify_log(run.control.engine, None, v["public_key"]).ok


def test_a_folder_that_is_not_a_demo_home_is_refused(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "control.db").write_text("someone's real safe setting")
    with pytest.raises(UsageError, match="not a demo home"):
        run_demo(tmp_path, pupils=5_000)
    assert (tmp_path / "home" / "control.db").read_text() == "someone's real safe setting"


def test_demo_home_keeps_its_own_sqlite_database(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFESETTING_DB_URL", "postgresql+psycopg://nobody@nowhere/none")
    home = DemoHome(tmp_path)
    assert home.db_url == f"sqlite:///{tmp_path / 'control.db'}"


def test_released_values_carry_real_noise(run):
    """The demo uses the real release path: released cells are not the true values."""
    o = outcome(run, "release-gap")
    pairs = [
        (row[2], true[2])
        for row, true in zip(o.results[0]["rows"], o.truth[0].rows, strict=True)
        if row[2] is not None and true[2] is not None
    ]
    assert sum(round(r, 4) != round(t, 4) for r, t in pairs) >= len(pairs) // 2


def test_true_values_stay_in_the_demo():
    """Only the demo and its report may import the module that computes true values."""
    root = Path(__file__).resolve().parents[3]
    users = [
        p.relative_to(root).as_posix()
        for p in (root / "safesetting").rglob("*.py")
        if "demo.truth" in p.read_text() or "from safesetting.demo import truth" in p.read_text()
    ]
    assert sorted(users) == [
        "safesetting/demo/play.py", "safesetting/demo/terminal.py",
        "safesetting/report/demo_page.py",
    ]  # fmt: skip
