"""``GET /``: the public transparency page, a small self-contained HTML rendering of
:func:`safesetting.transparency.transparency_summary` (every value escaped)."""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .5rem}"
    "th{background:#f4f4f4;text-align:left}pre{background:#f8f8f8;padding:.5rem}"
)


def _cells(values: list[Any], tag: str = "td") -> str:
    return "".join(f"<{tag}>{escape(str(v))}</{tag}>" for v in values)


def render_page(summary: dict[str, Any]) -> str:
    """The whole page as one string."""
    heads = ["project", "title", "organisation type", "purpose", "approved", "expires",
             "status", "ε budget", "ε spent", "released", "cached", "denied"]  # fmt: skip
    rows = []
    for p in summary["projects"]:
        q = p["queries"]
        values = [
            p["id"], p["title"], p["org_type"], p["purpose"], p["approved"], p["expires"],
            p["status"], f"{p['budget_epsilon']:g}", f"{p['epsilon_spent']:g}",
            q["released"], q["cached"], q["denied"],
        ]  # fmt: skip
        rows.append(f"<tr>{_cells(values)}</tr>")
    d, a, totals = summary["dataset"], summary["audit"], summary["queries"]
    checkpoint = a["checkpoint"]["note"] if a["checkpoint"] else "no checkpoint signed yet"
    kinds = ", ".join(f"{escape(k)}: {n}" for k, n in totals.items())
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>Safe Setting: transparency</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>Safe Setting: who used the pupil data, and how much</h1>"
        "<p>Researchers never see pupil records: they send aggregate questions and receive "
        "differentially private answers. Every access is in a tamper-evident log.</p>"
        f"<h2>Projects</h2><table><tr>{_cells(heads, 'th')}</tr>{''.join(rows)}</table>"
        f"<h2>Queries</h2><p>{kinds}</p>"
        f"<h2>Privacy loss</h2><p>Dataset-wide ε spent: {d['epsilon_spent']:g} of a cap of "
        f"{d['epsilon_cap']:g}. Cells below {d['min_cell_count']} are suppressed.</p>"
        f"<h2>Audit log</h2><p>{a['entries']} entries. Latest signed checkpoint:</p>"
        f"<pre>{escape(checkpoint)}</pre>"
        "<p>Machine-readable: <a href='/v1/transparency'>/v1/transparency</a>, "
        "<a href='/v1/audit/checkpoint'>/v1/audit/checkpoint</a>, "
        "<a href='/openapi.json'>/openapi.json</a>.</p></body></html>"
    )
