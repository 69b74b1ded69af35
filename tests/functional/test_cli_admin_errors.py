"""Bad input: a one-line error naming the problem, exit 2 (3 for refusals), registry unchanged."""

from __future__ import annotations

import pytest

from policies.load import DEFAULT_POLICY_TOML
from tests.functional.admin_helpers import (
    FUTURE,
    add_project,
    add_researcher,
    run,
    snapshot,
)

PAST = "2020-01-01"


@pytest.fixture
def home(tmp_path, runner):
    home = tmp_path / "home"
    run(runner, home, "init")
    add_researcher(runner, home, "ada")
    add_researcher(runner, home, "aud", role="auditor")
    add_project(runner, home, "gaps")
    return home


def researcher_add(rid="zoe", org="UCL", until=FUTURE, *extra):
    return ["admin", "researcher", "add", rid, "--org", org, "--accredited-until", until, *extra]


def project_add(pid="p2", **changes):
    options = {
        "--title": "T", "--org-type": "academic", "--purpose": "educational_research",
        "--tables": "census", "--budget-epsilon": "1", "--expires": FUTURE, "--member": "ada",
    }  # fmt: skip
    options.update(changes)
    args = ["admin", "project", "add", pid]
    for key, value in options.items():
        if value is not None:
            args += [key, value]
    return args


CASES = [
    # researchers
    (researcher_add(until="2027-13-01"), "is not a real date"),
    (researcher_add(until="27-01-01"), "not a date in the form YYYY-MM-DD"),
    (researcher_add(until="20270101"), "not a date in the form YYYY-MM-DD"),
    (researcher_add(until=PAST), "is not after today"),
    (researcher_add(rid="\u0430da"), "researcher id '\\u0430da' must be"),  # Cyrillic а
    (researcher_add(rid="Ada"), "researcher id 'Ada' must be"),
    (researcher_add(rid="ada"), "researcher ada already exists"),
    (researcher_add(rid="_x"), "must be 1-64 lower-case"),
    (researcher_add(rid="a" * 65), "must be 1-64 lower-case"),
    (researcher_add(org="  "), "organisation must not be empty"),
    (researcher_add(org="UCL\x1b[31m"), "organisation contains control characters"),
    (researcher_add(org="x" * 201), "organisation is longer than 200"),
    (researcher_add("zoe", "UCL", FUTURE, "--role", "god"), "Invalid value for '--role'"),
    (researcher_add("zoe", "UCL", FUTURE, "--token-expires", PAST), "token-expires"),
    (researcher_add(org="UCL, WC1E 6BT"), "the audit log may not record this"),
    (["admin", "researcher", "show", "eve"], "no researcher eve"),
    (["admin", "researcher", "revoke", "eve"], "no researcher eve"),
    (["admin", "researcher", "renew", "eve", "--accredited-until", FUTURE], "no researcher eve"),
    (["admin", "researcher", "renew", "ada", "--accredited-until", PAST], "is not after today"),
    (
        [
            "admin",
            "researcher",
            "renew",
            "ada",
            "--accredited-until",
            FUTURE,
            "--token-expires",
            FUTURE,
        ],
        "--token-expires only applies with --new-token",
    ),  # fmt: skip
    # projects
    (project_add(pid="gaps"), "project gaps already exists"),
    (project_add(pid="P\u0440"), "project id"),
    (project_add(**{"--tables": "census,secrets"}), "unknown table 'secrets'"),
    (project_add(**{"--tables": ","}), "at least one table"),
    (project_add(**{"--special": "census.shoe_size"}), "unknown column 'census.shoe_size'"),
    (project_add(**{"--special": "ks4.maths_grade"}), "needs its table in --tables"),
    (project_add(**{"--budget-epsilon": "-1"}), "budget-epsilon must be greater than 0"),
    (project_add(**{"--budget-epsilon": "0"}), "budget-epsilon must be greater than 0"),
    (project_add(**{"--budget-epsilon": "abc"}), "is not a number"),
    (project_add(**{"--budget-epsilon": "NaN"}), "is not a number"),
    (project_add(**{"--budget-epsilon": "1e400"}), "absurdly large"),
    (project_add(**{"--budget-epsilon": "51"}), "more than the dataset-wide cap of 50"),
    (project_add(**{"--budget-epsilon": "0.0000001"}), "more precise than one micro-epsilon"),
    (project_add(**{"--expires": PAST}), "expires 2020-01-01 is not after today"),
    (project_add(**{"--expires": "2031-02-30"}), "is not a real date"),
    (project_add(**{"--member": "eve"}), "no researcher eve"),
    (project_add(**{"--member": "aud"}), "aud is an auditor, not a researcher"),
    (project_add(**{"--member": None}), "Missing option '--member'"),
    (project_add(**{"--org-type": "bank"}), "org-type 'bank' must be one of"),
    (project_add(**{"--purpose": "Bad Purpose"}), "purpose 'Bad Purpose' must be a snake_case"),
    (project_add(**{"--title": "Pupil A123456789012"}), "the audit log may not record this"),
    (["admin", "project", "show", "nope"], "no project nope"),
    (["admin", "project", "close", "nope"], "no project nope"),
    # opt-outs
    (["admin", "optout", "add"], "give at least one UPN"),
    (["admin", "optout", "add", "a123456789012"], "a UPN must be 13 characters"),
    (["admin", "optout", "add", "A12345678901"], "argument of length 12 refused"),
    (["admin", "optout", "add", "A12345678901\uff12"], "a UPN must be 13 characters"),
    # budget
    (["budget", "--project", "Gaps!", "--token", "x"], "project id 'Gaps!' must be"),
]


@pytest.mark.parametrize(("args", "message"), CASES)
def test_bad_input_exits_2_and_changes_nothing(runner, home, args, message):
    before = snapshot(home)
    result = run(runner, home, *args, code=2)
    assert message in result.stderr
    assert result.stderr.count("\n") <= 1 or "Usage:" in result.stderr
    assert snapshot(home) == before


def test_upn_is_not_echoed_in_errors(runner, home):
    result = run(runner, home, "admin", "optout", "add", "Z98765432101x", code=2)
    assert "98765" not in result.output


def test_closing_twice(runner, home):
    run(runner, home, "admin", "project", "close", "gaps")
    assert "already closed" in run(runner, home, "admin", "project", "close", "gaps", code=2).stderr


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("version = 1\n[[[", "not valid TOML"),
        (
            DEFAULT_POLICY_TOML.replace('"policing", ', ""),
            "purposes: refused must include policing",
        ),
        ("backdoor = true\n" + DEFAULT_POLICY_TOML, "backdoor: Extra inputs are not permitted"),
        (
            DEFAULT_POLICY_TOML.replace(
                '# "census.language_group" = "special_category"', '"pupils.upn" = "general"'
            ),
            "pupils.upn is a direct identifier",
        ),
    ],
)
def test_hostile_policy_stops_every_command(runner, home, policy, message):
    before = snapshot(home)
    (home / "policy.toml").write_text(policy)
    for args in (
        ["admin", "researcher", "list"],
        researcher_add(),
        ["budget", "--project", "gaps"],
    ):
        result = run(runner, home, *args, code=2)
        assert result.stderr.startswith("Error: policy: policy.toml: ")
        assert message in result.stderr
    assert snapshot(home) == before


def test_refusal_is_exit_3_and_only_the_refusal_is_recorded(runner, home):
    before = snapshot(home)
    run(runner, home, *project_add(**{"--purpose": "commercial_marketing"}), code=3)
    after = snapshot(home)
    assert after.pop("audit_entries") == before.pop("audit_entries") + 1
    assert after == before
