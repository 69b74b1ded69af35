"""One key, never silently replaced: only `init` makes a signing key (for a log with no
entries); a missing key or a different one stops whatever needs it, naming the file."""

from __future__ import annotations

import pytest

import audit
from safesetting.cli import cli
from safesetting.control import open_control
from safesetting.errors import IntegrityError, StateError
from safesetting.home import Home
from tests.functional.admin_helpers import add_researcher, entries, run


@pytest.fixture
def home(tmp_path, runner):
    home = tmp_path / "home"
    run(runner, home, "init")
    add_researcher(runner, home, "ada")
    return home


COMMANDS = [
    ["admin", "researcher", "list"],
    ["admin", "project", "list"],
    ["audit", "checkpoint"],
    ["transparency", "report", "--json"],
    ["init"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_deleted_key_is_never_regenerated(runner, home, command):
    (home / "checkpoint.key").unlink()
    before = len(entries(home))
    result = runner.invoke(cli, ["--home", str(home), *command], catch_exceptions=False)
    assert result.exit_code == StateError.exit_code
    (line,) = result.stderr.strip().splitlines()
    assert str(home / "checkpoint.key") in line
    assert "missing" in line
    assert "restore" in line
    assert not (home / "checkpoint.key").exists()
    assert len(entries(home)) == before  # nothing written without the key


@pytest.mark.parametrize("command", COMMANDS[:4], ids=" ".join)
def test_a_replaced_key_is_refused(runner, home, command):
    (home / "checkpoint.key").unlink()
    audit.load_or_create_key(home / "checkpoint.key")  # an intruder's (or a careless) new key
    result = runner.invoke(cli, ["--home", str(home), *command], catch_exceptions=False)
    assert result.exit_code == IntegrityError.exit_code
    assert "is not the key that signed this log's latest checkpoint" in result.stderr


def test_audit_verify_still_reports_against_a_replaced_key(runner, home):
    """Verification is how an auditor finds out: it runs and fails, naming the checkpoint."""
    (home / "checkpoint.key").unlink()
    audit.load_or_create_key(home / "checkpoint.key")
    result = runner.invoke(cli, ["--home", str(home), "audit", "verify"])
    assert result.exit_code == 3
    assert "checkpoint" in result.output + result.stderr


def test_a_process_that_has_its_key_keeps_it_and_others_refuse(home):
    """A running server loaded the key once: deleting the file does not fork the log's
    history into two keys, and every new process refuses instead of making a second one."""
    control = open_control(Home(home))
    key = control.signing_key
    (home / "checkpoint.key").unlink()
    with control.transaction() as conn:
        control.record(conn, "policy.changed")
    note = audit.latest_checkpoint(control.engine)
    assert audit.open_checkpoint(note, key.verifier).size == len(entries(home))
    with pytest.raises(StateError, match="missing"):
        open_control(Home(home))
    assert not (home / "checkpoint.key").exists()
