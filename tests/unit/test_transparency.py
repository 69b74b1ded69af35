"""The public transparency summary and its HTML: complete, consistent with the ledger and
the log, and free of anything about a pupil or any released value."""

from __future__ import annotations

import json
import re

import pytest

import audit
from safesetting.report.transparency_page import render_transparency
from safesetting.store import ledger
from safesetting.transparency import transparency_summary


@pytest.fixture(scope="module")
def demo(demo_run):
    run, _report, _public = demo_run
    return run, transparency_summary(run.control)


def test_every_approved_project_is_listed_with_who_what_and_when(demo):
    _run, summary = demo
    by_id = {p["id"]: p for p in summary["projects"]}
    assert set(by_id) == {"fsm-gap", "exclusions"}
    gap = by_id["fsm-gap"]
    assert gap["organisations"] == ["UCL Institute of Education"]
    assert gap["org_type"] == "academic"
    assert gap["purpose"] == "educational_research"
    assert gap["approved"] <= gap["first_query"] <= gap["last_query"] < gap["expires"]
    assert gap["tables"] == ["census", "ks2"]


def test_question_counts_and_kinds_come_from_the_log(demo):
    run, summary = demo
    gap = next(p for p in summary["projects"] if p["id"] == "fsm-gap")
    with run.control.engine.connect() as conn:
        released = audit.read_entries(conn, action="query.released", project="fsm-gap")
        cached = audit.read_entries(conn, action="query.cached", project="fsm-gap")
        denied = audit.read_entries(conn, action="query.denied", project="fsm-gap")
    assert gap["queries"]["released"] == len(released) == 5
    assert gap["queries"]["cached"] == len(cached) == 1
    assert gap["queries"]["denied"] == len(denied)
    totals = summary["queries"]
    assert totals["released"] == sum(p["queries"]["released"] for p in summary["projects"])
    assert gap["tables_asked"]["ks2"] == 6  # 5 answered + the one refused for budget
    assert gap["aggregate_kinds"] == {"avg": 5}
    assert gap["grouped_by"] == {"census.ever_fsm_6": 5, "census.region": 5}
    assert gap["refusal_reasons"]["budget_exhausted"] == 1
    assert gap["refusal_reasons"]["direct_identifier"] == 2


def test_epsilon_matches_the_ledger_and_adds_up_to_the_dataset_loss(demo):
    run, summary = demo
    with run.control.engine.connect() as conn:
        for p in summary["projects"]:
            assert p["epsilon_spent"] == ledger.project_spent(conn, p["id"]) / 1_000_000
        total = ledger.dataset_spent(conn) / 1_000_000
    loss = summary["dataset"]
    assert loss["epsilon_spent"] == total == 4.0  # 3 (fsm-gap) + 1 (exclusions)
    assert loss["epsilon_cap"] == 50


def test_refused_applications_are_public(demo):
    _run, summary = demo
    [refused] = summary["refused_applications"]
    assert refused["project"] == "enforcement"
    assert refused["purpose"] == "immigration_enforcement"
    assert "purpose_refused" in refused["reasons"]


def test_the_checkpoint_verifies_with_the_published_key(demo):
    run, summary = demo
    a = summary["audit"]
    note = a["checkpoint"]["note"]
    checkpoint = audit.open_checkpoint(note, audit.VerifierKey.parse(a["public_key"]))
    assert checkpoint.size == a["entries"] == a["checkpoint"]["tree_size"]
    assert audit.verify_log(run.control.engine, note, a["public_key"]).ok


def test_nothing_about_a_pupil_and_no_released_value(demo):
    run, summary = demo
    text = json.dumps(summary)
    assert not re.search(r"\b[A-Z]\d{11}[0-9A-Z]\b", text)  # no UPN
    assert "SELECT" not in text  # no researcher SQL
    released = [
        v for o in run.outcomes for r in o.results for row in r["rows"] for v in row
        if isinstance(v, float) and not float(v).is_integer()
    ]  # fmt: skip
    assert released
    assert not any(str(v) in text for v in released)
    assert summary["optouts"] == 1


def test_html_escapes_everything_it_is_given():
    summary = {
        "generated_at": "2026-01-01T00:00:00+00:00",
        "policy_sha256": "0" * 64,
        "projects": [
            {
                "id": "p1", "title": "<script>alert('x')</script>", "organisations": ["A&B"],
                "researchers": 1, "org_type": "academic", "purpose": "educational_research",
                "tables": ["census"], "special_columns": [],
                "approved": "2026-01-01", "expires": "2027-01-01", "status": "open",
                "closed": None, "first_query": None, "last_query": None,
                "queries": {"released": 0, "cached": 0, "denied": 0},
                "tables_asked": {"<img src=x onerror=alert(1)>": 1}, "aggregate_kinds": {},
                "grouped_by": {}, "refusal_reasons": {}, "budget_epsilon": 1.0,
                "epsilon_spent": 0.0,
            }
        ],
        "refused_applications": [],
        "dataset": {"epsilon_spent": 0.0, "epsilon_cap": 50.0},
        "optouts": 0,
        "audit": {"entries": 0, "checkpoint": None, "public_key": None},
    }  # fmt: skip
    html = render_transparency(summary)
    assert "<script>" not in html
    assert "<img" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "A&amp;B" in html
