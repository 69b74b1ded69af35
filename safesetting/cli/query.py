"""``safesetting query``: ask an aggregate question, get noisy answers with error bounds."""

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
from safesetting.results import DENIED, DRY_RUN, QueryResult


@click.command()
@click.argument("sql")
@click.option("--project", required=True, help="The approved project this question is for.")
@click.option(
    "--epsilon",
    default=None,
    help="Privacy cost to spend, e.g. 0.5 (default: the policy's default ε per query).",
)
@click.option("--dry-run", is_flag=True, help="Report cost and expected error; spend nothing.")
@token_option
@json_option
@pass_context
@handle_errors
def query(
    ctx: Context,
    sql: str,
    project: str,
    epsilon: str | None,
    dry_run: bool,
    token: str | None,
    as_json: bool,
) -> None:
    """Ask an aggregate SQL question of the pupil data for PROJECT.

    Answers are differentially private: every number carries its 95 % error bound, the
    privacy cost is charged to the project's budget, and the access is audited. Rows and
    identifiers never leave. Talks to SAFESETTING_URL when set, else runs on the home.

    \b
    Example:
      safesetting query "SELECT region, AVG(CAST(rwm_expected AS INTEGER)) AS rwm
        FROM census JOIN ks2 USING (pupil_id, academic_year)
        WHERE academic_year = 2023 GROUP BY region" --project fsm-gap --epsilon 0.5
    """
    result = ctx.backend(token).query(sql, project, epsilon, dry_run)
    if as_json:
        print_json(result.to_json())
    else:
        render(result)
    if result.status == DENIED:
        sys.exit(3)


def render(result: QueryResult) -> None:
    """Print a result for people: a table of value ± error, then the accounting."""
    if result.status == DENIED:
        click.echo(f"Refused (query {result.query_id}, audit entry {result.audit_seq}):", err=True)
        for reason in result.reasons:
            click.echo(f"  - {reason.code}: {reason.message}", err=True)
        return
    # Imported here, not at the top: a refusal, an error or --json needs no rich.
    from rich.table import Table

    from safesetting.cli.common import console

    if result.status == DRY_RUN:
        console.print(f"[bold]Dry run[/bold]: would cost ε = {result.epsilon:g}; nothing spent.")
        console.print(f"Each pupil counted at most {result.contribution_bound} time(s).")
        for exp in result.expected or []:
            width = exp["half_width"]
            shown = f"± {width:g} (95 %)" if width is not None else "depends on group size"
            console.print(f"  {exp['label']}: {exp['mechanism']}, {shown}")
        return
    table = Table(title=f"{result.status} · query {result.query_id}")
    for name in result.columns:
        table.add_column(name)
    for row, errs in zip(result.rows, result.error, strict=True):
        cells = [
            "[dim]suppressed[/dim]" if value is None
            else str(value) if err is None
            else f"{value:g} ± {err:g}"
            for value, err in zip(row, errs, strict=True)
        ]  # fmt: skip
        table.add_row(*cells)
    console.print(table)
    spent = (
        "0 (answered from the cache)" if result.status == "cached" else f"{result.epsilon_spent:g}"
    )
    console.print(
        f"ε spent: {spent} · budget left: {result.budget_remaining:g} · audit entry "
        f"{result.audit_seq} · each pupil counted at most {result.contribution_bound} time(s)"
    )
    for note in result.notes:
        console.print(f"[dim]{note}[/dim]")
