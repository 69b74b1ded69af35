"""The demo report and the public transparency report, as a person sees them in Chromium.

Checks that the charts render (SVG elements present with a real size), the text is there,
no request leaves the file (every request is recorded; anything but the file itself is
refused and fails the test), no script runs, and nothing about a pupil leaks: no UPN or
postcode-shaped string, no pupil's full name from the data, no ``pupil_id`` value, and no
true value in the public report.

The HTTP server's ``/`` page is covered in ``test_server_page_in_chromium.py``.
"""

from __future__ import annotations

import re

import duckdb
import pytest

from safesetting.demo import story
from safesetting.report.transparency_page import render_transparency
from safesetting.transparency import transparency_summary

UPN = re.compile(r"\b[A-Z]\d{11}[0-9A-Z]\b")
POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b")
FULL_NAME = re.compile(r"\b([A-Z][a-z]+(?:-[A-Z][a-z]+)?) ([A-Z][a-z]+(?:['-][A-Z]?[a-z]+)*)\b")
PUPIL_ID_VALUE = re.compile(r"pupil_id\W{1,4}\d")


@pytest.fixture(scope="module")
def demo(demo_run):
    return demo_run


@pytest.fixture(scope="module")
def pupil_names(demo):
    run = demo[0]
    con = duckdb.connect(str(run.control.home.database), read_only=True)
    try:
        rows = con.execute("SELECT forename, surname FROM pupils").fetchall()
    finally:
        con.close()
    names = {f"{f} {s}" for f, s in rows}
    matched = sum(bool(FULL_NAME.fullmatch(n)) for n in names)
    assert matched > 0.95 * len(names)  # the name check can see (nearly) all of them
    return names


def assert_offline_and_inert(v):
    assert v.requests == [v.uri]  # the file itself, nothing else
    assert v.page.locator("script").count() == 0
    assert v.console_errors == []


def assert_nothing_leaks(v, pupil_names):
    # Visible text and the markup (attributes, SVG titles) alike.
    for text in (v.text, v.html):
        assert not UPN.search(text), UPN.search(text)
        assert not PUPIL_ID_VALUE.search(text)
        names = {m.group(0) for m in FULL_NAME.finditer(text)}
        assert names & pupil_names == set()
    # Postcodes: the visible text only (base64 keys in the markup are not text people read).
    assert not POSTCODE.search(v.text), POSTCODE.search(v.text)


def svg_box(v, selector):
    svg = v.page.locator(f"{selector} svg")
    assert svg.count() == 1
    box = svg.bounding_box()
    assert box is not None
    assert box["width"] > 200
    assert box["height"] > 100
    return svg


def test_demo_report_charts_render(demo, visit):
    run, report, _public = demo
    v = visit(report)
    gap = svg_box(v, "#figure-gap")
    released = gap.locator("circle.released-point")
    truth = gap.locator("path.true-point")
    gap_rows = next(o for o in run.outcomes if o.step.key == "release-gap").results[0]["rows"]
    assert released.count() == sum(r[2] is not None for r in gap_rows)
    assert released.count() >= 12
    assert truth.count() == 18
    for i in range(released.count()):
        box = released.nth(i).bounding_box()
        assert box["width"] > 0
        assert box["height"] > 0
    acc = svg_box(v, "#figure-accuracy")
    assert acc.locator("polyline.series-line").count() == 2
    budget = svg_box(v, "#figure-budget")
    assert budget.locator("rect.spent-bar").count() == 3
    assert_offline_and_inert(v)


def test_demo_report_tells_every_step_and_explains_each_chart(demo, visit):
    _run, report, _public = demo
    v = visit(report)
    text = v.text
    for step in story.STEPS:
        assert step.title in text
        assert v.page.locator(f"#step-{step.key}").is_visible()
    for code in ("purpose_refused", "select_star", "direct_identifier", "column_not_approved",
                 "budget_exhausted"):  # fmt: skip
        assert code in text
    for figure in ("#figure-gap", "#figure-accuracy", "#figure-budget"):
        assert len(v.page.inner_text(f"{figure} .explain")) > 150
    assert "true values (synthetic demo only)" in text
    assert "All " in text
    assert "entries intact" in text
    assert "Tampering detected" in text
    assert v.page.inner_text("#checkpoint").startswith("safesetting.example/npd-audit\n")
    assert len(v.page.locator("#step-optout").inner_text()) > 50


def test_demo_report_leaks_nothing(demo, visit, pupil_names):
    _run, report, _public = demo
    v = visit(report)
    assert_nothing_leaks(v, pupil_names)
    assert "·" in v.page.inner_text("#step-optout")  # the UPN is shown masked


def test_transparency_report_renders_and_leaks_nothing(demo, visit, pupil_names):
    run, _report, public = demo
    v = visit(public)
    chart = svg_box(v, "#figure-privacy")
    assert chart.locator("rect.spent-bar").count() == 3
    text = v.text
    for expected in ("fsm-gap", "exclusions", "UCL Institute of Education", "charity",
                     "immigration_enforcement", "purpose_refused"):  # fmt: skip
        assert expected in text
    assert v.page.inner_text("#privacy-loss").startswith("ε = 4")
    assert v.page.inner_text("#checkpoint").startswith("safesetting.example/npd-audit\n")
    assert_offline_and_inert(v)
    assert_nothing_leaks(v, pupil_names)
    # No true value and no released value: the public page holds neither.
    shown = set(re.findall(r"\d+\.\d+", text))
    for o in run.outcomes:
        for truth in o.truth:
            for row in truth.rows:
                for value in row:
                    if isinstance(value, float) and not value.is_integer():
                        assert f"{value:.3g}" not in shown
                        assert f"{value:.4f}" not in shown


def test_injected_markup_in_a_project_title_stays_text(demo, visit, tmp_path):
    run = demo[0]
    summary = transparency_summary(run.control)
    summary["projects"][0]["title"] = (
        "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned = 2'>"
    )
    path = tmp_path / "evil.html"
    path.write_text(render_transparency(summary), encoding="utf-8")
    v = visit(path)
    assert v.page.evaluate("window.__pwned === undefined")
    assert v.page.locator("img").count() == 0
    assert "<script>window.__pwned = 1</script>" in v.text  # shown, as text
    assert_offline_and_inert(v)


def test_the_leak_checks_catch_a_leak(demo, visit, pupil_names, tmp_path):
    """The checks above can fail: a page with a pupil's name, UPN or id in it is caught."""
    _run, report, _public = demo
    con = duckdb.connect(str(demo[0].control.home.database), read_only=True)
    try:
        pid, upn, name = con.execute(
            "SELECT pupil_id, upn, forename || ' ' || surname FROM pupils LIMIT 1"
        ).fetchall()[0]
    finally:
        con.close()
    for leak in (name, upn, f"pupil_id = {pid}"):
        path = tmp_path / "leaky.html"
        path.write_text(report.read_text().replace("</main>", f"<p>{leak}</p></main>"))
        with pytest.raises(AssertionError):
            assert_nothing_leaks(visit(path), pupil_names)
