"""``safesetting budget``: a project's spent and remaining privacy budget."""

from __future__ import annotations

import click

from policies.epsilon import format_epsilon
from safesetting.budgets import budget_summary
from safesetting.cli.common import Context, handle_errors, json_option, pass_context, print_json
from safesetting.control import open_control


@click.command("budget")
@click.option("--project", "project_id", required=True, help="Project id.")
@click.option(
    "--token",
    envvar="SAFESETTING_TOKEN",
    help="Your token (default: SAFESETTING_TOKEN). Members see their own projects only.",
)
@json_option
@pass_context
@handle_errors
def budget(ctx: Context, project_id: str, token: str | None, as_json: bool) -> None:
    """Show a project's privacy budget: spent, remaining, and the dataset-wide total."""
    control = open_control(ctx.home, actor="service")
    summary = budget_summary(control, project_id, token)
    if as_json:
        print_json(summary.to_json())
        return
    click.echo(f"Project {summary.project}")
    click.echo(f"  budget     {format_epsilon(summary.budget_micro)} epsilon")
    click.echo(f"  spent      {format_epsilon(summary.spent_micro)} epsilon")
    click.echo(f"  remaining  {format_epsilon(summary.remaining_micro)} epsilon")
    click.echo(
        f"  dataset    {format_epsilon(summary.dataset_spent_micro)} of "
        f"{format_epsilon(summary.dataset_cap_micro)} epsilon spent by all projects"
    )
