"""``safesetting transparency``: what the public may know, as a self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import click

from safesetting.cli.common import Context, handle_errors, json_option, pass_context, print_json


@click.group("transparency")
def transparency() -> None:
    """Public transparency: every project, what it asked, the privacy loss, the checkpoint."""


@transparency.command("report")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the HTML report to FILE (e.g. transparency.html).",
)
@json_option
@pass_context
@handle_errors
def report(ctx: Context, out: Path | None, as_json: bool) -> None:
    """Write the public transparency report: projects with access (who, organisation type,
    purpose, dates), the kinds of question asked and how many, the ε each used, the total
    privacy loss any single pupil has had, refused applications, and the latest signed
    checkpoint with its public key. No released value and nothing about any pupil."""
    from safesetting.control import open_control
    from safesetting.report.transparency_page import render_transparency
    from safesetting.transparency import transparency_summary

    summary = transparency_summary(open_control(ctx.home))
    if as_json:
        print_json(summary)
    if out is not None:
        out.write_text(render_transparency(summary), encoding="utf-8")
        if not as_json:
            click.echo(f"Wrote {out}")
    elif not as_json:
        raise click.UsageError("give --out FILE.html (or --json)")
