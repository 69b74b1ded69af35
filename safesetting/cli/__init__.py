"""The ``safesetting`` command: a thin layer that parses, calls library functions, prints.

Each command group lives in its own module, named in ``GROUPS`` below and imported only when
it is run (or asked for its own ``--help``), so a command loads what it needs and starts
fast. ``safesetting --help`` imports none of them: it lists each command with the summary
kept beside it here (a test checks that every summary matches its command's help).
"""

from __future__ import annotations

import importlib
import sys
from gettext import gettext as _
from typing import NamedTuple

import click

from safesetting import __version__


class Entry(NamedTuple):
    """Where a command lives, and what ``safesetting --help`` says of it."""

    target: str  # "module:attribute"
    summary: str  # the first paragraph of the command's help text


GROUPS: dict[str, Entry] = {
    "init": Entry(
        "safesetting.cli.init:init",
        "Create the home folder (--home, SAFESETTING_HOME, or ./safesetting-home).",
    ),
    "data": Entry(
        "safesetting.cli.data:data",
        "Generate the synthetic National Pupil Database and describe what may be asked of it.",
    ),
    "admin": Entry(
        "safesetting.cli.admin:admin",
        "Run the safe setting: researchers, projects, opt-outs, the policy, the signing key.",
    ),
    "query": Entry(
        "safesetting.cli.query:query",
        "Ask an aggregate SQL question of the pupil data for PROJECT.",
    ),
    "budget": Entry(
        "safesetting.cli.budget:budget",
        "Show a project's privacy budget: spent, remaining, and the dataset-wide total.",
    ),
    "projects": Entry(
        "safesetting.cli.history:projects",
        "List my projects with their budgets (auditors and admins: every project).",
    ),
    "queries": Entry(
        "safesetting.cli.history:queries",
        "My past queries: list them, and show a released answer again at no cost.",
    ),
    "audit": Entry(
        "safesetting.cli.audit:audit_group",
        "The append-only, tamper-evident log of every access and admin change.",
    ),
    "serve": Entry(
        "safesetting.cli.serve:serve",
        "Serve the home over HTTP: researchers then need only a URL and a token.",
    ),
    "transparency": Entry(
        "safesetting.cli.transparency:transparency",
        "Public transparency: every project, what it asked, the privacy loss, the checkpoint.",
    ),
    "demo": Entry(
        "safesetting.cli.demo:demo",
        'Show what "users come to the data" means, end to end, in about a minute.',
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use, and listed without importing."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *GROUPS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in GROUPS and name not in self.commands:
            module, attr = GROUPS[name].target.split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As ``click.Group.format_commands``, with a stand-in carrying the registry's summary
        for each command not imported yet (so ``--help`` imports nothing)."""
        commands = [
            (name, self.commands.get(name) or click.Command(name, help=GROUPS[name].summary))
            for name in self.list_commands(ctx)
        ]
        commands = [(name, command) for name, command in commands if not command.hidden]
        if commands:
            # The width click allows: three times the default spacing.
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            rows = [(name, command.get_short_help_str(limit)) for name, command in commands]
            with formatter.section(_("Commands")):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    envvar="SAFESETTING_HOME",
    default=None,
    help="Home folder holding the data, policy, control database and signing key "
    "(default ./safesetting-home; env SAFESETTING_HOME).",
)
@click.version_option(__version__, prog_name="safesetting")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """Safe Setting: researchers come to the data; answers leave, rows never do.

    Synthetic National Pupil Database records live in DuckDB inside the home folder.
    Accredited researchers on approved projects ask aggregate SQL questions and get
    differentially private answers with error bounds; every access is audited.
    """
    from safesetting.cli.common import Context  # only a command run needs it

    ctx.obj = Context.for_home(home)


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(standalone_mode=True))
