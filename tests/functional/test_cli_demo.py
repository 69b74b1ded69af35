"""`safesetting demo`, `transparency report` and `admin subject-access` as a person runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest

import audit
from safesetting.cli import cli
from safesetting.db import engine_for
from safesetting.home import Home

PUPILS = "20000"


def invoke(runner, *args, code=0):
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    """The full demo, run once through the CLI from an empty working folder."""
    from click.testing import CliRunner

    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        result = invoke(CliRunner(), "demo", "--pupils", PUPILS, "--seed", "3")
    return cwd, result


@pytest.mark.slow
def test_demo_runs_end_to_end_and_prints_where_the_report_is(demo_out):
    cwd, result = demo_out
    out = cwd / "demo-out"
    assert f"Report: {out / 'report.html'}" in result.stdout.replace("\n", "")
    assert (out / "report.html").stat().st_size > 20_000
    assert (out / "transparency.html").exists()
    assert "20,000 synthetic pupils · 14 steps" in result.stdout
    assert "NO" not in re.findall(r"\b(?:yes|NO)\b", result.stdout)
    assert not (cwd / "safesetting-home").exists()  # never the default home
    # Every step is told, with its outcome, in the terminal.
    for word in ("refused", "released", "cached", "exhausted", "recorded", "answered",
                 "verified", "caught"):  # fmt: skip
        assert f"● {word}" in result.stdout
    assert not re.search(r"\b[A-Z]\d{11}[0-9A-Z]\b", result.stdout)  # no UPN, even masked


@pytest.mark.slow
def test_demo_again_reuses_the_data_and_starts_a_fresh_log(demo_out, runner, monkeypatch):
    cwd, first = demo_out
    monkeypatch.chdir(cwd)
    home = Home(cwd / "demo-out" / "home")
    with engine_for(home).connect() as conn:
        size_before = audit.tree_head(conn).size
    again = invoke(runner, "demo", "--pupils", PUPILS, "--seed", "3")
    assert "Reusing the synthetic NPD of 20,000 pupils" in again.stdout
    with engine_for(home).connect() as conn:
        assert audit.tree_head(conn).size == size_before  # a fresh log, the same story
    del first


@pytest.mark.slow
def test_transparency_report_command(demo_out, runner, tmp_path):
    cwd, _ = demo_out
    home = str(cwd / "demo-out" / "home")
    target = tmp_path / "public.html"
    result = invoke(runner, "--home", home, "transparency", "report", "--out", str(target))
    assert f"Wrote {target}" in result.stdout
    assert "<svg" in target.read_text()
    body = json.loads(invoke(runner, "--home", home, "transparency", "report", "--json").stdout)
    assert {p["id"] for p in body["projects"]} == {"fsm-gap", "exclusions"}
    assert body["dataset"]["epsilon_spent"] == 4.0
    missing = invoke(runner, "--home", home, "transparency", "report", code=2)
    assert "--out" in missing.stderr


@pytest.mark.slow
def test_subject_access_command(demo_out, runner):
    cwd, _ = demo_out
    home = cwd / "demo-out" / "home"
    con = duckdb.connect(str(home / "npd.duckdb"), read_only=True)
    try:
        upn = con.execute("SELECT upn FROM pupils ORDER BY pupil_id LIMIT 1").fetchall()[0][0]
    finally:
        con.close()
    body = json.loads(
        invoke(runner, "--home", str(home), "admin", "subject-access", upn, "--json").stdout
    )
    assert body["found"] is True
    assert body["released_queries"] == 7
    assert all(set(q) >= {"query_id", "included", "why"} for q in body["queries"])
    assert upn not in json.dumps(body)
    text = invoke(runner, "--home", str(home), "admin", "subject-access", upn).stdout
    assert "released queries could have included the record" in text
    unknown = invoke(runner, "--home", str(home), "admin", "subject-access", "Z999999999999")
    assert "No pupil with that UPN" in unknown.stdout
    bad = invoke(runner, "--home", str(home), "admin", "subject-access", "nope", code=2)
    assert bad.stderr.startswith("Error: a UPN must be 13 characters")


def test_readme_starts_with_the_demo_and_documents_transparency():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1]
    first_command = quick.split("```bash\n", 1)[1].split("\n", 1)[0]
    assert first_command == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && safesetting demo"
    )
    assert "## The demo" in readme
    assert "## Transparency" in readme
    assert "safesetting transparency report --out" in readme
    assert "safesetting admin subject-access" in readme
    assert "docs/demo-gap.png" in readme
    assert (Path(__file__).resolve().parents[2] / "docs" / "demo-gap.png").exists()
