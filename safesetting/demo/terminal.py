"""Telling the demo in the terminal with rich: one panel per step, then a summary.

Presentation only: it reads :class:`~safesetting.demo.play.Outcome` records and prints.
Works without a terminal (CI): rich falls back to plain text when output is not a TTY.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from safesetting.demo.play import DemoRun, Notify, Outcome
from safesetting.demo.story import STEPS
from safesetting.demo.truth import Truth

GOOD = {"released", "cached", "recorded", "answered", "verified", "approved"}
MAX_ROWS = 10


def fmt_value(value: Any) -> str:
    if value is None:
        return "suppressed"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:,.1f}"
    return str(value)


def dedupe(reasons: list[dict[str, str]]) -> list[dict[str, str]]:
    seen, out = set(), []
    for r in reasons:
        if (r["code"], r["message"]) not in seen:
            seen.add((r["code"], r["message"]))
            out.append(r)
    return out


def result_table(result: dict[str, Any], truth: Truth | None) -> Table:
    table = Table(show_header=True, header_style="bold", expand=False)
    for name in result["columns"]:
        table.add_column(name)
    if truth is not None:
        table.add_column("true values (synthetic data only)", style="dim")
    for i, (row, errs) in enumerate(zip(result["rows"], result["error"], strict=True)):
        if i == MAX_ROWS:
            table.add_row(*["…"] * (len(row) + int(truth is not None)))
            break
        cells = [
            fmt_value(v) if e is None or v is None else f"{fmt_value(v)} ± {fmt_value(e)}"
            for v, e in zip(row, errs, strict=True)
        ]
        if truth is not None:
            cells.append(", ".join(fmt_value(v) for v in truth.values(i)))
        table.add_row(*cells)
    return table


def _body(o: Outcome) -> list[Any]:
    step = o.step
    parts: list[Any] = []
    parts.append(Text(step.what))
    parts.append(Text(f"Why: {step.why}", style="italic dim"))
    if step.sql:
        parts.append(Syntax(step.sql, "sql", theme="ansi_light", word_wrap=True))
    for r in dedupe(o.reasons):
        parts.append(Text(f"  ✗ {r['code']}: {r['message']}", style="red"))
    if step.action == "query" and o.results and o.results[0]["status"] != "denied":
        res = o.results[0]
        parts.append(result_table(res, o.truth[0] if o.truth else None))
        spent = "0 — answered from the cache" if res["status"] == "cached" else res["epsilon_spent"]
        parts.append(
            Text(
                f"ε spent: {spent} · budget left: {res['budget_remaining']:g} · "
                f"audit entry {res['audit_seq']}"
            )
        )
    elif step.action == "exhaust":
        table = Table("question", "status", "ε spent", "budget left")
        for sql, res in zip(step.sqls, o.results, strict=False):
            year = sql.split("academic_year = ", 1)[1].split()[0]
            table.add_row(
                f"FSM gap, {year}",
                res["status"],
                f"{res['epsilon_spent']:g}",
                f"{res['budget_remaining']:g}",
            )
        parts.append(table)
    elif step.action == "optout":
        d = o.detail
        parts.append(
            Text(
                f"Opt-out recorded for UPN {d['upn_masked']} (withheld here). The audit "
                f"entry {d['audit_seq']} records only {d['audit_request']}."
            )
        )
    elif step.action == "subject_access":
        a = o.detail["answer"]
        table = Table("query", "project", "could have included the child?", "why")
        for x in a["queries"]:
            table.add_row(
                x["query_id"][:10],
                x["project"],
                {True: "yes", False: "no"}.get(x["included"], "unknown"),
                x["why"],
            )
        parts.append(table)
        parts.append(
            Text(
                f"{a['could_have_included']} of {a['released_queries']} released "
                f"answers could have used the record; no released value is shown. "
                f"Audited as entry {a['audit_seq']}."
            )
        )
    elif step.action in ("verify", "tamper"):
        v = o.detail["verify"]
        if v["ok"]:
            cps = ", ".join(
                f"{c['source']} at size {c['tree_size']}" for c in v["checkpoints_verified"]
            )
            parts.append(
                Text(
                    f"✓ {v['tree_size']} entries intact; checkpoints verified: {cps}", style="green"
                )
            )
        else:
            parts.append(
                Text(
                    f"✗ tampering found: first bad entry {v['first_bad_seq']} "
                    f"(edited: {o.detail['edited_seq']})",
                    style="red bold",
                )
            )
            for p in v["problems"][:3]:
                parts.append(Text(f"  {p['code']}: {p['message']}", style="red"))
    return parts


def step_panel(o: Outcome) -> Panel:
    n = next(i for i, s in enumerate(STEPS, 1) if s.key == o.step.key)
    colour = "green" if o.status in GOOD else "red"
    mark = "" if o.ok else f"  [bold red]UNEXPECTED (wanted {o.step.expect})[/]"
    # The outcome goes first and in the subtitle too: a narrow terminal cuts titles short.
    title = f"[{colour}]● {o.status}[/] [bold]{n}. {o.step.title}[/]"
    return Panel(
        Group(*_body(o)),
        title=title,
        title_align="left",
        subtitle=f"[{colour}]● {o.status}[/]{mark}",
        subtitle_align="right",
        border_style=colour,
    )


def notifier(console: Console) -> Notify:
    """A callback for :func:`~safesetting.demo.play.run_demo` that prints as the story goes."""

    def notify(kind: str, payload: Any) -> None:
        if kind == "step":
            console.print(step_panel(payload))
        else:
            console.print(f"[dim]·[/] {payload}")

    return notify


def print_summary(console: Console, run: DemoRun, report: Path, transparency: Path) -> None:
    table = Table("step", "outcome", "as expected", title="Summary")
    for o in run.outcomes:
        table.add_row(o.step.title, o.status, "yes" if o.ok else "[bold red]NO[/]")
    console.print(table)
    console.print(
        f"{run.pupils:,} synthetic pupils · {len(run.outcomes)} steps · "
        f"{run.seconds:.1f} s (data {run.data_seconds:.1f} s)"
    )
    console.print(f"Report: [bold]{report}[/]")
    console.print(f"Public transparency report: [bold]{transparency}[/]")
    console.print(f"Demo home (inspect with --home): {run.home}")
