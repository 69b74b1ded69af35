"""``safesetting demo``: the story for policymakers, in the terminal and as an HTML report."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from safesetting.cli.common import console, handle_errors
from safesetting.demo.play import DEFAULT_PUPILS, DEFAULT_SEED, run_demo
from safesetting.demo.terminal import notifier, print_summary
from safesetting.report.demo_page import write_demo_reports


@click.command("demo")
@click.option(
    "--pupils",
    type=click.IntRange(min=5_000, max=5_000_000),
    default=DEFAULT_PUPILS,
    show_default=True,
    help="Synthetic pupils to generate.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    help="Folder for the report and the demo's own home (never ./safesetting-home).",
)
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Data seed.")
@handle_errors
def demo(pupils: int, out: Path, seed: int) -> None:
    """Show what "users come to the data" means, end to end, in about a minute.

    Generates a synthetic National Pupil Database, registers researchers, an auditor and
    three project applications, then plays a scripted story against the real service:
    refusals, differentially private answers with error bars, the cache, a budget running
    out, an opt-out, a subject-access request, the audit log verified and a tampered copy
    caught. Ends with a summary and the path of a self-contained HTML report. Exits 1 if
    any step did not turn out as the story expects.
    """
    run = run_demo(out, pupils=pupils, seed=seed, notify=notifier(console))
    report, public = write_demo_reports(run)
    print_summary(console, run, report, public)
    if not run.ok:
        sys.exit(1)
