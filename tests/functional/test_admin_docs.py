"""The README's admin section documents every reason code and every admin command."""

from __future__ import annotations

import re
from pathlib import Path

import click

from policies.reasons import REASON_CODES
from safesetting.cli.admin import admin

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SECTION = README.split("## Administering a safe setting", 1)[1].split("\n## ", 1)[0]


def test_every_reason_code_is_explained():
    documented = set(re.findall(r"`([a-z_]+)`", SECTION))
    assert sorted(set(REASON_CODES) - documented) == []


def test_every_admin_command_is_shown():
    for group_name, group in admin.commands.items():
        if not isinstance(group, click.Group):  # a command of its own (subject-access)
            assert f"safesetting admin {group_name}" in SECTION, group_name
            continue
        for name in group.commands:
            assert f"safesetting admin {group_name} {name}" in SECTION, (group_name, name)
    assert "safesetting budget --project" in SECTION
