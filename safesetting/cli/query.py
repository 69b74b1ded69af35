"""``safesetting query``: ask an aggregate question, get noisy answers with error bounds."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import click

from safesetting.cli.common import (
    Context,
    handle_errors,
    json_option,
    pass_context,
    token_option,
)
from safesetting.cli.tables import delimited, shown
from safesetting.errors import UsageError
from safesetting.results import DENIED, DRY_RUN, QueryResult

FORMATS = ("table", "json", "csv", "tsv")


@click.command()
@click.argument("sql", required=False)
@click.option(
    "--file",
    "sql_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the SQL from FILE (or give SQL as `-` to read standard input).",
)
@click.option("--project", required=True, help="The approved project this question is for.")
@click.option(
    "--epsilon",
    default=None,
    help="Privacy cost to spend, e.g. 0.5 (default: the policy's default ε per query).",
)
@click.option("--dry-run", is_flag=True, help="Report cost and expected error; spend nothing.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="table (default), json (as --json), or csv/tsv: keys, then each aggregate with "
    "<name>_error beside it.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the answer to FILE instead of standard output.",
)
@token_option
@json_option
@pass_context
@handle_errors
def query(
    ctx: Context,
    sql: str | None,
    sql_file: Path | None,
    project: str,
    epsilon: str | None,
    dry_run: bool,
    fmt: str | None,
    out: Path | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Ask an aggregate SQL question of the pupil data for PROJECT.

    Answers are differentially private: every number carries its 95 % error bound, the
    privacy cost is charged to the project's budget, and the access is audited. Rows and
    identifiers never leave. Talks to SAFESETTING_URL when set, else runs on the home.
    SQL is the argument, `-` for standard input, or --file FILE.

    \b
    Example:
      safesetting query "SELECT region, AVG(CAST(rwm_expected AS INTEGER)) AS rwm
        FROM census JOIN ks2 USING (pupil_id, academic_year)
        WHERE academic_year = 2023 GROUP BY region" --project fsm-gap --epsilon 0.5
      safesetting query --file gap.sql --project fsm-gap --format csv --out gap.csv
    """
    fmt = output_format(fmt, as_json)
    text = sql_text(sql, sql_file)
    result = ctx.backend(token).query(text, project, epsilon, dry_run)
    if fmt == "json":
        emit(json.dumps(result.to_json(), indent=2, default=str) + "\n", out)
    elif fmt == "table" or result.status == DENIED:
        render(result, to=out)  # a refusal: its reasons on stderr, no file written
    else:
        emit(delimited(result, "," if fmt == "csv" else "\t"), out)
    if result.status == DENIED:
        sys.exit(3)


def output_format(fmt: str | None, as_json: bool) -> str:
    """``--format`` with ``--json`` as its shorthand (both at once must agree)."""
    if as_json and fmt not in (None, "json"):
        raise UsageError(f"--json and --format {fmt} ask for two formats: give one")
    return "json" if as_json else fmt or "table"


def sql_text(sql: str | None, sql_file: Path | None) -> str:
    """The SQL: the argument, standard input for `-`, or the file's text."""
    if sql is not None and sql_file is not None:
        raise UsageError("give the SQL as an argument or with --file, not both")
    if sql_file is not None:
        try:
            return sql_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {sql_file}: {_why(exc)}") from None
    if sql is None:
        raise UsageError("no SQL: give it as an argument, `-` for standard input, or --file FILE")
    if sql == "-":
        try:
            return sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise UsageError(f"cannot read standard input: {_why(exc)}") from None
    return sql


def _why(exc: Exception) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) else "it is not UTF-8 text"


def emit(text: str, out: Path | None) -> None:
    """``text`` to standard output, or to ``out`` (written whole, then renamed into place)."""
    if out is None:
        click.echo(text, nl=False)
        return
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {out}: {exc.strerror}") from None
    click.echo(f"wrote {out}", err=True)


def render(result: QueryResult, to: Path | None = None) -> None:
    """Print a result for people: a table of value ± error, then the accounting (to ``to``,
    a file, for ``--format table --out FILE``; a refusal's reasons always go to stderr)."""
    if result.status == DENIED:
        click.echo(f"Refused (query {result.query_id}, audit entry {result.audit_seq}):", err=True)
        for reason in result.reasons:
            click.echo(f"  - {reason.code}: {reason.message}", err=True)
        return
    # Imported here, not at the top: a refusal, an error or --json needs no rich.
    from rich.console import Console
    from rich.table import Table

    from safesetting.cli.common import console as stdout

    buffer = io.StringIO()
    console = stdout if to is None else Console(file=buffer, width=120, no_color=True)
    if result.status == DRY_RUN:
        console.print(f"[bold]Dry run[/bold]: would cost ε = {result.epsilon:g}; nothing spent.")
        console.print(f"Each pupil counted at most {result.contribution_bound} time(s).")
        for exp in result.expected or []:
            width = exp["half_width"]
            shown_width = (
                f"± {shown(width, None)} (95 %)" if width is not None else "depends on group size"
            )
            console.print(f"  {exp['label']}: {exp['mechanism']}, {shown_width}")
    else:
        table = Table(title=f"{result.status} · query {result.query_id}")
        kinds = result.column_kinds or ["aggregate"] * len(result.columns)
        for name, kind in zip(result.columns, kinds, strict=True):
            table.add_column(name, justify="left" if kind == "key" else "right")
        for row, errs in zip(result.rows, result.error, strict=True):
            table.add_row(*[
                "[dim]suppressed[/dim]" if value is None else shown(value, err)
                for value, err in zip(row, errs, strict=True)
            ])  # fmt: skip
        console.print(table)
        spent = (
            "0 (answered from the cache)"
            if result.status == "cached"
            else f"{result.epsilon_spent:g}"
        )
        facts = [f"ε spent: {spent}"]
        if result.budget_remaining is not None:
            facts.append(f"budget left: {result.budget_remaining:g}")
        if result.audit_seq is not None:
            facts.append(f"audit entry {result.audit_seq}")
        facts.append(f"each pupil counted at most {result.contribution_bound} time(s)")
        console.print(" · ".join(facts))
        for note in result.notes:
            console.print(f"[dim]{note}[/dim]")
    if to is not None:
        emit(buffer.getvalue(), to)
