"""The review's attacks, through the routes a researcher has (the CLI, and HTTP): every one
is refused before any budget is spent, on the record, and leaves the budget, the log and
the files as they were; a failure after the debit is one fixed internal error whatever the
data, its cause in the operator's incident log only."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from safesetting.cli import cli
from safesetting.engine.planes.duckdb import DuckDBPlane
from tests.functional.admin_helpers import FUTURE, entries, run, run_json
from tests.property.test_neighbours import FLAWED

SAFE = "SELECT region, COUNT(*) AS n FROM census WHERE academic_year = 2023 GROUP BY region"


@pytest.fixture
def home(tmp_path, npd_small) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(npd_small, home / "npd.duckdb")
    run(CliRunner(), home, "init")
    return home


@pytest.fixture
def token(runner, home) -> str:
    body = run_json(
        runner, home, "admin", "researcher", "add", "ada", "--org", "UCL",
        "--role", "researcher", "--accredited-until", FUTURE,
    )  # fmt: skip
    run(
        runner, home, "admin", "project", "add", "gaps", "--title", "Attainment gaps",
        "--org-type", "academic", "--purpose", "educational_research",
        "--tables", "census,ks2,ks4,pupils", "--special",
        "census.sen_provision,census.sen_primary_need", "--budget-epsilon", "2",
        "--expires", FUTURE, "--member", "ada",
    )  # fmt: skip
    return body["token"]


def ask(runner, home, token, sql, *args):
    result = runner.invoke(
        cli,
        ["--home", str(home), "query", sql, "--project", "gaps", "--json", *args],
        env={"SAFESETTING_TOKEN": token},
        catch_exceptions=False,
    )
    assert "Traceback" not in result.output
    body = json.loads(result.stdout) if result.stdout.strip() else None
    return result, body


def spent(runner, home, token) -> float:
    body = run_json(runner, home, "budget", "--project", "gaps", env={"SAFESETTING_TOKEN": token})
    return body["epsilon_spent"]


@pytest.mark.parametrize("sql", FLAWED.values(), ids=FLAWED.keys())
def test_each_flaw_is_refused_on_the_record_and_spends_nothing(runner, home, token, sql):
    data = (home / "npd.duckdb").resolve().stat()
    before = len(entries(home))
    result, body = ask(runner, home, token, sql, "--epsilon", "0.1")
    assert result.exit_code == 3, result.stderr
    assert body["status"] == "denied"
    assert spent(runner, home, token) == 0
    new = entries(home)[before:]
    assert [e.action for e in new] == ["query.denied"]
    assert "normalised" not in new[0].request
    after = (home / "npd.duckdb").resolve().stat()
    assert (after.st_size, after.st_mtime_ns) == (data.st_size, data.st_mtime_ns)
    assert not (home / "incidents.log").exists()


def test_an_epsilon_too_small_to_share_is_unusable_input_before_any_charge(runner, home, token):
    sql = "SELECT AVG(read_score) FROM ks2"  # two measurements: one micro-epsilon each at least
    for extra in ([], ["--dry-run"]):
        before = len(entries(home))
        result, _ = ask(runner, home, token, sql, "--epsilon", "0.000001", *extra)
        assert result.exit_code == 2
        assert "too small" in result.stderr
        new = entries(home)[before:]
        assert [(e.action, e.reasons) for e in new] == [("query.invalid", ("epsilon_too_small",))]
    assert spent(runner, home, token) == 0
    result, body = ask(runner, home, token, sql, "--epsilon", "0.000002")
    assert result.exit_code == 0, result.stderr
    assert body["status"] == "released"


@pytest.mark.parametrize("position", ["1.5", "1e0"])
def test_a_fractional_group_position_is_audited_as_invalid(runner, home, token, position):
    before = len(entries(home))
    result, _ = ask(runner, home, token, f"SELECT COUNT(*) FROM census GROUP BY {position}")
    assert result.exit_code == 2
    assert "plain digits" in result.stderr
    assert [e.action for e in entries(home)[before:]] == ["query.invalid"]


@pytest.mark.parametrize(
    "literal", ["A123456789012", "SW1A 1AA", "sw1a 1aa"], ids=["upn", "postcode", "lower"]
)
def test_an_identifier_shaped_literal_is_denied_on_the_record_and_never_logged(
    runner, home, token, literal
):
    before = len(entries(home))
    sql = f"SELECT COUNT(*) FROM census WHERE census.region = '{literal}'"
    result, body = ask(runner, home, token, sql)
    assert result.exit_code == 3
    assert "direct_identifier" in {r["code"] for r in body["reasons"]}
    assert literal not in result.output
    new = entries(home)[before:]
    assert [e.action for e in new] == ["query.denied"]
    log_text = json.dumps([e.request for e in new])
    assert literal not in log_text
    assert literal.upper() not in log_text


def test_quasi_identifiers_only_on_their_declared_values(runner, home, token):
    con = duckdb.connect(str(home / "npd.duckdb"), read_only=True)
    urn = con.execute("SELECT min(urn) FROM schools").fetchone()[0]
    con.close()
    result, body = ask(runner, home, token, f"SELECT COUNT(*) FROM census WHERE urn < {urn + 50}")
    assert result.exit_code == 3
    assert [r["code"] for r in body["reasons"]] == ["quasi_identifier"]
    result, body = ask(runner, home, token, f"SELECT COUNT(*) FROM census WHERE urn = {urn}")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    "failure",
    [
        duckdb.ConversionException("Could not convert string 'ASD' to INT32"),
        duckdb.OutOfMemoryException("failed to allocate"),
        duckdb.InterruptException("INTERRUPT"),
        RuntimeError("pupil A123456789012 has sen_primary_need ASD"),
    ],
    ids=["conversion", "memory", "timeout", "other"],
)
@pytest.mark.parametrize("stage", ["run", "noise"])
def test_a_failure_after_the_debit_is_one_fixed_error_and_an_incident(
    runner, home, token, monkeypatch, failure, stage
):
    """Whatever failed, and wherever (running on the data plane or adding the noise), the caller
    gets the same error: exit 1, an incident id, nothing from the data; the cause goes to
    HOME/incidents.log; the debit stays and the log shows query.failed."""

    def explode(*_args, **_kwargs):
        raise failure

    if stage == "run":
        monkeypatch.setattr(DuckDBPlane, "run", explode)
    else:
        monkeypatch.setattr("safesetting.engine.session.release", explode)
    result, body = ask(runner, home, token, SAFE, "--epsilon", "0.1")
    assert result.exit_code == 1
    message = body["error"]["message"]
    incident = body["incident"]
    assert message == (
        f"internal error (incident {incident}): the query could not be answered; "
        "the epsilon it was charged stays spent"
    )
    assert result.stderr.strip().splitlines() == [f"Error: {message}"]
    for secret in ("ASD", "A123456789012", "INT32", "allocate", "INTERRUPT"):
        assert secret not in result.output
    log = (home / "incidents.log").read_text()
    assert incident in log
    assert oct((home / "incidents.log").stat().st_mode & 0o777) == "0o600"
    assert [e.action for e in entries(home)[-2:]] == ["query.accepted", "query.failed"]
    assert entries(home)[-1].reasons == ("internal",)
    assert spent(runner, home, token) == 0.1


def test_a_data_file_without_the_declared_constraints_is_not_served(runner, tmp_path, npd_small):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(npd_small, home / "npd.duckdb")
    run(runner, home, "init")
    con = duckdb.connect(str(home / "npd.duckdb"))
    con.execute("CREATE TABLE plain AS SELECT * FROM exclusions")
    con.execute("DROP TABLE exclusions")
    con.execute("ALTER TABLE plain RENAME TO exclusions")
    con.close()
    body = run_json(
        runner, home, "admin", "researcher", "add", "ada", "--org", "UCL",
        "--role", "researcher", "--accredited-until", FUTURE,
    )  # fmt: skip
    run(runner, home, "admin", "project", "add", "gaps", "--title", "T", "--org-type",
        "academic", "--purpose", "educational_research", "--tables", "census,exclusions",
        "--budget-epsilon", "2", "--expires", FUTURE, "--member", "ada")  # fmt: skip
    result, _ = ask(runner, home, body["token"], "SELECT COUNT(*) FROM exclusions")
    assert result.exit_code == 2
    assert "first exclusions: PRIMARY KEY (pupil_id, academic_year, exclusion_seq)" in (
        result.stderr
    )
    assert "generate --force" in result.stderr


@pytest.mark.parametrize("epsilon", ["abc", "0", "-1", "0.0000001"])
def test_an_unusable_epsilon_is_on_the_record_too(runner, home, token, epsilon):
    before = len(entries(home))
    result, _ = ask(runner, home, token, SAFE, "--epsilon", epsilon)
    assert result.exit_code == 2
    new = entries(home)[before:]
    assert [(e.action, e.reasons) for e in new] == [("query.invalid", ("epsilon_invalid",))]
    assert spent(runner, home, token) == 0


def test_a_join_one_pupil_could_make_wide_is_refused_before_it_runs(runner, home, token):
    """Ten copies of census joined by pupil_id alone would give one pupil 20^10 rows: how
    long the query ran (or whether it timed out) would depend on that pupil's record."""
    copies = " ".join(f"JOIN census c{i} ON c{i}.pupil_id = c1.pupil_id" for i in range(2, 6))
    result, body = ask(runner, home, token, f"SELECT COUNT(*) FROM census c1 {copies}")
    assert result.exit_code == 3
    assert [r["code"] for r in body["reasons"]] == ["join_too_wide"]
    pinned = " AND ".join(f"c{i}.academic_year = {2018 + i}" for i in range(1, 6))
    result, body = ask(runner, home, token, f"SELECT COUNT(*) FROM census c1 {copies} "
                       f"WHERE {pinned}", "--epsilon", "0.1")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert body["contribution_bound"] == 1


