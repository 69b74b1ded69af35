"""The demo report: the story, released answers beside the true values (synthetic data only),
accuracy against ε, budgets, refusals, and the audit log with its verification."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safesetting.demo.evidence import accuracy_curves, audit_excerpt
from safesetting.demo.play import DemoRun, Outcome
from safesetting.demo.truth import Truth
from safesetting.report.charts import Series, budget_chart, dot_whisker_chart, line_chart
from safesetting.report.markup import Markup, explain, join, page, para, table, tag
from safesetting.report.transparency_page import render_transparency
from safesetting.service import engine_session
from safesetting.transparency import transparency_summary

OUTCOME_WORDS = {
    "refused": "refused",
    "exhausted": "refused",
    "released": "released",
    "cached": "cached",
    "recorded": "recorded",
    "answered": "answered",
    "verified": "verified",
    "caught": "caught",
}


def fmt(value: Any) -> str:
    if value is None:
        return "suppressed"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def released_table(result: dict[str, Any], truth: Truth | None) -> Markup:
    header = list(result["columns"])
    if truth is not None:
        header.append("true values (synthetic demo only)")
    rows = []
    for i, (row, errs) in enumerate(zip(result["rows"], result["error"], strict=True)):
        cells: list[object] = [
            fmt(v) if e is None or v is None else f"{fmt(v)} ± {fmt(e)}"
            for v, e in zip(row, errs, strict=True)
        ]
        if truth is not None:
            cells.append(", ".join(fmt(v) for v in truth.values(i)))
        rows.append(cells)
    return table(header, rows)


def _reasons(outcome: Outcome) -> Markup:
    seen: dict[tuple[str, str], None] = {}
    for r in outcome.reasons:
        seen[(r["code"], r["message"])] = None
    if not seen:
        return Markup("")
    items = [tag("li", tag("code", code), ": ", message) for code, message in seen]
    return tag("ul", *items, cls="reasons")


def _step_detail(o: Outcome) -> Markup:
    step, parts = o.step, []
    if step.action == "query" and o.results and o.results[0]["status"] != "denied":
        res = o.results[0]
        parts.append(released_table(res, o.truth[0] if o.truth else None))
        spent = "0 (answered from the cache)" if res["status"] == "cached" else res["epsilon_spent"]
        parts.append(
            para(
                f"ε spent: {spent} · budget left: {res['budget_remaining']:g} · "
                f"audit entry {res['audit_seq']}",
                cls="small muted",
            )
        )
    elif step.action == "exhaust":
        rows = []
        for sql, res in zip(step.sqls, o.results, strict=False):
            year = sql.split("academic_year = ", 1)[1].split()[0]
            codes = ", ".join(dict.fromkeys(r["code"] for r in res["reasons"]))
            rows.append(
                [
                    f"FSM gap, {year}",
                    res["status"] + (f" ({codes})" if codes else ""),
                    res["epsilon_spent"],
                    res["budget_remaining"],
                ]
            )
        parts.append(table(["question", "outcome", "ε spent", "budget left"], rows, (2, 3)))
    elif step.action == "apply":
        app = o.detail["application"]
        parts.append(
            table(
                ["organisation type", "purpose", "tables", "restricted columns asked"],
                [[app.org_type, app.purpose, ", ".join(app.tables), ", ".join(app.special)]],
            )
        )
    elif step.action == "optout":
        d = o.detail
        parts.append(
            para(
                f"Opt-out recorded for the UPN {d['upn_masked']} (withheld in this "
                f"report). Audit entry {d['audit_seq']} records only "
                f"{d['audit_request']}: that an opt-out happened, not whose."
            )
        )
    elif step.action == "subject_access":
        a = o.detail["answer"]
        rows = [
            [
                x["query_id"][:10],
                x["project"],
                x["released_on"],
                {True: "yes", False: "no"}.get(x["included"], "unknown"),
                x["why"],
            ]
            for x in a["queries"]
        ]
        parts.append(
            table(["query", "project", "released", "could have included the child?", "why"], rows)
        )
        parts.append(
            para(
                f"{a['could_have_included']} of {a['released_queries']} released "
                "answers could have used the child's record. No released value is "
                f"shown. The request itself is audit entry {a['audit_seq']}.",
                cls="small muted",
            )
        )
    elif step.action in ("verify", "tamper"):
        parts.append(_verify_text(o.detail["verify"], o.detail.get("edited_seq")))
    return join(parts)


def _verify_text(v: dict[str, Any], edited: int | None) -> Markup:
    if v["ok"]:
        cps = ", ".join(
            f"{c['source']} checkpoint at size {c['tree_size']}" for c in v["checkpoints_verified"]
        )
        return para(
            f"✓ All {v['tree_size']} entries intact. Signatures and roots verified: {cps}.",
            cls="verify-ok",
        )
    problems = [tag("li", tag("code", p["code"]), ": ", p["message"]) for p in v["problems"][:4]]
    return join(
        [
            para(
                f"✗ Tampering detected. First bad entry: {v['first_bad_seq']} (the "
                f"entry edited was {edited}).",
                cls="mismatch verify-failed",
            ),
            tag("ul", *problems),
        ]
    )


def steps_section(run: DemoRun) -> Markup:
    blocks = []
    for n, o in enumerate(run.outcomes, 1):
        word = OUTCOME_WORDS.get(o.status, o.status)
        head = tag("h3", f"{n}. {o.step.title} ", tag("span", word, cls=f"badge {word}"))
        parts: list[object] = [
            head,
            para(o.step.what),
            para("Why it matters: ", o.step.why, cls="muted"),
        ]
        if o.step.sql:
            parts.append(tag("pre", tag("code", o.step.sql)))
        parts += [_reasons(o), _step_detail(o)]
        if not o.ok:
            parts.append(para(f"Unexpected: the story expected {o.step.expect}.", cls="mismatch"))
        blocks.append(tag("div", *parts, cls="step", id=f"step-{o.step.key}"))
    return join([tag("h2", "What happened, step by step"), *blocks])


def gap_section(run: DemoRun) -> Markup:
    o = next((x for x in run.outcomes if x.step.key == "release-gap"), None)
    if o is None or not o.results or not o.truth:
        return Markup("")
    res, truth = o.results[0], o.truth[0]
    regions = list(dict.fromkeys(r[0] for r in res["rows"]))
    series = []
    for flag, name in (
        (True, "free school meals in the last 6 years"),
        (False, "no free school meals"),
    ):
        values, errors, true = [], [], []
        for region in regions:
            i = next(k for k, r in enumerate(res["rows"]) if r[0] == region and r[1] is flag)
            values.append(res["rows"][i][2])
            errors.append(res["error"][i][2])
            true.append(truth.rows[i][2])
        series.append(Series(name, values, errors, true))
    chart = dot_whisker_chart(
        "Share meeting the expected standard at KS2, 2023",
        regions,
        series,
        "share of pupils (0 = none, 1 = all)",
        (0.0, 1.0),
    )
    words = explain(
        "Each dot is a number the safe setting released; the line through it is its error bar: "
        "the true figure lies inside it 95 times out of 100.",
        "The diamonds are the true figures. In real life nobody outside the safe setting can "
        "see them; this demo can show them only because every pupil here is invented.",
        "The gap between the two colours in each region is the attainment gap that policy "
        "tries to close. It is visible clearly through the noise, while no single child's "
        "record can be picked out.",
    )
    return join(
        [
            tag("h2", "The attainment gap, with error bars"),
            tag("div", tag("div", chart), words, cls="figure", id="figure-gap"),
        ]
    )


def accuracy_section(curves: dict[str, Any]) -> Markup:
    chart = line_chart(
        "How far off an answer can be (95 % error) at each ε",
        curves["epsilons"],
        [(s["name"], s["half_widths"]) for s in curves["series"]],
        "ε spent on the question (privacy loss)",
        "± error, in pupils (log scale)",
        log_y=True,
    )
    first = curves["series"][0]["half_widths"]
    words = explain(
        "ε (epsilon) measures how much a question may reveal about any one pupil. Smaller ε "
        "means more noise: more privacy, less accuracy.",
        f"A count of pupils per region is within about ±{first[-1]:.0f} at ε = 1 and "
        f"±{first[0]:.0f} at ε = {curves['epsilons'][0]:g}.",
        "When one pupil can appear many times (several exclusions over the years) the noise "
        "must cover all of them, so the same ε buys a wider error. These curves need no data: "
        "they come from OpenDP's accuracy formulas, as a dry run would report them.",
    )
    return join(
        [
            tag("h2", "Accuracy against privacy"),
            tag("div", tag("div", chart), words, cls="figure", id="figure-accuracy"),
        ]
    )


def budget_section(summary: dict[str, Any]) -> Markup:
    items = [(p["id"], p["epsilon_spent"], p["budget_epsilon"]) for p in summary["projects"]]
    loss = summary["dataset"]
    items.append(("all research (any pupil)", loss["epsilon_spent"], loss["epsilon_cap"]))
    chart = budget_chart("Privacy budget spent (ε)", items)
    words = explain(
        "Each project is approved with a privacy budget. Every answered question spends some "
        "of it; repeated questions answered from the cache spend nothing.",
        "The last bar adds up every project: it is the most privacy loss any single pupil can "
        "have had from all research together, and it has its own cap.",
    )
    return join(
        [
            tag("h2", "Privacy budgets"),
            tag("div", tag("div", chart), words, cls="figure", id="figure-budget"),
        ]
    )


def refusals_section(run: DemoRun) -> Markup:
    rows = []
    for o in run.outcomes:
        if o.status in ("refused", "exhausted"):
            codes = list(dict.fromkeys(r["code"] for r in o.reasons))
            msgs = list(dict.fromkeys(r["message"] for r in o.reasons))
            who = o.step.who or ", ".join(getattr(o.detail.get("application"), "members", ()))
            rows.append(
                [
                    o.step.title,
                    who,
                    o.step.project or o.step.application or "",
                    ", ".join(codes),
                    " ".join(msgs),
                ]
            )
    return join(
        [
            tag("h2", "Refused attempts, and why"),
            explain(
                "Every refusal carries stable reason codes and is written to the audit log, "
                "just like every answer."
            ),
            table(["attempt", "who", "project", "reason codes", "explanation"], rows),
        ]
    )


def _note(summary: dict[str, Any]) -> str:
    checkpoint = summary["audit"]["checkpoint"]
    return checkpoint["note"] if checkpoint else ""


def audit_section(run: DemoRun, excerpt: list[dict[str, Any]], summary: dict[str, Any]) -> Markup:
    verify = next(o for o in run.outcomes if o.step.key == "verify-log")
    tamper = next(o for o in run.outcomes if o.step.key == "tamper")
    rows = [
        [
            e["seq"],
            e["time"][:19].replace("T", " "),
            e["actor"],
            e["action"],
            e["project"] or "",
            e["decision"] or "",
            ", ".join(e["reasons"]),
            f"{e['epsilon']:g}" if e["epsilon"] else "",
        ]
        for e in excerpt
    ]
    return join(
        [
            tag("h2", "The audit log"),
            explain(
                "Every access, answered or refused, and every change an administrator makes "
                "is written to an append-only log. Each entry is hashed into a Merkle tree "
                "(RFC 9162); after every change the safe setting signs the tree's root "
                "(a checkpoint).",
                "Anyone with the public key and a published checkpoint can check later that "
                "the log only ever grew: no entry changed, vanished or moved.",
            ),
            tag("h3", "The latest signed checkpoint"),
            tag("pre", tag("code", _note(summary)), id="checkpoint"),
            para("Public key: ", tag("code", summary["audit"]["public_key"] or "")),
            tag("h3", "Verification of the live log"),
            _verify_text(verify.detail["verify"], None),
            tag("h3", "Verification of the tampered copy"),
            _verify_text(tamper.detail["verify"], tamper.detail.get("edited_seq")),
            tag("h3", f"The log ({len(excerpt)} newest entries)"),
            table(
                ["seq", "time (UTC)", "actor", "action", "project", "decision", "reasons", "ε"],
                rows,
                (0,),
            ),
        ]
    )


def render_demo_report(
    run: DemoRun, summary: dict[str, Any], curves: dict[str, Any], excerpt: list[dict[str, Any]]
) -> str:
    """The whole report as one HTML document (inline CSS and SVG, nothing fetched)."""
    passed = sum(o.ok for o in run.outcomes)
    intro = join(
        [
            tag("h1", "Safe Setting: users come to the data"),
            para(
                "A working model of a trusted research environment for England's National Pupil "
                "Database. Researchers send questions to the data; only answers with built-in "
                "uncertainty come back. No row, name or pupil number ever leaves.",
                cls="lede",
            ),
            tag(
                "div",
                para(
                    "Every pupil in this demo is invented (synthetic data). That is the only "
                    "reason this report can show true values beside released ones."
                ),
                cls="banner",
            ),
            para(
                f"{run.pupils:,} synthetic pupils · data version {run.data_version} · "
                f"{len(run.outcomes)} steps, {passed} as expected · demo ran in "
                f"{run.seconds:.1f} s",
                cls="small muted",
                id="run-facts",
            ),
        ]
    )
    return page(
        "Safe Setting demo report",
        intro,
        steps_section(run),
        gap_section(run),
        accuracy_section(curves),
        budget_section(summary),
        refusals_section(run),
        audit_section(run, excerpt, summary),
        footer="Generated by `safesetting demo`. One self-contained file: no scripts, no "
        "external requests. See also transparency.html, the public transparency report.",
    )


def write_demo_reports(run: DemoRun) -> tuple[Path, Path]:
    """Write ``report.html`` and ``transparency.html`` into the demo's output folder."""
    assert run.control is not None
    summary = transparency_summary(run.control)
    report = run.out / "report.html"
    report.write_text(
        render_demo_report(
            run, summary, accuracy_curves(engine_session(run.control)), audit_excerpt(run.control)
        ),
        encoding="utf-8",
    )
    public = run.out / "transparency.html"
    public.write_text(render_transparency(summary), encoding="utf-8")
    return report, public
