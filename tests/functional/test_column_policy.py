"""One source of truth for column safety: the parser reports how a query uses each column,
and ``decide()`` classifies it with the policy's *effective* classes. So a ``policy.toml``
column override changes the answer to the same query through the real service path, for
every rule that depends on a column's class (identifier, quasi-identifier, public values)
alike, and no override makes a direct identifier usable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from safesetting.cli import cli
from tests.functional.admin_helpers import FUTURE, entries, run, run_json

# census.nc_year and ks4.attainment8 are general in the schema, census.region too;
# pupils.sex and census.urn are quasi-identifiers.
CASES = {
    "a general column made quasi: a range on it is refused": (
        {"census.nc_year": "quasi_identifier"},
        "SELECT COUNT(*) AS n FROM census WHERE academic_year = 2023 AND nc_year < 6",
        "dry_run",
        ["quasi_identifier"],
    ),
    "a general column made quasi: grouped by on its public values, still answered": (
        {"census.nc_year": "quasi_identifier"},
        "SELECT nc_year, COUNT(*) AS n FROM census WHERE academic_year = 2023 GROUP BY nc_year",
        "dry_run",
        "dry_run",
    ),
    "a column without a public list made quasi: even = is not on a public value": (
        {"ks4.attainment8": "quasi_identifier"},
        "SELECT COUNT(*) AS n FROM ks4 WHERE attainment8 = 46",
        "dry_run",
        ["quasi_identifier"],
    ),
    "a column without a public list made quasi: not in an aggregate either": (
        {"ks4.attainment8": "quasi_identifier"},
        "SELECT AVG(attainment8) AS a FROM ks4",
        "dry_run",
        ["quasi_identifier"],
    ),
    "a general column made a direct identifier: not a group key": (
        {"census.region": "direct_identifier"},
        "SELECT region, COUNT(*) AS n FROM census WHERE academic_year = 2023 GROUP BY region",
        "dry_run",
        ["direct_identifier"],
    ),
    "a quasi-identifier made a direct identifier: not a join key": (
        {"census.urn": "direct_identifier"},
        "SELECT schools.phase, COUNT(*) AS n FROM census JOIN schools ON schools.urn = census.urn"
        " WHERE census.academic_year = 2023 GROUP BY schools.phase",
        "dry_run",
        ["direct_identifier"],
    ),
    "a quasi-identifier made general: a range on it is answered": (
        {"pupils.sex": "general"},
        "SELECT COUNT(*) AS n FROM pupils WHERE sex > 'F'",
        ["quasi_identifier"],
        "dry_run",
    ),
    "a quasi-identifier made general: a range through the public table it joins is answered": (
        {"pupils.la_code": "general"},
        "SELECT COUNT(*) AS n FROM pupils JOIN local_authorities l USING (la_code)"
        " WHERE l.la_code > '301'",
        ["quasi_identifier"],  # l.la_code equals pupils.la_code in every joined row
        "dry_run",
    ),
}


@pytest.fixture
def home(tmp_path, npd_small) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(npd_small, home / "npd.duckdb")
    run(CliRunner(), home, "init")
    return home


@pytest.fixture
def token(home) -> str:
    runner = CliRunner()
    body = run_json(
        runner, home, "admin", "researcher", "add", "ada", "--org", "UCL",
        "--role", "researcher", "--accredited-until", FUTURE,
    )  # fmt: skip
    run(
        runner, home, "admin", "project", "add", "gaps", "--title", "Attainment gaps",
        "--org-type", "academic", "--purpose", "educational_research",
        "--tables", "census,ks2,ks4,pupils", "--budget-epsilon", "2",
        "--expires", FUTURE, "--member", "ada",
    )  # fmt: skip
    return body["token"]


def set_columns(home: Path, classes: dict[str, str]) -> None:
    """Add ``[columns]`` overrides to the home's policy.toml (the section ends the file)."""
    policy = home / "policy.toml"
    text = policy.read_text()
    assert text.rstrip().splitlines()[-2:][0] == "[columns]"
    policy.write_text(text + "".join(f'"{c}" = "{cls}"\n' for c, cls in classes.items()))


def outcome(home: Path, token: str, sql: str) -> str | list[str]:
    """``dry_run`` (it would be answered), or the refusal's reason codes."""
    result = CliRunner().invoke(
        cli,
        ["--home", str(home), "query", sql, "--project", "gaps", "--json", "--dry-run"],
        env={"SAFESETTING_TOKEN": token},
        catch_exceptions=False,
    )
    body = json.loads(result.stdout)
    if body["status"] == "dry_run":
        assert result.exit_code == 0, result.stderr
        return "dry_run"
    assert (result.exit_code, body["status"]) == (3, "denied"), result.stderr
    assert entries(home)[-1].action == "query.denied"
    return sorted({r["code"] for r in body["reasons"]})


@pytest.mark.parametrize(("classes", "sql", "before", "after"), CASES.values(), ids=CASES.keys())
def test_a_column_override_changes_the_same_query_through_the_service(
    home, token, classes, sql, before, after
):
    assert outcome(home, token, sql) == before
    set_columns(home, classes)
    assert outcome(home, token, sql) == after
    assert "policy.changed" in [e.action for e in entries(home)]


def test_no_override_makes_a_direct_identifier_usable(home, token):
    """The policy file may not relax a direct identifier (it does not load), and a policy
    that lists one with its own class changes nothing: it is still refused wherever the
    query uses it."""
    sql = "SELECT COUNT(*) AS n FROM pupils WHERE upn IS NULL"
    assert outcome(home, token, sql) == ["direct_identifier"]
    set_columns(home, {"pupils.upn": "general"})
    result = CliRunner().invoke(
        cli,
        ["--home", str(home), "query", sql, "--project", "gaps", "--json"],
        env={"SAFESETTING_TOKEN": token},
    )
    assert result.exit_code != 0
    assert "pupils.upn is a direct identifier" in result.output + result.stderr
    policy = home / "policy.toml"
    policy.write_text(policy.read_text().replace('"general"', '"direct_identifier"'))
    assert outcome(home, token, sql) == ["direct_identifier"]
