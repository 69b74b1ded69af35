"""The demo's accuracy curves come from the engine session's estimate, as a dry run's do."""

from __future__ import annotations

from safesetting.demo.evidence import accuracy_curves
from safesetting.engine.session import Session


def test_accuracy_curves_are_the_dry_run_figures(npd_small):
    curves = accuracy_curves(Session(npd_small), (0.5, 1.0))
    counts, exclusions = curves["series"]
    assert [round(h, 1) for h in counts["half_widths"]] == [6.4, 3.4]  # bound 1
    assert exclusions["bound"] == 20
    assert exclusions["half_widths"][0] > counts["half_widths"][0] * 10
