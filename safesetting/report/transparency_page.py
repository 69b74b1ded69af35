"""The public transparency report: rendered from :func:`safesetting.transparency.
transparency_summary`, so the HTML, the server's page and the JSON say the same thing."""

from __future__ import annotations

from typing import Any

from safesetting.report.charts import budget_chart
from safesetting.report.markup import Markup, explain, join, page, para, table, tag


def _pupils(n: int) -> str:
    """Agree the verb with the count.

    >>> _pupils(1), _pupils(2)
    ('1 pupil has', '2 pupils have')
    """
    return f"{n:,} pupil has" if n == 1 else f"{n:,} pupils have"


def _note(checkpoint: dict[str, Any] | None) -> str:
    return checkpoint["note"] if checkpoint else "no checkpoint yet"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in counts.items()) or "none"


def projects_section(summary: dict[str, Any]) -> Markup:
    rows, kinds = [], []
    for p in summary["projects"]:
        q = p["queries"]
        rows.append([
            tag("strong", p["id"]), p["title"], ", ".join(p["organisations"]), p["org_type"],
            p["purpose"], p["approved"], p["expires"],
            p["status"] + (f" (closed {p['closed']})" if p["closed"] else ""),
            f"{p['first_query'] or '–'} to {p['last_query'] or '–'}",
            q["released"], q["cached"], q["denied"],
            f"{p['epsilon_spent']:g} of {p['budget_epsilon']:g}",
        ])  # fmt: skip
        kinds.append([
            tag("strong", p["id"]), _counts(p["tables_asked"]), _counts(p["aggregate_kinds"]),
            _counts(p["grouped_by"]), _counts(p["refusal_reasons"]),
        ])  # fmt: skip
    return join([
        tag("h2", "Projects that have had access"),
        explain(
            "Every project approved to ask questions of the pupil data: who (organisation), "
            "what kind of organisation, for what purpose, and when. Researchers never receive "
            "records; they receive answers with deliberate uncertainty (see below).",
        ),
        table(
            ["project", "title", "organisations", "type", "purpose", "approved", "expires",
             "status", "questions asked", "answered", "repeated (cache)", "refused",
             "privacy budget used (ε)"],
            rows, (9, 10, 11),
        ),  # fmt: skip
        tag("h3", "What kinds of question were asked"),
        para("Counted from the audit log: which tables answered questions, which kinds of "
             "summary (count, average, …), what the answers were broken down by, and why "
             "questions were refused. Never the answers themselves.", cls="muted"),
        table(["project", "tables", "summaries", "broken down by", "refusal reasons"], kinds),
    ])  # fmt: skip


def privacy_section(summary: dict[str, Any]) -> Markup:
    loss = summary["dataset"]
    items = [(p["id"], p["epsilon_spent"], p["budget_epsilon"]) for p in summary["projects"]]
    items.append(("any single pupil, all research", loss["epsilon_spent"],
                  loss["epsilon_cap"]))  # fmt: skip
    chart = budget_chart("Privacy loss spent (ε) against each budget", items)
    words = explain(
        "ε (epsilon) measures privacy loss: how much all the answers together could reveal "
        "about any one pupil. Each answer adds random noise sized so that the answer barely "
        "changes whether or not any particular child is in the data.",
        f"So far the total privacy loss any single pupil has had from all research together is "
        f"ε = {loss['epsilon_spent']:g}, against a cap of "
        f"ε = {loss['epsilon_cap']:g} set by the policy.",
    )
    return join([
        tag("h2", "Total privacy loss"),
        tag("p", tag("strong", f"ε = {loss['epsilon_spent']:g}"),
            f" of a cap of {loss['epsilon_cap']:g}", id="privacy-loss", cls="lede"),
        tag("div", tag("div", chart), words, cls="figure", id="figure-privacy"),
    ])  # fmt: skip


def refused_section(summary: dict[str, Any]) -> Markup:
    rows = [[r["project"], r["org_type"], r["purpose"], r["date"],
             ", ".join(dict.fromkeys(r["reasons"]))]
            for r in summary["refused_applications"]]  # fmt: skip
    return join([
        tag("h2", "Applications refused"),
        explain("Applications the policy refused before anything was registered, e.g. any use "
                "for immigration enforcement, policing or marketing."),
        table(["application", "type", "purpose", "date", "reason codes"], rows)
        if rows else para("None."),
    ])  # fmt: skip


def audit_section(summary: dict[str, Any]) -> Markup:
    a = summary["audit"]
    return join([
        tag("h2", "Hold us to it: the signed checkpoint"),
        explain(
            "Every access and every change is in an append-only log. This checkpoint is signed: "
            "keep a copy. Anyone can later ask for a proof that today's log still contains "
            "everything it contained now (`safesetting audit consistency`), and check the "
            "signature with the public key below.",
        ),
        para(f"The log holds {a['entries']:,} entries."),
        tag("pre", tag("code", _note(a["checkpoint"])), id="checkpoint"),
        para("Public key: ", tag("code", a["public_key"] or "none yet")),
        para(f"Policy in force (SHA-256): {summary['policy_sha256']}", cls="small muted"),
    ])  # fmt: skip


def render_transparency(summary: dict[str, Any]) -> str:
    """The public transparency report as one offline HTML document."""
    intro = join([
        tag("h1", "What has been done with pupil data"),
        para("This safe setting holds pupil records. Researchers cannot take them away: they "
             "send questions, and only summary answers with deliberate uncertainty come back. "
             "This page lists every project that has asked, what kinds of question, and how "
             "much privacy it has cost.", cls="lede"),
        para(f"{_pupils(summary['optouts'])} opted out; they are left out of every answer. "
             f"Generated {summary['generated_at']}.", cls="small muted"),
    ])  # fmt: skip
    return page(
        "Safe Setting transparency report",
        intro,
        privacy_section(summary),
        projects_section(summary),
        refused_section(summary),
        audit_section(summary),
        footer="Generated by `safesetting transparency report` from the control database and "
        "the audit log. The same data: GET /v1/transparency.",
    )
