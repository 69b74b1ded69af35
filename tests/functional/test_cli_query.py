"""`safesetting query` as a researcher uses it: released, cached, denied, dry run, errors.

Every path is checked for what it leaves behind: the budget, the audit log, and that no
identifier from the data appears in any output.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

import audit
from safesetting.cli import cli
from tests.functional.admin_helpers import FUTURE, engine, entries, run, run_json

FSM_GAP = (
    "SELECT region, ever_fsm_6, COUNT(*) AS pupils, AVG(CAST(rwm_expected AS INTEGER)) AS rwm"
    " FROM census JOIN ks2 USING (pupil_id, academic_year)"
    " WHERE academic_year = 2023 GROUP BY region, ever_fsm_6"
)


@pytest.fixture
def home(tmp_path, npd_small) -> Path:
    """A fresh home on the shared synthetic NPD (linked, read-only), with ada on `gaps`."""
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
        "--tables", "census,ks2,ks4,pupils", "--budget-epsilon", "2", "--expires", FUTURE,
        "--member", "ada",
    )  # fmt: skip
    return body["token"]


def query(runner, home, token, sql, *args, code=0):
    result = runner.invoke(
        cli,
        ["--home", str(home), "query", sql, "--project", "gaps", "--json", *args],
        env={"SAFESETTING_TOKEN": token} if token else {"SAFESETTING_TOKEN": ""},
        catch_exceptions=False,
    )
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    return json.loads(result.stdout) if result.stdout.strip() else None


def spent(runner, home, token) -> float:
    body = run_json(runner, home, "budget", "--project", "gaps", env={"SAFESETTING_TOKEN": token})
    return body["epsilon_spent"]


def test_released_answer_follows_the_json_contract(runner, home, token):
    body = query(runner, home, token, FSM_GAP, "--epsilon", "0.5")
    assert set(body) >= {
        "status", "query_id", "reasons", "columns", "rows", "error",
        "epsilon_spent", "budget_remaining", "audit_seq",
    }  # fmt: skip
    assert body["status"] == "released"
    assert body["columns"] == ["region", "ever_fsm_6", "pupils", "rwm"]
    assert len(body["rows"]) == 18  # 9 regions x 2, every group of the public domain
    assert all(len(r) == 4 for r in body["rows"])
    assert all(e[0] is None and e[1] is None and e[2] > 0 for e in body["error"])
    assert body["epsilon_spent"] == 0.5
    assert body["budget_remaining"] == 1.5
    actions = [e.action for e in entries(home)]
    assert actions[-2:] == ["query.accepted", "query.released"]
    assert body["audit_seq"] == entries(home)[-1].seq
    accepted = entries(home)[-2]
    assert accepted.epsilon_micro == 500_000
    assert accepted.request["query_id"] == body["query_id"]


def test_the_same_question_again_is_answered_from_the_cache_at_no_cost(runner, home, token):
    first = query(runner, home, token, FSM_GAP, "--epsilon", "0.5")
    # A different spelling of the same question shares the normalised plan.
    again = query(
        runner, home, token, FSM_GAP.replace("AS pupils", "AS pupils ").lower(), "--epsilon", "0.5"
    )
    assert again["status"] == "cached"
    assert again["epsilon_spent"] == 0
    assert again["rows"] == first["rows"]
    assert spent(runner, home, token) == 0.5
    assert entries(home)[-1].action == "query.cached"


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT * FROM pupils", "select_star"),
        ("SELECT COUNT(*) FROM pupils WHERE surname = 'Smith'", "direct_identifier"),
        ("SELECT COUNT(*) FROM census WHERE nationality = 'POL'", "column_not_approved"),
        ("SELECT COUNT(*) FROM absence", "table_not_approved"),
        ("SELECT COUNT(*) FROM census; DROP TABLE census", "multiple_statements"),
    ],
)
def test_refusals_exit_3_spend_nothing_and_are_audited(runner, home, token, sql, code):
    body = query(runner, home, token, sql, code=3)
    assert body["status"] == "denied"
    assert code in [r["code"] for r in body["reasons"]]
    assert all(r["message"] for r in body["reasons"])
    assert spent(runner, home, token) == 0
    last = entries(home)[-1]
    assert last.action == "query.denied"
    assert code in last.reasons


def test_syntax_errors_exit_2_and_spend_nothing(runner, home, token):
    result = runner.invoke(
        cli, ["--home", str(home), "query", "SELEC COUNT(* FROM", "--project", "gaps"],
        env={"SAFESETTING_TOKEN": token},
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: could not parse the SQL")
    assert spent(runner, home, token) == 0
    assert entries(home)[-1].action == "query.invalid"


@pytest.mark.parametrize("epsilon", ["abc", "0", "-1", "0.0000001"])
def test_bad_epsilon_is_unusable_input(runner, home, token, epsilon):
    result = runner.invoke(
        cli, ["--home", str(home), "query", FSM_GAP, "--project", "gaps", "--epsilon", epsilon],
        env={"SAFESETTING_TOKEN": token},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert spent(runner, home, token) == 0


def test_dry_run_reports_cost_and_error_and_spends_nothing(runner, home, token):
    body = query(runner, home, token, FSM_GAP, "--epsilon", "1", "--dry-run")
    assert body["status"] == "dry_run"
    assert body["rows"] == []
    labels = [e["label"] for e in body["expected"]]
    assert labels == ["pupils", "rwm"]
    assert body["expected"][0]["half_width"] > 0
    assert spent(runner, home, token) == 0


def test_budget_runs_out_then_queries_are_refused(runner, home, token):
    for year in (2020, 2021, 2022, 2023):
        sql = f"SELECT COUNT(*) FROM ks2 WHERE academic_year = {year}"
        assert query(runner, home, token, sql, "--epsilon", "0.5")["status"] == "released"
    body = query(runner, home, token, "SELECT COUNT(*) FROM ks2", "--epsilon", "0.5", code=3)
    assert [r["code"] for r in body["reasons"]] == ["budget_exhausted"]
    assert spent(runner, home, token) == 2
    assert body["budget_remaining"] == 0


def test_no_token_or_a_bad_token_is_refused_and_audited(runner, home, token):
    for bad in (None, "sst_not-a-real-token"):
        result = runner.invoke(
            cli, ["--home", str(home), "query", FSM_GAP, "--project", "gaps"],
            env={"SAFESETTING_TOKEN": bad or ""},
        )  # fmt: skip
        assert result.exit_code == 3
        assert result.stderr.startswith("Error:")
        assert entries(home)[-1].action == "auth.failed"
    assert spent(runner, home, token) == 0


def test_an_unknown_project_looks_like_someone_elses(runner, home, token):
    result = runner.invoke(
        cli, ["--home", str(home), "query", FSM_GAP, "--project", "nosuch", "--json"],
        env={"SAFESETTING_TOKEN": token},
    )  # fmt: skip
    assert result.exit_code == 3
    assert [r["code"] for r in json.loads(result.stdout)["reasons"]] == ["not_a_member"]


def test_an_opt_out_takes_effect_on_the_next_query(runner, home, token, npd_small):
    sql = "SELECT COUNT(*) AS n FROM census WHERE academic_year = 2024"
    assert query(runner, home, token, sql, "--epsilon", "0.2")["status"] == "released"
    con = duckdb.connect(str(npd_small), read_only=True)
    upn = con.execute("SELECT upn FROM pupils JOIN census USING (pupil_id) LIMIT 1").fetchone()[0]
    con.close()
    run(runner, home, "admin", "optout", "add", upn)
    # The opt-out register is part of the cache key: the answer is computed afresh.
    assert query(runner, home, token, sql, "--epsilon", "0.2")["status"] == "released"
    assert "optout.added" in [e.action for e in entries(home)]


def test_no_identifier_from_the_data_appears_in_any_output(runner, home, token, npd_small):
    con = duckdb.connect(str(npd_small), read_only=True)
    upns, names = zip(
        *con.execute("SELECT upn, surname FROM pupils LIMIT 200").fetchall(), strict=True
    )
    con.close()
    outputs = []
    for sql in (
        FSM_GAP,
        "SELECT sex, COUNT(*) FROM pupils GROUP BY sex",
        f"SELECT COUNT(*) FROM pupils WHERE upn = '{upns[0]}'",
        "SELECT upn, COUNT(*) FROM pupils GROUP BY upn",
    ):
        result = runner.invoke(
            cli, ["--home", str(home), "query", sql, "--project", "gaps", "--json"],
            env={"SAFESETTING_TOKEN": token},
        )  # fmt: skip
        outputs.append(result.output)
    outputs.append(run(runner, home, "audit", "log", "--json").stdout)
    text = "\n".join(outputs)
    assert not any(u in text for u in upns[1:])
    # The researcher's own literal is not echoed back, and never reaches the log.
    assert upns[0] not in run(runner, home, "audit", "log", "--json").stdout
    assert not any(f'"{n}"' in text for n in names)


def test_the_log_verifies_after_a_session_of_queries(runner, home, token):
    query(runner, home, token, FSM_GAP, "--epsilon", "0.5")
    query(runner, home, token, FSM_GAP, "--epsilon", "0.5")
    query(runner, home, token, "SELECT * FROM pupils", code=3)
    run(runner, home, "audit", "verify")
    n = len(entries(home))
    with engine(home).connect() as conn:
        assert audit.tree_head(conn).size == n


def test_human_output_shows_values_with_error_bars(runner, home, token):
    result = runner.invoke(
        cli, ["--home", str(home), "query", FSM_GAP, "--project", "gaps", "--epsilon", "0.5"],
        env={"SAFESETTING_TOKEN": token, "COLUMNS": "160"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "±" in result.stdout
    assert "ε spent: 0.5" in result.stdout


# -- input and output formats ------------------------------------------------------------------
def invoke(runner, home, token, *args, stdin=None):
    return runner.invoke(
        cli, ["--home", str(home), "query", *args, "--project", "gaps"],
        env={"SAFESETTING_TOKEN": token}, input=stdin, catch_exceptions=False,
    )  # fmt: skip


def test_sql_from_standard_input_or_a_file_is_the_same_question(runner, home, token, tmp_path):
    first = invoke(runner, home, token, "-", "--epsilon", "0.5", "--json", stdin=FSM_GAP + "\n")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["status"] == "released"
    sql = tmp_path / "gap.sql"
    sql.write_text(FSM_GAP + ";\n")
    again = invoke(runner, home, token, "--file", str(sql), "--epsilon", "0.5", "--json")
    assert json.loads(again.stdout)["status"] == "cached"  # the same plan: no second charge
    assert spent(runner, home, token) == 0.5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no SQL: give it as an argument, `-` for standard input, or --file FILE"),
        (("SELECT COUNT(*) FROM census", "--file", "{sql}"), "not both"),
        (("SELECT COUNT(*) FROM census", "--json", "--format", "csv"), "two formats"),
        (("SELECT COUNT(*) FROM census", "--out", "{missing}/x.csv", "--format", "csv"),
         "cannot write"),
    ],
)  # fmt: skip
def test_input_and_output_mistakes_are_one_line_and_exit_2(
    runner, home, token, tmp_path, args, message
):
    sql = tmp_path / "q.sql"
    sql.write_text("SELECT COUNT(*) FROM census")
    before = spent(runner, home, token)
    filled = [a.format(sql=sql, missing=tmp_path / "no-such-folder") for a in args]
    result = invoke(runner, home, token, *filled)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    if "--out" not in args:
        assert spent(runner, home, token) == before  # nothing was asked


def test_csv_puts_each_aggregates_error_beside_it(runner, home, token, tmp_path):
    out = tmp_path / "gap.csv"
    result = invoke(runner, home, token, FSM_GAP, "--epsilon", "0.5", "--format", "csv",
                    "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["region", "ever_fsm_6", "pupils", "pupils_error", "rwm", "rwm_error"]
    assert len(rows) == 19  # every group of the public domain
    body = json.loads(invoke(runner, home, token, FSM_GAP, "--epsilon", "0.5", "--json").stdout)
    assert body["column_kinds"] == ["key", "key", "aggregate", "aggregate"]
    for line, row, errors in zip(rows[1:], body["rows"], body["error"], strict=True):
        assert line[0] == row[0]
        assert float(line[2]) == row[2]
        assert float(line[3]) == errors[2]
    tsv = invoke(runner, home, token, FSM_GAP, "--epsilon", "0.5", "--format", "tsv")
    assert tsv.stdout.splitlines()[0].split("\t") == rows[0]


def test_the_table_rounds_to_the_error_and_never_uses_scientific_notation(runner, home, token):
    result = invoke(runner, home, token, "SELECT SUM(nc_year) AS years FROM census",
                    "--epsilon", "0.5")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "e+" not in result.stdout
    cell = next(line for line in result.stdout.splitlines() if "±" in line)
    value, error = (part.strip(" │|") for part in cell.split("±"))
    assert "," in value  # thousands separated
    assert len(error.replace(",", "").strip("0").replace(".", "")) <= 2  # two figures


def test_a_refusal_in_csv_writes_no_file_and_exits_3(runner, home, token, tmp_path):
    out = tmp_path / "no.csv"
    result = invoke(runner, home, token, "SELECT upn, COUNT(*) FROM pupils GROUP BY upn",
                    "--format", "csv", "--out", str(out))  # fmt: skip
    assert result.exit_code == 3
    assert "direct_identifier" in result.stderr
    assert not out.exists()


# -- history -------------------------------------------------------------------------------------
def test_projects_and_queries_list_and_show(runner, home, token):
    released = query(runner, home, token, FSM_GAP, "--epsilon", "0.5")
    query(runner, home, token, "SELECT upn, COUNT(*) FROM pupils GROUP BY upn", code=3)
    env = {"SAFESETTING_TOKEN": token}
    mine = run_json(runner, home, "projects", env=env)["projects"]
    assert [(p["project"], p["epsilon_spent"], p["budget_remaining"]) for p in mine] == [
        ("gaps", 0.5, 1.5)
    ]
    listed = run_json(runner, home, "queries", "list", env=env)["queries"]
    assert [(q["query_id"], q["status"], q["epsilon"]) for q in listed] == [
        (released["query_id"], "released", 0.5)  # a refusal is never a query: not listed
    ]
    assert listed[0]["columns"] == ["region", "ever_fsm_6", "pupils", "rwm"]
    again = run_json(runner, home, "queries", "show", released["query_id"], env=env)
    assert again["rows"] == released["rows"]
    assert spent(runner, home, token) == 0.5  # showing it again is free
    text = run(runner, home, "queries", "list", env=env).output
    assert released["query_id"] in text
    assert "FROM" not in text  # the SQL is never kept
    shown_again = run(runner, home, "queries", "show", released["query_id"], env=env).output
    assert "±" in shown_again
