"""``safesetting budget``: a project's spent and remaining privacy budget."""

from __future__ import annotations

from decimal import Decimal

import click

from policies.epsilon import format_epsilon, to_micro
from safesetting.cli.common import (
    Context,
    handle_errors,
    json_option,
    pass_context,
    print_json,
    token_option,
)


def _shown(epsilon: object) -> str:
    """ε as the shortest exact decimal (the JSON floats come from exact micro-ε)."""
    return format_epsilon(to_micro(Decimal(repr(epsilon))))


@click.command("budget")
@click.option("--project", "project_id", required=True, help="Project id.")
@token_option
@json_option
@pass_context
@handle_errors
def budget(ctx: Context, project_id: str, token: str | None, as_json: bool) -> None:
    """Show a project's privacy budget: spent, remaining, and the dataset-wide total.

    Members see their own projects only; auditors and admins see any. Talks to
    SAFESETTING_URL when set, else reads the home.
    """
    summary = ctx.backend(token).budget(project_id)
    if as_json:
        print_json(summary)
        return
    click.echo(f"Project {summary['project']}")
    click.echo(f"  budget     {_shown(summary['budget_epsilon'])} epsilon")
    click.echo(f"  spent      {_shown(summary['epsilon_spent'])} epsilon")
    click.echo(f"  remaining  {_shown(summary['budget_remaining'])} epsilon")
    click.echo(
        f"  dataset    {_shown(summary['dataset_epsilon_spent'])} of "
        f"{_shown(summary['dataset_epsilon_cap'])} epsilon spent by all projects"
    )
