"""The ``safesetting`` command: a thin layer that parses, calls library functions, prints.

Each command group lives in its own module and registers itself in ``GROUPS`` below.
"""

from __future__ import annotations

import sys

import click

from safesetting import __version__
from safesetting.cli.admin import admin
from safesetting.cli.audit import audit_group
from safesetting.cli.budget import budget
from safesetting.cli.common import Context
from safesetting.cli.data import data
from safesetting.cli.demo import demo
from safesetting.cli.query import query
from safesetting.cli.transparency import transparency

GROUPS: list[click.Command] = [data, admin, query, budget, audit_group, transparency, demo]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


for _group in GROUPS:
    cli.add_command(_group)


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(standalone_mode=True))
