"""``safesetting data``: generate the synthetic NPD, and show what may be asked of it."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import click

from safesetting.cli.common import (
    Context,
    handle_errors,
    json_option,
    pass_context,
    print_json,
)
from safesetting.errors import UsageError

DEFAULT_PUPILS = "100000"
DEFAULT_YEARS = "2012-2024"


def parse_whole(text: str, what: str, minimum: int) -> int:
    """A whole number from the command line (``1_000_000`` and ``1,000,000`` allowed).

    >>> parse_whole("1_000", "pupils", 1)
    1000
    """
    cleaned = text.strip().replace("_", "").replace(",", "")
    if not cleaned.isdigit() and not (cleaned.startswith("-") and cleaned[1:].isdigit()):
        raise UsageError(f"{what} must be a whole number, not {text!r}")
    value = int(cleaned)
    if value < minimum:
        raise UsageError(f"{what} must be at least {minimum:,}, not {value:,}")
    return value


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so the temporary file is removed on the way out."""

    received: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        received.append(signum)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except Exception:
        # The signal can land inside DuckDB, which reports it as its own interrupt error:
        # still a termination, not an internal error.
        if received:
            raise SystemExit(128 + received[0]) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.group()
def data() -> None:
    """Generate the synthetic National Pupil Database and describe what may be asked of it."""


@data.command()
@click.option("--pupils", default=DEFAULT_PUPILS, show_default=True, help="Number of pupils.")
@click.option("--seed", default="0", show_default=True, help="Random seed: same seed, same data.")
@click.option(
    "--years",
    default=DEFAULT_YEARS,
    show_default=True,
    help="Academic years to generate, FIRST-LAST (2019 = 2018/19).",
)
@click.option("--force", is_flag=True, help="Replace an existing database.")
@json_option
@pass_context
@handle_errors
def generate(ctx: Context, pupils: str, seed: str, years: str, force: bool, as_json: bool) -> None:
    """Generate synthetic pupil records into HOME/npd.duckdb (creating HOME if needed).

    Pupils move through Reception to Year 11 across the years generated, sit KS2 and KS4,
    and are calibrated to published national figures. The database is written to a
    temporary file and renamed into place only when complete.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from safesetting.cli.common import console, err_console
    from synthetic.load import GenerationError, check_generation, generate_database

    n = parse_whole(pupils, "--pupils", 1)
    s = parse_whole(seed, "--seed", 0)
    try:
        target = ctx.home.database
        year_range = check_generation(target, n, s, years, force)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=err_console,
            transient=as_json,
            disable=as_json,
        ) as bar:
            task = bar.add_task("generating", total=None)

            def progress(what: str, done: int, total: int) -> None:
                bar.update(task, description=what, completed=done, total=total)

            with _terminate_cleanly():
                version = generate_database(target, n, s, year_range, force, progress)
                # What every query reads: the queryable columns, once (engine/snapshot.py).
                bar.update(task, description="publishing the query snapshot")
                from safesetting.engine.session import publish_snapshot

                snapshot = publish_snapshot(target, version.id)
    except GenerationError as exc:
        raise UsageError(str(exc)) from None
    from safesetting.control import init_home  # the home it wrote into, complete

    init_home(ctx.home)
    summary = {**version.to_json(), "seconds": round(version.seconds or 0.0, 2)}
    summary["path"] = str(target)
    summary["snapshot"] = str(snapshot)
    if as_json:
        print_json(summary)
        return
    console.print(f"Synthetic NPD written to {target}; query snapshot {snapshot}")
    table = Table()
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in version.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(
        f"{n:,} pupils, seed {s}, years {year_range.first}-{year_range.last}, "
        f"{summary['seconds']} s; data version [bold]{version.id}[/bold]"
    )


@data.command()
@click.option("--full", is_flag=True, help="List every value of every domain, with its label.")
@json_option
@handle_errors
def catalogue(full: bool, as_json: bool) -> None:
    """List tables, columns, classes, public domains and bounds: metadata, never data.

    Each code is shown with what it means (DfE's descriptions), each column with its NPD
    field name and description; --json has all of it (``labels``: code → meaning).
    """
    from rich.markup import escape
    from rich.table import Table

    from safesetting.cli.common import console
    from synthetic import catalogue as catalogue_lib

    described = catalogue_lib.describe()
    if as_json:
        print_json(described)
        return
    for t in described["tables"]:
        kind = "private" if t["private"] else "public"
        per_pupil = (
            f"; at most {t['max_rows_per_pupil']} rows per pupil ({t['bound_enforced_by']})"
            if t["max_rows_per_pupil"]
            else ""
        )
        table = Table(
            title=f"{t['name']} ({kind}): {t['description'].rstrip('.')}{per_pupil}",
            title_justify="left",
        )
        table.add_column("column (NPD field: description)", ratio=3)
        for heading in ("type", "class"):
            table.add_column(heading, no_wrap=True)
        table.add_column("domain", ratio=3)
        table.add_column("bounds", no_wrap=True)
        for c in t["columns"]:
            bounds = f"{c['bounds'][0]:g} .. {c['bounds'][1]:g}" if c["bounds"] else ""
            about = f"{c['npd_field']}: {c['description']}" if c["npd_field"] else c["description"]
            table.add_row(f"[bold]{c['name']}[/bold]\n[dim]{escape(about)}[/dim]", c["type"],
                          c["class"], escape(catalogue_lib.domain_summary(c, full=full)),
                          bounds)  # fmt: skip
        console.print(table)
