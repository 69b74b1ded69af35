"""Every command has help text; the entry point runs."""

from __future__ import annotations

import subprocess
import sys

import click

from safesetting.cli import cli


def _walk(cmd: click.Command, path: tuple[str, ...] = ()):
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from _walk(cmd.get_command(ctx, name), (*path, name))


def test_every_command_has_help_text():
    missing = [" ".join(p) or "safesetting" for p, c in _walk(cli) if not (c.help or "").strip()]
    assert missing == []


def test_every_command_answers_help(runner):
    for path, _cmd in _walk(cli):
        result = runner.invoke(cli, [*path, "--help"], catch_exceptions=False)
        assert result.exit_code == 0, path
        assert "Usage:" in result.output


def test_module_entry_point_prints_version():
    out = subprocess.run(
        [sys.executable, "-m", "safesetting", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "safesetting" in out.stdout