def test_a_plan_the_log_refuses_is_denied_on_the_record_not_lost(runner, home, token, monkeypatch):
    """Defence in depth: were a plan's text ever to hold something the audit log refuses
    (the parser refuses such values first), the debit rolls back and the attempt is still
    recorded, as a denial without the plan."""
    from safesetting.engine.plan import QueryPlan

    real = QueryPlan.normalised
    monkeypatch.setattr(QueryPlan, "normalised", lambda self: real(self) + " A123456789012")
    before = len(entries(home))
    result, body = ask(runner, home, token, SAFE, "--epsilon", "0.1")
    assert result.exit_code == 3
    assert [r["code"] for r in body["reasons"]] == ["direct_identifier"]
    new = entries(home)[before:]
    assert [e.action for e in new] == ["query.denied"]
    assert spent(runner, home, token) == 0


def test_a_snapshot_that_cannot_be_opened_stops_the_query_before_any_charge(
    runner, home, token, monkeypatch
):
    """The data plane is opened (the snapshot published) before the debit: if the data
    cannot be read there, the query stops with a state error and nothing is charged."""
    from safesetting.engine.snapshot import DataUnavailableError

    def unreadable(*_args, **_kwargs):
        raise DataUnavailableError("the engine could not open the data (IOException)")

    monkeypatch.setattr(DuckDBPlane, "__init__", unreadable)
    before = len(entries(home))
    result, _ = ask(runner, home, token, SAFE.replace("2023", "2022"), "--epsilon", "0.1")
    assert result.exit_code == 2
    assert "could not open the data (IOException)" in result.stderr
    assert spent(runner, home, token) == 0
    assert "query.accepted" not in [e.action for e in entries(home)[before:]]
