"""`safesetting admin …` and `safesetting budget` end to end, with the audit trail they leave."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import audit
from policies.epsilon import to_micro
from safesetting.store import debit, token_digest
from safesetting.store import tables as t
from tests.functional.admin_helpers import (
    FUTURE,
    actions,
    add_project,
    add_researcher,
    engine,
    entries,
    run,
    run_json,
)


@pytest.fixture
def home(tmp_path, runner):
    home = tmp_path / "home"
    run(runner, home, "init")
    return home


def test_first_use_writes_policy_and_logs_it(runner, home):
    run(runner, home, "admin", "researcher", "list")
    assert (home / "policy.toml").read_text().startswith("# Safe Setting policy")
    assert actions(home) == ["policy.changed"]
    run(runner, home, "admin", "researcher", "list")
    assert actions(home) == ["policy.changed"]  # same digest: nothing new
    with (home / "policy.toml").open("a") as handle:
        handle.write("\n# tightened by the data owner\n")
    run(runner, home, "admin", "policy", "show")
    log = entries(home)
    assert [e.action for e in log] == ["policy.changed", "policy.changed"]
    assert log[0].policy_digest != log[1].policy_digest


def test_researcher_add_shows_token_once_and_stores_only_its_digest(runner, home):
    result = run(
        runner, home, "admin", "researcher", "add", "ada", "--org", "UCL",
        "--accredited-until", FUTURE,
    )  # fmt: skip
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("sst_")
    assert "shown once" in result.stdout
    db = (home / "control.db").read_bytes() + (home / "control.db-wal").read_bytes()
    assert token.encode() not in db
    assert token_digest(token).encode() in db
    assert actions(home)[-2:] == ["researcher.added", "token.issued"]
    assert all(token not in e.canonical.decode() for e in entries(home))
    shown = run_json(runner, home, "admin", "researcher", "show", "ada")
    assert shown["active_tokens"] == 1
    assert shown["role"] == "researcher"


def test_researcher_add_json_is_exactly_id_and_token(runner, home):
    body = run_json(
        runner, home, "admin", "researcher", "add", "ada", "--org", "UCL",
        "--accredited-until", FUTURE,
    )  # fmt: skip
    assert set(body) == {"id", "token"}


def test_revoke_and_renew(runner, home):
    token = add_researcher(runner, home)
    add_project(runner, home)
    env = {"SAFESETTING_TOKEN": token}
    run(runner, home, "budget", "--project", "gaps", env=env)
    assert "Revoked 1 token(s)" in run(runner, home, "admin", "researcher", "revoke", "ada").stdout
    run(runner, home, "budget", "--project", "gaps", code=3, env=env)
    renewed = run_json(
        runner, home, "admin", "researcher", "renew", "ada", "--accredited-until", "2032-02-02",
        "--new-token",
    )  # fmt: skip
    assert renewed["accredited_until"] == "2032-02-02"
    run(runner, home, "budget", "--project", "gaps", env={"SAFESETTING_TOKEN": renewed["token"]})
    log = actions(home)
    assert log.count("token.revoked") == 1
    assert "researcher.renewed" in log
    assert log.count("auth.failed") == 1
    plain = run(runner, home, "admin", "researcher", "renew", "ada", "--accredited-until", FUTURE)
    assert "Renewed ada" in plain.stdout
    assert "Token" not in plain.stdout


def test_researcher_list(runner, home):
    assert "No researchers" in run(runner, home, "admin", "researcher", "list").stdout
    add_researcher(runner, home)
    add_researcher(runner, home, "dfe-audit", role="auditor")
    listed = run_json(runner, home, "admin", "researcher", "list")["researchers"]
    assert [r["id"] for r in listed] == ["ada", "dfe-audit"]
    text = run(runner, home, "admin", "researcher", "list").stdout
    assert "dfe-audit" in text
    assert "auditor" in text
    assert "UCL" in run(runner, home, "admin", "researcher", "show", "ada").stdout


def test_project_approved_listed_shown_closed(runner, home):
    add_researcher(runner, home)
    out = add_project(runner, home, "gaps", "--special", "census.ethnicity_major").stdout
    assert "Approved project gaps" in out
    shown = run_json(runner, home, "admin", "project", "show", "gaps")
    assert shown["special"] == ["census.ethnicity_major"]
    assert shown["tables"] == ["census", "ks2"]
    assert shown["budget_epsilon"] == "1"
    assert shown["members"] == ["ada"]
    assert "Attainment gaps" in run(runner, home, "admin", "project", "show", "gaps").stdout
    assert "gaps" in run(runner, home, "admin", "project", "list").stdout
    assert run_json(runner, home, "admin", "project", "close", "gaps")["status"] == "closed"
    assert run_json(runner, home, "admin", "project", "list")["projects"][0]["status"] == "closed"
    log = entries(home)
    approved = next(e for e in log if e.action == "project.approved")
    assert approved.project == "gaps"
    assert approved.request["budget_epsilon_micro"] == 1_000_000
    assert log[-1].action == "project.closed"


def test_project_list_empty(runner, home):
    assert "No projects" in run(runner, home, "admin", "project", "list").stdout


def test_refused_project_exits_3_is_audited_and_not_registered(runner, home):
    add_researcher(runner, home)
    result = run(
        runner, home, "admin", "project", "add", "deport", "--title", "Find families",
        "--org-type", "government", "--purpose", "immigration_enforcement", "--tables", "census",
        "--special", "census.nationality,census.country_of_birth", "--budget-epsilon", "5",
        "--expires", FUTURE, "--member", "ada", "--json", code=3,
    )  # fmt: skip
    assert "purpose_refused" in result.stderr
    assert "restricted_purpose" in result.stderr
    assert result.stdout  # the JSON envelope
    refused = entries(home)[-1]
    assert refused.action == "project.refused"
    assert refused.decision == "refused"
    # One reason per restricted column asked for.
    assert refused.reasons == ("purpose_refused", "restricted_purpose", "restricted_purpose")
    assert run_json(runner, home, "admin", "project", "list")["projects"] == []


def test_org_type_limits_refuse(runner, home):
    add_researcher(runner, home)
    result = run(
        runner, home, "admin", "project", "add", "scoop", "--title", "Story", "--org-type",
        "press", "--purpose", "educational_research", "--tables", "census", "--special",
        "census.ethnicity_major", "--budget-epsilon", "3", "--expires", FUTURE, "--member", "ada",
        code=3,
    )  # fmt: skip
    assert "org_type_limit" in result.stderr
    assert "budget_too_large" in result.stderr


def test_optouts_recorded_by_count_never_by_upn(runner, home):
    out = run(runner, home, "admin", "optout", "add", "A123456789012", "B12345678901C").stdout
    assert "Added 2" in out
    again = run_json(runner, home, "admin", "optout", "add", "A123456789012")
    assert again == {"added": 0, "already_registered": 1}
    assert run_json(runner, home, "admin", "optout", "list")["upns"] == [
        "A123456789012",
        "B12345678901C",
    ]
    assert "A123456789012" in run(runner, home, "admin", "optout", "list").stdout
    log = entries(home)
    assert [e.request for e in log if e.action == "optout.added"] == [{"count": 2}]
    assert not any("123456789" in e.canonical.decode() for e in log)


def test_optout_list_empty(runner, home):
    assert "No opt-outs" in run(runner, home, "admin", "optout", "list").stdout


def test_budget_is_exact_and_member_only(runner, home):
    ada = add_researcher(runner, home)
    bob = add_researcher(runner, home, "bob")
    auditor = add_researcher(runner, home, "aud", role="auditor")
    add_project(runner, home)
    for i in range(3):  # each debit with its entry, as the service writes them
        with engine(home).begin() as conn:
            debit(conn, "gaps", to_micro("0.1"), f"q{i}", dataset_cap_micro=50_000_000)
            audit.append_entry(conn, actor="researcher:ada", action="query.accepted",
                               project="gaps", request={"query_id": f"q{i}"},
                               decision="allowed", epsilon_micro=to_micro("0.1"))  # fmt: skip
    body = run_json(runner, home, "budget", "--project", "gaps", "--token", ada)
    assert body == {
        "project": "gaps",
        "budget_epsilon": 1.0,
        "epsilon_spent": 0.3,
        "budget_remaining": 0.7,
        "dataset_epsilon_spent": 0.3,
        "dataset_epsilon_cap": 50.0,
    }
    text = run(runner, home, "budget", "--project", "gaps", "--token", ada).stdout
    assert "remaining  0.7 epsilon" in text
    denied = run(runner, home, "budget", "--project", "gaps", "--token", bob, code=3)
    assert "not_a_member" in denied.stderr
    # A researcher cannot tell an unknown project from someone else's.
    unknown = run(runner, home, "budget", "--project", "nope", "--token", bob, code=3)
    assert "not one of yours" in unknown.stderr
    assert run_json(runner, home, "budget", "--project", "gaps", "--token", auditor)[
        "epsilon_spent"
    ]
    run(runner, home, "budget", "--project", "nope", "--token", auditor, code=2)


@pytest.mark.parametrize(("token", "code"), [(None, "no_token"), ("sst_guess", "unknown_token")])
def test_budget_auth_failures_are_audited(runner, home, token, code):
    add_researcher(runner, home)
    add_project(runner, home)
    args = ["budget", "--project", "gaps"] + (["--token", token] if token else [])
    result = run(runner, home, *args, code=3, env={"SAFESETTING_TOKEN": None})
    assert code in result.stderr
    failed = entries(home)[-1]
    assert failed.action == "auth.failed"
    assert failed.reasons == (code,)
    assert failed.actor == "anonymous"


def test_policy_show_and_check(runner, home, tmp_path):
    shown = run_json(runner, home, "admin", "policy", "show")
    assert shown["epsilon_max_per_query"] == "1"
    assert "policing" in shown["purposes_refused"]
    assert shown["limits.press"] == (
        "at most 0.5 epsilon per query; budget at most 1; no special-category columns; "
        "no restricted columns"
    )
    assert shown["limits.academic"] == "budget at most 10"
    assert "sha256" in run(runner, home, "admin", "policy", "show").stdout
    assert run_json(runner, home, "admin", "policy", "check")["valid"] is True
    assert "valid" in run(runner, home, "admin", "policy", "check").stdout
    candidate = tmp_path / "candidate.toml"
    candidate.write_text((home / "policy.toml").read_text().replace("= 10\n", "= 5\n", 1))
    assert run_json(runner, home, "admin", "policy", "check", str(candidate))["valid"] is True
    candidate.write_text("version = 1\nmin_cell_count = 'ten'\n")
    bad = run(runner, home, "admin", "policy", "check", str(candidate), code=2)
    assert bad.stderr.startswith("Error: policy: candidate.toml: min_cell_count: Input should be")


def test_admin_actor_is_the_operator(runner, home):
    add_researcher(runner, home)
    assert all(e.actor.startswith("admin:") for e in entries(home))


def test_token_with_an_end_date(runner, home):
    token = run_json(
        runner, home, "admin", "researcher", "add", "ada", "--org", "UCL",
        "--accredited-until", FUTURE, "--token-expires", "2030-01-01",
    )["token"]  # fmt: skip
    add_project(runner, home)
    run(runner, home, "budget", "--project", "gaps", "--token", token)
    with engine(home).connect() as conn:
        expires = conn.execute(sa.select(t.tokens.c.expires_at)).scalar_one()
    assert expires.isoformat().startswith("2030-01-01T23:59:59")
