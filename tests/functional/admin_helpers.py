"""Driving `safesetting admin …` and `budget` as a user would, and reading what they left."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

import audit
from safesetting.cli import cli
from safesetting.db import engine_for
from safesetting.home import Home
from safesetting.store import tables as t

FUTURE = "2031-01-31"


def run(runner, home: Path, *args: str, code: int = 0, env: dict | None = None):
    result = runner.invoke(cli, ["--home", str(home), *args], catch_exceptions=False, env=env)
    assert result.exit_code == code, (result.stdout, result.stderr)
    if code:
        # Our errors start "Error:"; click's own usage errors print "Usage: …" first.
        assert result.stderr.startswith(("Error: ", "Usage: ")), result.stderr
        assert "Error: " in result.stderr
        assert "Traceback" not in result.output
    return result


def run_json(runner, home: Path, *args: str, code: int = 0, env: dict | None = None) -> dict:
    return json.loads(run(runner, home, *args, "--json", code=code, env=env).stdout)


def add_researcher(runner, home: Path, rid: str = "ada", role: str = "researcher") -> str:
    body = run_json(
        runner, home, "admin", "researcher", "add", rid, "--org", "UCL", "--role", role,
        "--accredited-until", FUTURE,
    )  # fmt: skip
    assert body["id"] == rid
    return body["token"]


def add_project(runner, home: Path, pid: str = "gaps", *extra: str, code: int = 0):
    args = [
        "admin", "project", "add", pid, "--title", "Attainment gaps", "--org-type", "academic",
        "--purpose", "educational_research", "--tables", "census,ks2", "--budget-epsilon", "1",
        "--expires", FUTURE, "--member", "ada", *extra,
    ]  # fmt: skip
    return run(runner, home, *args, code=code)


def engine(home: Path) -> sa.Engine:
    return engine_for(Home.resolve(home))


def entries(home: Path) -> list[audit.AuditEntry]:
    with engine(home).connect() as conn:
        return audit.read_entries(conn)


def actions(home: Path) -> list[str]:
    return [e.action for e in entries(home)]


def snapshot(home: Path) -> dict[str, int]:
    """Row counts of every registry table and the audit log: 'the registry unchanged'."""
    counts = {}
    with engine(home).connect() as conn:
        for table in (*t.metadata.sorted_tables, audit.store.entries):
            if sa.inspect(conn).has_table(table.name):
                counts[table.name] = conn.execute(
                    sa.select(sa.func.count()).select_from(table)
                ).scalar_one()
    return counts
