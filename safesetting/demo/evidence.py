"""What the demo report shows besides the steps: accuracy against ε (no data needed), the
audit log excerpt, budgets. Data only; :mod:`safesetting.report.demo_page` renders it."""

from __future__ import annotations

from typing import Any

from policies.epsilon import to_micro
from safesetting.engine.session import Prepared, Session
from safesetting.transparency import audit_excerpt

__all__ = ["accuracy_curves", "audit_excerpt"]

EPSILONS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
ACCURACY_QUERIES = (
    (
        "pupils per region (a pupil counts once)",
        "SELECT region, COUNT(*) FROM census WHERE academic_year = 2023 GROUP BY region",
    ),
    (
        "exclusions per category, all years (a pupil counts up to 20 times)",
        "SELECT category, COUNT(*) FROM exclusions GROUP BY category",
    ),
)


def accuracy_curves(session: Session, epsilons: tuple[float, ...] = EPSILONS) -> dict[str, Any]:
    """The 95 % error of typical counts at each ε, from OpenDP's accuracy functions via the
    engine session's ``estimate`` — the same numbers a dry run reports. No data is read."""
    series = []
    for name, sql in ACCURACY_QUERIES:
        prepared = session.prepare(sql)
        if not isinstance(prepared, Prepared):
            raise ValueError(f"the demo's accuracy query was refused: {sql}")
        widths = [
            session.estimate(prepared, to_micro(str(e))).expected[0].half_width or 0.0
            for e in epsilons
        ]
        series.append({"name": name, "sql": sql, "bound": prepared.bound, "half_widths": widths})
    return {"epsilons": list(epsilons), "series": series}
