"""Hand-built SVG charts: well-formed XML, escaped labels, points where the values are."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from safesetting.report.charts import Series, budget_chart, dot_whisker_chart, line_chart

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # noqa: S314 - our own output


def test_dot_whisker_places_points_in_value_order_and_escapes_labels():
    svg = parse(
        dot_whisker_chart(
            "Title <b>", ["A & B", "<C>"], [Series("s", [0.2, 0.8], [0.1, 0.05], [0.25, 0.7])],
            "x", (0.0, 1.0),
        )
    )  # fmt: skip
    points = [c for c in svg.iter(f"{SVG}circle") if c.get("class") == "released-point"]
    xs = [float(c.get("cx")) for c in points]
    assert len(xs) == 2
    assert xs[0] < xs[1]
    labels = [t.text for t in svg.iter(f"{SVG}text")]
    assert "A & B" in labels
    assert "<C>" in labels
    assert svg.find(f"{SVG}title").text == "Title <b>"
    assert sum(1 for p in svg.iter(f"{SVG}path") if p.get("class") == "true-point") == 2


def test_suppressed_values_are_not_drawn():
    svg = parse(dot_whisker_chart("t", ["a", "b"], [Series("s", [None, 0.5], [None, 0.1])], "x"))
    assert sum(1 for c in svg.iter(f"{SVG}circle") if c.get("class") == "released-point") == 1


def test_line_chart_log_scale_orders_points():
    svg = parse(line_chart("t", [0.1, 1.0], [("a", [100.0, 10.0])], "x", "y", log_y=True))
    [line] = [p for p in svg.iter(f"{SVG}polyline")]
    (x1, y1), (x2, y2) = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
    assert x1 < x2
    assert y1 < y2  # larger error drawn higher up (smaller y)


def test_budget_chart_bar_widths_follow_the_share_spent():
    svg = parse(budget_chart("t", [("half", 1.0, 2.0), ("all", 3.0, 3.0)]))
    bars = [float(r.get("width")) for r in svg.iter(f"{SVG}rect") if r.get("class") == "spent-bar"]
    assert abs(bars[1] - 2 * bars[0]) < 1.0
