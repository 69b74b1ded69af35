"""The ``safesetting`` command: a thin layer that parses, calls library functions, prints.

Each command group lives in its own module, named in ``GROUPS`` below and imported only when
it is run (or listed by ``--help``), so a command loads what it needs and starts fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from safesetting import __version__
from safesetting.cli.common import Context

# command name -> "module:attribute"
GROUPS: dict[str, str] = {
    "init": "safesetting.cli.init:init",
    "data": "safesetting.cli.data:data",
    "admin": "safesetting.cli.admin:admin",
    "query": "safesetting.cli.query:query",
    "budget": "safesetting.cli.budget:budget",
    "audit": "safesetting.cli.audit:audit_group",
    "serve": "safesetting.cli.serve:serve",
    "transparency": "safesetting.cli.transparency:transparency",
    "demo": "safesetting.cli.demo:demo",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *GROUPS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in GROUPS and name not in self.commands:
            module, attr = GROUPS[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


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
    ctx.obj = Context.for_home(home)


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(standalone_mode=True))
