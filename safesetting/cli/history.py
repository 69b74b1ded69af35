"""``safesetting projects`` and ``safesetting queries``: a researcher's own record."""

from __future__ import annotations

import sys

import click

from safesetting.cli.common import (
    Context,
    handle_errors,
    json_option,
    pass_context,
    print_json,
    token_option,
)
from safesetting.cli.query import render
from safesetting.results import DENIED


@click.command("projects")
@token_option
@json_option
@pass_context
@handle_errors
def projects(ctx: Context, token: str | None, as_json: bool) -> None:
    """List my projects with their budgets (auditors and admins: every project).

    Talks to SAFESETTING_URL when set, else reads the home.
    """
    found = ctx.backend(token).projects()
    if as_json:
        print_json({"projects": found})
        return
    if not found:
        click.echo("No projects.")
        return
    from rich.table import Table

    from safesetting.cli.common import console

    table = Table(title=f"Projects ({len(found)})")
    for name in ("project", "title", "purpose", "status", "expires"):
        table.add_column(name, overflow="fold")
    for name in ("budget ε", "spent", "left"):
        table.add_column(name, justify="right")
    for p in found:
        table.add_row(p["project"], p["title"], p["purpose"], p["status"], p["expires"],
                      f"{p['budget_epsilon']:g}", f"{p['epsilon_spent']:g}",
                      f"{p['budget_remaining']:g}")  # fmt: skip
    console.print(table)


@click.group("queries")
def queries() -> None:
    """My past queries: list them, and show a released answer again at no cost."""


@queries.command("list")
@click.option("--project", help="Only this project's queries.")
@click.option(
    "--limit", type=click.IntRange(1, 1_000), default=100, show_default=True,
    help="At most N, newest first.",
)  # fmt: skip
@token_option
@json_option
@pass_context
@handle_errors
def list_queries(
    ctx: Context, project: str | None, limit: int, token: str | None, as_json: bool
) -> None:
    """List my queries, newest first: id, project, status, ε, when, and the answer's columns
    (auditors and admins: everyone's). The SQL is never kept, so it is not shown."""
    found = ctx.backend(token).queries(project, limit)
    if as_json:
        print_json({"queries": found})
        return
    if not found:
        click.echo("No queries.")
        return
    from rich.table import Table

    from safesetting.cli.common import console

    table = Table(title=f"Queries ({len(found)}, newest first)")
    table.add_column("query", no_wrap=True)
    for name in ("project", "status"):
        table.add_column(name)
    table.add_column("ε", justify="right")
    table.add_column("asked (UTC)", no_wrap=True)
    table.add_column("columns", overflow="fold")
    for q in found:
        table.add_row(q["query_id"], q["project"], q["status"], f"{q['epsilon']:g}",
                      q["asked_at"][:19].replace("T", " "), ", ".join(q["columns"]))  # fmt: skip
    console.print(table)


@queries.command("show")
@click.argument("query_id")
@token_option
@json_option
@pass_context
@handle_errors
def show_query(ctx: Context, query_id: str, token: str | None, as_json: bool) -> None:
    """Show a released answer again (no new cost): my own queries; auditors and admins any."""
    result = ctx.backend(token).result(query_id)
    result.notes = [*result.notes, "shown again: nothing was spent now"]
    if as_json:
        print_json(result.to_json())
    else:
        render(result)
    if result.status == DENIED:
        sys.exit(3)
