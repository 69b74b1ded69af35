"""What the demo report shows besides the steps: accuracy against ε (no data needed), the
audit log excerpt, budgets. Data only; :mod:`safesetting.report.demo_page` renders it."""

from __future__ import annotations

from typing import Any

import audit
from policies.epsilon import to_micro
from safesetting.control import Control
from safesetting.engine.compile import compile_plan
from safesetting.engine.noise import expected_errors
from safesetting.engine.parse import parse_query
from safesetting.engine.plan import QueryPlan

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


def accuracy_curves(epsilons: tuple[float, ...] = EPSILONS) -> dict[str, Any]:
    """The 95 % error of typical counts at each ε, from OpenDP's accuracy functions via the
    engine's ``expected_errors`` — the same numbers a dry run reports. No data is read.

    >>> curves = accuracy_curves((0.5, 1.0))
    >>> [round(h, 1) for h in curves["series"][0]["half_widths"]]
    [6.4, 3.4]
    """
    series = []
    for name, sql in ACCURACY_QUERIES:
        plan = parse_query(sql)
        assert isinstance(plan, QueryPlan)
        compiled = compile_plan(plan)
        widths = [
            expected_errors(plan, compiled, to_micro(str(e)))[0].half_width or 0.0 for e in epsilons
        ]
        series.append(
            {"name": name, "sql": sql, "bound": compiled.bound.rows, "half_widths": widths}
        )
    return {"epsilons": list(epsilons), "series": series}


def audit_excerpt(control: Control, limit: int = 60) -> list[dict[str, Any]]:
    """The newest ``limit`` entries, oldest first, as shown in the report (no request body
    beyond the reason codes and ε: the full entries are in the log itself)."""
    with control.engine.connect() as conn:
        entries = audit.read_entries(conn, limit=limit, newest_first=True)
    return [
        {
            "seq": e.seq,
            "time": e.time,
            "actor": e.actor,
            "action": e.action,
            "project": e.project,
            "decision": e.decision,
            "reasons": list(dict.fromkeys(e.reasons)),
            "epsilon": e.epsilon_micro / 1_000_000,
            "leaf_hash": e.leaf_hash.hex(),
        }
        for e in sorted(entries, key=lambda e: e.seq)
    ]
