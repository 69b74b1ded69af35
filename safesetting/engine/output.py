"""The output rules: what the noisy measurements become in the released table.

Everything here is post-processing of OpenDP's noisy values (it never sees a true value),
so it costs no privacy: counts are floored at 0, sums rounded to their unit, averages taken
as noisy sum / noisy count and held within their bounds, error bounds rounded *up*, and a
group whose noisy count is under ``min_cell_count`` is released as ``null`` (suppression
decided on the noisy count, never on the true one, which would be a side channel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from safesetting.engine.mechanisms import round_up

if TYPE_CHECKING:
    from safesetting.engine.plan import Aggregate, QueryPlan

__all__ = ["Noisy", "Released", "present", "ratio", "round_up", "unit_value"]


@dataclass(frozen=True)
class Noisy:
    """One aggregate's noisy measurement over every group: what ``noise.measure`` returns.

    ``values`` are noisy integer units (counts, sums, an average's sum) or chosen quantile
    candidates; ``half`` their 95 % half-width in units; an average also has its noisy
    ``counts`` and their half-width; a quantile its rank error and candidate count.
    """

    agg: Aggregate
    values: list
    half: float | None
    counts: list[int] | None = None
    count_half: float | None = None
    rank_error: int | None = None
    candidates: int | None = None


@dataclass(frozen=True)
class Released:
    """What leaves the engine: labelled noisy rows and their 95 % half-widths."""

    columns: list[str]
    rows: list[list[object]]
    errors: list[list[float | None]]
    suppressed: int
    bound: int
    notes: list[str]
    kinds: list[str] = field(default_factory=list)  # per column: "key" or "aggregate"


def present(plan: QueryPlan, measured: list[Noisy], min_cell_count: int, bound: int) -> Released:
    """The released table: every group of the public domain, keys then aggregates in SELECT
    order, small noisy counts suppressed.

    Each aggregate's measure presents its own column; the first with noisy counts (COUNT,
    COUNT DISTINCT, or an AVG's count) decides suppression, and a query without one (a SUM
    or a quantile alone) is not suppressed.
    """
    n = len(plan.groups())
    columns = [m.agg.measure.present(m, n) for m in measured]
    rule = next((c.counts for c in columns if c.counts is not None), None)
    notes = [c.note for c in columns if c.note]
    rows: list[list[object]] = []
    errs_out: list[list[float | None]] = []
    suppressed = 0
    for i, group in enumerate(plan.groups()):
        small = rule is not None and rule[i] < min_cell_count
        suppressed += small
        rows.append([group[j] if kind == "key" else None if small else columns[j].values[i]
                     for kind, j in plan.output])  # fmt: skip
        errs_out.append([None if kind == "key" or small else columns[j].errors[i]
                         for kind, j in plan.output])  # fmt: skip
    if suppressed:
        notes.append(f"{suppressed} group(s) with a noisy count under {min_cell_count} suppressed")
    kinds = ["key" if kind == "key" else "aggregate" for kind, _j in plan.output]
    return Released(plan.labels, rows, errs_out, suppressed, bound, notes, kinds)


def ratio(
    s: float, s_half: float, c: int, c_half: float, agg: Aggregate
) -> tuple[float | None, float | None]:
    """AVG as noisy sum / noisy count, clamped to the bounds; the half-width covers the
    worst case of both errors (each at 95 %, so the bound is conservative).

    >>> from safesetting.engine.plan import Aggregate
    >>> ratio(1000.0, 50.0, 10, 5.0, Aggregate("avg", "a", None, 0, 200))
    (100.0, 100.0)
    >>> ratio(1000.0, 50.0, 0, 5.0, Aggregate("avg", "a", None, 0, 200))
    (None, None)
    """
    if c <= 0:
        return None, None
    avg = min(max(s / c, agg.lower), agg.upper)
    lo_c, hi_c = c + c_half, c - c_half
    lo = (s - s_half) / lo_c
    hi = (s + s_half) / hi_c if hi_c > 0 else agg.upper
    lo, hi = max(lo, agg.lower), min(hi, agg.upper)
    return round(avg, 4), round_up(max(avg - lo, hi - avg, 0.0))


def unit_value(units: int, resolution: float) -> float | int:
    """A noisy sum in its counting units, back in the column's own units.

    >>> unit_value(4_600_123, 0.01), unit_value(17, 1.0)
    (46001.23, 17)
    """
    if resolution >= 1:
        return int(round(units * resolution))
    return round(units * resolution, max(0, -int(math.floor(math.log10(resolution)))))
