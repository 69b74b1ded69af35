"""A home comes into being only by ``init``, ``data generate`` or ``demo``; every other
command refuses a folder that is not a home, with one line that says what to do (exit 2),
and leaves the disk as it was."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from safesetting.cli import cli
from tests.functional.admin_helpers import FUTURE, actions, run, run_json

# Each command that needs a home, with arguments that would pass click's own checks: the
# refusal must come from the missing home, not from a usage error.
NEEDS_HOME: dict[str, list[str]] = {
    "admin optout add": ["A123456789012"],
    "admin optout list": [],
    "admin policy check": [],
    "admin policy show": [],
    "admin project add": [
        "p",
        "--title",
        "T",
        "--org-type",
        "academic",
        "--purpose",
        "educational_research",
        "--tables",
        "census",
        "--budget-epsilon",
        "1",
        "--expires",
        FUTURE,
        "--member",
        "ada",
    ],  # fmt: skip
    "admin project close": ["p"],
    "admin project list": [],
    "admin project show": ["p"],
    "admin researcher add": ["ada", "--org", "UCL", "--accredited-until", FUTURE],
    "admin researcher list": [],
    "admin researcher renew": ["ada", "--accredited-until", FUTURE],
    "admin researcher revoke": ["ada"],
    "admin researcher show": ["ada"],
    "admin subject-access": ["A123456789012"],
    "admin key rotate": [],
    "admin resume": [],
    "audit keys": [],
    "audit checkpoint": [],
    "audit consistency": ["1"],
    "audit export": [],
    "audit log": [],
    "audit prove": ["1"],
    "audit verify": [],
    "budget": ["--project", "p", "--token", "sst_x"],
    "projects": ["--token", "sst_x"],
    "queries list": ["--token", "sst_x"],
    "queries show": ["0123abcd", "--token", "sst_x"],
    "query": ["SELECT COUNT(*) FROM census", "--project", "p", "--token", "sst_x"],
    "serve": ["--port", "1"],
    "transparency report": [],
}
# The commands that create what they write, and the one that needs nothing.
CREATES = {"init", "data generate", "demo"}
NEEDS_NOTHING = {"data catalogue"}


def leaves(command: click.Command, path: tuple[str, ...] = ()) -> set[str]:
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        return {
            leaf
            for name in command.list_commands(ctx)
            for leaf in leaves(command.get_command(ctx, name), (*path, name))
        }
    return {" ".join(path)}


def test_every_command_is_classified():
    """A new command must say whether it needs a home (and is then tested below)."""
    assert leaves(cli) == set(NEEDS_HOME) | CREATES | NEEDS_NOTHING


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """An empty working folder, with no home and no server configured."""
    monkeypatch.chdir(tmp_path)
    for name in ("SAFESETTING_HOME", "SAFESETTING_URL", "SAFESETTING_DB_URL", "SAFESETTING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("command", sorted(NEEDS_HOME))
@pytest.mark.parametrize("where", ["default", "mistyped --home", "folder that is not a home"])
def test_a_command_outside_a_home_refuses_and_creates_nothing(runner, elsewhere, command, where):
    home_args: list[str] = []
    expected = elsewhere / "safesetting-home"
    if where == "mistyped --home":
        home_args = ["--home", "hmoe"]
        expected = elsewhere / "hmoe"
    elif where == "folder that is not a home":
        (elsewhere / "notes.txt").write_text("mine\n")
        home_args = ["--home", str(elsewhere)]
        expected = elsewhere
    before = tree(elsewhere)
    args = [*home_args, *command.split(), *NEEDS_HOME[command]]
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert message.startswith(f"Error: {expected} ")
    assert f"`safesetting --home {expected} init`" in message
    assert "SAFESETTING_URL" in message
    assert tree(elsewhere) == before  # no home, no key, no database, no policy


def test_audit_verify_and_export_no_longer_bless_an_empty_home(runner, elsewhere):
    for command in (["audit", "verify"], ["audit", "export"]):
        result = runner.invoke(cli, command, catch_exceptions=False)
        assert result.exit_code == 2
        assert "OK" not in result.stdout
    assert tree(elsewhere) == []


def test_init_creates_a_home_once_and_is_safe_to_repeat(runner, elsewhere):
    home = elsewhere / "safesetting-home"
    first = runner.invoke(cli, ["init", "--json"], catch_exceptions=False)
    assert first.exit_code == 0, first.stderr
    body = json.loads(first.stdout)
    assert body == {
        "home": str(home),
        "created": ["policy.toml", "checkpoint.key", "control.db"],
    }
    assert (home / "policy.toml").read_text().startswith("# Safe Setting policy")
    key = (home / "checkpoint.key").read_bytes()
    assert actions(home) == ["policy.changed"]
    again = run_json(runner, home, "init")
    assert again == {"home": str(home), "created": []}
    assert (home / "checkpoint.key").read_bytes() == key
    assert actions(home) == ["policy.changed"]  # the same policy is not logged twice
    text = run(runner, home, "init").stdout
    assert "already a safe setting home; nothing changed" in text


def test_init_says_what_comes_next(runner, elsewhere):
    result = runner.invoke(cli, ["--home", "h", "init"], catch_exceptions=False)
    assert result.exit_code == 0
    assert f"Safe setting home ready at {elsewhere / 'h'}" in result.stdout
    assert "data generate" in result.stdout


def test_the_commands_work_once_the_home_exists(runner, elsewhere):
    home = elsewhere / "safesetting-home"
    runner.invoke(cli, ["init"], catch_exceptions=False)
    assert run_json(runner, home, "admin", "project", "list") == {"projects": []}
    verify = runner.invoke(cli, ["audit", "verify"], catch_exceptions=False)
    assert verify.exit_code == 0
    assert verify.stdout.startswith("OK: 1 entries")


def test_data_generate_creates_the_home_it_writes(runner, elsewhere):
    home = elsewhere / "fresh"
    result = runner.invoke(
        cli, ["--home", str(home), "data", "generate", "--pupils", "50", "--json"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    names = {p.name for p in home.iterdir()}
    assert {"npd.duckdb", "policy.toml", "checkpoint.key", "control.db"} <= names
    assert run_json(runner, home, "admin", "researcher", "list") == {"researchers": []}


def test_a_failed_generation_creates_no_home(runner, elsewhere):
    result = runner.invoke(cli, ["--home", "fresh", "data", "generate", "--pupils", "0"])
    assert result.exit_code == 2
    assert tree(elsewhere) == []


def test_an_unexpected_error_prints_an_incident_id_that_leads_to_its_traceback(
    runner, elsewhere, monkeypatch
):
    home = elsewhere / "safesetting-home"
    runner.invoke(cli, ["init"], catch_exceptions=False)

    def explode(*_args, **_kwargs):
        raise RuntimeError("detail for the operator only")

    monkeypatch.setattr("safesetting.administration.list_projects", explode)
    result = runner.invoke(cli, ["admin", "project", "list"], catch_exceptions=False)
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: internal error (incident ")
    incident = line.removeprefix("Error: internal error (incident ").removesuffix(")")
    assert "detail" not in result.output
    log = (home / "incidents.log").read_text()
    assert f"incident {incident}: " in log
    assert "admin project list\n" in log  # the command, never its arguments
    assert "RuntimeError: detail for the operator only" in log
    assert oct((home / "incidents.log").stat().st_mode & 0o777) == "0o600"
