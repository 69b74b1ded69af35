"""Aggregates as measurements: one class per kind, each owning everything about it.

A measure knows the SQL parts its aggregate needs from the data plane (``sql_parts``), how
far one pupil can move each part (``sensitivity``), the OpenDP measurement that adds the
noise (``measure``), the error it expects before anything is read (``expected``), how the
noisy parts become the released column (``present``) and, for the demo only, the true value
the same parts give without noise (``truth``). Nothing else in the engine asks what kind an
aggregate is: a new aggregate is one new class here, registered in ``MEASURES``.

The plan names a measure by ``Aggregate.func`` (``count``, ``count_distinct``, ``sum``,
``avg``, ``quantile``); those names are part of the plan's document (``plan.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
from sqlglot import exp

from safesetting.engine import mechanisms as mech
from safesetting.engine.output import Noisy, ratio, round_up, unit_value

if TYPE_CHECKING:
    from safesetting.engine.plan import Aggregate

TRUE_LIMIT = 2**62  # true sums are held within ±2^62 (1-Lipschitz: sensitivity unchanged)


@dataclass(frozen=True)
class Expected:
    """What a dry run reports: cost and each aggregate's error, without touching data."""

    label: str
    mechanism: str
    scale: float
    half_width: float | None  # None where the error depends on the group size (AVG)


@dataclass(frozen=True)
class Presented:
    """One released column over every group, before suppression: values, 95 % half-widths,
    the noisy counts that decide suppression (if this aggregate has one) and a note."""

    values: list
    errors: list[float | None]
    counts: list[int] | None = None
    note: str | None = None


class SqlContext(Protocol):
    """What the compiler gives a measure to build its SQL parts with."""

    def column(self, e: exp.Expression) -> exp.Expression:
        """``e`` with the plan's node-qualified columns renamed to the bounded rows'."""

    def bounded(self, agg: Aggregate) -> exp.Expression:
        """The aggregate's argument as the engine reads it: clamped to its bounds."""


class Measure:
    """One aggregate kind. Subclasses set ``name`` and ``parts`` and implement the rest."""

    name: ClassVar[str]
    parts: ClassVar[tuple[str, ...]] = ("value",)
    mechanism: ClassVar[str] = "discrete Laplace"

    # -- the researcher's side ----------------------------------------------------------------
    def source(self, doc: Mapping[str, object]) -> str:
        """SQL a researcher could write for this aggregate (``doc``: ``Aggregate.to_doc``),
        which the parser turns back into the same aggregate (``plan.from_doc``)."""
        return f"{self.sql_name}({doc['arg']})"

    sql_name: ClassVar[str] = ""

    # -- the data plane's side ---------------------------------------------------------------
    def sql_parts(self, agg: Aggregate, ctx: SqlContext) -> list[exp.Expression]:
        """One aggregate expression per part, in ``parts`` order."""
        raise NotImplementedError

    def zero(self, part: str) -> object:  # noqa: ARG002 - lists override
        """A part's value in a group the data plane returned no row for."""
        return 0

    def collect(self, part: str, value: object) -> object:  # noqa: ARG002 - lists override
        """A part's value as the plane returned it, as OpenDP is fed it."""
        return max(-TRUE_LIMIT, min(TRUE_LIMIT, int(value)))  # type: ignore[call-overload]

    def combine(self, part: str, a: object, b: object) -> object:  # noqa: ARG002
        """One group's part from two passes over disjoint sets of pupils (a sliced
        query): counts and sums add (a pupil is counted in one pass only)."""
        if a is None or b is None:
            return b if a is None else a
        return a + b  # type: ignore[operator]

    # -- privacy ---------------------------------------------------------------------------
    def sensitivity(self, agg: Aggregate, part: str, bound: int, n_groups: int) -> int:
        """The most one pupil can move this part's group vector (L1 in integer units for
        the Laplace parts, symmetric distance summed over groups for quantile values).
        ``bound`` is the contribution bound: rows per pupil, each in one group."""
        raise NotImplementedError

    def measure(
        self, agg: Aggregate, vectors: Mapping[str, list], bound: int, n_groups: int, eps: float
    ) -> Noisy:
        """Noise every part with its share ``eps``; the true vectors end here."""
        d_in = self.sensitivity(agg, "value", bound, n_groups)
        noisy, half, _ = mech.laplace(np.asarray(vectors["value"], dtype=np.int64), d_in, eps)
        return Noisy(agg, [int(x) for x in noisy], half)

    def expected(self, agg: Aggregate, bound: int, n_groups: int, eps: float) -> Expected:
        scale = mech.laplace_scale(self.sensitivity(agg, "value", bound, n_groups), eps)
        half = mech.dp.discrete_laplacian_scale_to_accuracy(scale, mech.ALPHA) * agg.resolution
        return Expected(agg.label, self.mechanism, scale * agg.resolution, float(half))

    # -- output ----------------------------------------------------------------------------
    def present(self, noisy: Noisy, n_groups: int) -> Presented:
        raise NotImplementedError

    def truth(self, agg: Aggregate, parts: Mapping[str, object]) -> object:
        """The exact value the parts give (the demo's comparison only)."""
        raise NotImplementedError


class Count(Measure):
    """``COUNT(*)`` or ``COUNT(column)``: one row, one unit."""

    name = "count"

    def source(self, doc):
        return f"COUNT({doc['arg'] or '*'})"

    def sql_parts(self, agg, ctx):
        return [exp.Count(this=ctx.column(agg.arg) if agg.arg is not None else exp.Star())]

    def sensitivity(self, agg, part, bound, n_groups):  # noqa: ARG002
        return bound

    def present(self, noisy, n_groups):
        counts = [max(0, v) for v in noisy.values]
        return Presented(counts, [noisy.half] * n_groups, counts)

    def truth(self, agg, parts):  # noqa: ARG002
        return int(parts.get("value") or 0)  # type: ignore[call-overload]


class CountDistinct(Count):
    """``COUNT(DISTINCT pupil_id)``: a pupil counts once in each group it appears in."""

    name = "count_distinct"

    def source(self, doc):
        return f"COUNT(DISTINCT {doc['arg']})"

    def sql_parts(self, agg, ctx):
        return [exp.Count(this=exp.Distinct(expressions=[ctx.column(agg.arg)]))]

    def sensitivity(self, agg, part, bound, n_groups):  # noqa: ARG002
        return max(1, min(bound, n_groups))


class Sum(Measure):
    """``SUM(x)``, counted in integer units of the argument's resolution (hundredths for
    real values), so the noise is the discrete Laplace and ε stays exact."""

    name = "sum"
    sql_name = "SUM"

    def sql_parts(self, agg, ctx):
        return [exp.Sum(this=units(ctx.bounded(agg), agg.resolution))]

    def sensitivity(self, agg, part, bound, n_groups):  # noqa: ARG002
        per_row = max(abs(agg.lower), abs(agg.upper)) / agg.resolution
        return bound * max(1, math.ceil(per_row))

    def present(self, noisy, n_groups):
        """The noisy sums, clamped to the sign their bounds imply (a sum of values that are
        never negative is never negative: post-processing, it costs no privacy)."""
        agg = noisy.agg
        half = round_up(noisy.half * agg.resolution)  # type: ignore[operator]
        low = 0 if agg.lower >= 0 else None  # type: ignore[operator]
        high = 0 if agg.upper <= 0 else None  # type: ignore[operator]
        values = [
            _within(unit_value(v, agg.resolution), low, high) for v in noisy.values
        ]  # fmt: skip
        return Presented(values, [half] * n_groups)

    def truth(self, agg, parts):
        return (parts.get("value") or 0) * agg.resolution  # type: ignore[operator]


class Mean(Sum):
    """``AVG(x)`` as a noisy sum over a noisy count (two measurements, ε split)."""

    name = "avg"
    sql_name = "AVG"
    parts = ("value", "count")

    def sql_parts(self, agg, ctx):
        value = ctx.bounded(agg)
        return [exp.Sum(this=units(value, agg.resolution)), exp.Count(this=value.copy())]

    def sensitivity(self, agg, part, bound, n_groups):
        return bound if part == "count" else super().sensitivity(agg, part, bound, n_groups)

    def measure(self, agg, vectors, bound, n_groups, eps):
        sums = super().measure(agg, vectors, bound, n_groups, eps)
        d_in = self.sensitivity(agg, "count", bound, n_groups)
        counts, c_half, _ = mech.laplace(np.asarray(vectors["count"], dtype=np.int64), d_in, eps)
        return Noisy(agg, sums.values, sums.half, [int(c) for c in counts], c_half)

    def expected(self, agg, bound, n_groups, eps):
        e = super().expected(agg, bound, n_groups, eps)
        return Expected(e.label, e.mechanism, e.scale, None)  # depends on the group's size

    def present(self, noisy, n_groups):  # noqa: ARG002
        agg, res = noisy.agg, noisy.agg.resolution
        pairs = [
            ratio(s * res, noisy.half * res, c, noisy.count_half, agg)  # type: ignore[operator,arg-type]
            for s, c in zip(noisy.values, noisy.counts, strict=True)  # type: ignore[arg-type]
        ]
        counts = [max(0, c) for c in noisy.counts]  # type: ignore[union-attr]
        return Presented([v for v, _e in pairs], [e for _v, e in pairs], counts)

    def truth(self, agg, parts):
        count = parts.get("count") or 0
        return (parts.get("value") or 0) * agg.resolution / count if count else None  # type: ignore[operator]


class Quantile(Measure):
    """``MEDIAN(x)`` and ``QUANTILE_CONT(x, q)``: OpenDP's exponential-mechanism quantile
    over the public grid of the argument's bounds, one choice per group. Each group's
    measurement is calibrated at the contribution bound in symmetric distance; its privacy
    map is linear in the distance, so a pupil whose ``k_g`` rows fall in group ``g``
    (``Σ k_g ≤ bound``) loses at most ``Σ (k_g / bound) · share ≤ share``."""

    name = "quantile"
    parts = ("values",)
    mechanism = "exponential (quantile)"

    def source(self, doc):
        return f"QUANTILE_CONT({doc['arg']}, {float(doc['quantile'])!r})"  # type: ignore[arg-type]

    def sql_parts(self, agg, ctx):
        return [exp.func("list", ctx.bounded(agg))]

    def zero(self, part):  # noqa: ARG002
        return np.empty(0)

    def collect(self, part, value):  # noqa: ARG002
        """The group's values as a float array, NULL arguments left out (clamped values are
        never NaN, so a NaN here is a NULL the plane passed as one)."""
        if value is None:
            return np.empty(0)
        values = np.array(value, dtype=float)  # a copy OpenDP may read (not read-only)
        return values[~np.isnan(values)]

    def combine(self, part, a, b):  # noqa: ARG002 - the values of both passes
        return np.concatenate([self.collect(part, a), self.collect(part, b)])

    def sensitivity(self, agg, part, bound, n_groups):  # noqa: ARG002
        return bound

    def _meas(self, agg, bound, eps):
        cands = tuple(mech.candidates(agg.lower, agg.upper, agg.resolution))
        meas, scale = mech.quantile_meas(cands, self.alpha(agg), bound, eps)
        return meas, scale, len(cands)

    def measure(self, agg, vectors, bound, n_groups, eps):  # noqa: ARG002
        meas, scale, n_cands = self._meas(agg, bound, eps)
        chosen = [float(meas(np.asarray(v, dtype=float))) for v in vectors["values"]]
        rank = mech.quantile_rank_error(scale, n_cands)
        return Noisy(agg, chosen, None, rank_error=rank, candidates=n_cands)

    def expected(self, agg, bound, n_groups, eps):  # noqa: ARG002
        _meas, scale, _n = self._meas(agg, bound, eps)
        return Expected(agg.label, self.mechanism, scale, None)

    def present(self, noisy, n_groups):
        note = (
            f"{noisy.agg.label}: chosen by OpenDP's exponential mechanism among "
            f"{noisy.candidates} catalogue candidates; 95 % of the time its rank is within "
            f"about ±{noisy.rank_error} pupils of the true quantile's "
            "(a rank bound: the value error depends on the data, so none is shown)"
        )
        return Presented(list(noisy.values), [None] * n_groups, None, note)

    def truth(self, agg, parts):
        values = parts.get("values")
        if values is None or len(values) == 0:  # type: ignore[arg-type]
            return None
        # QUANTILE_CONT's definition: linear interpolation between the closest ranks.
        return float(np.quantile(np.asarray(values, dtype=float), self.alpha(agg)))

    @staticmethod
    def alpha(agg: Aggregate) -> float:
        """The quantile asked for (the parser sets it for every MEDIAN and QUANTILE_CONT)."""
        if agg.quantile is None:
            raise ValueError(f"{agg.label} is not a quantile")
        return agg.quantile


def _within(value: float | int, low: int | None, high: int | None) -> float | int:
    """``value`` clamped to ``[low, high]`` where given (its type kept).

    >>> _within(-3915, 0, None), _within(12.5, 0, None), _within(4, None, 0)
    (0, 12.5, 0)
    """
    if low is not None and value < low:
        return type(value)(low)
    if high is not None and value > high:
        return type(value)(high)
    return value


def units(value: exp.Expression, resolution: float) -> exp.Expression:
    """A bounded value in whole counting units (``round(x * 100)`` for hundredths): no
    division anywhere, so the SQL cannot fail."""
    scaled = value
    if resolution != 1.0:
        scaled = exp.Mul(this=value, expression=exp.Literal.number(round(1 / resolution)))
    return exp.Cast(this=exp.func("round", scaled), to=exp.DataType.build("BIGINT"))


MEASURES: dict[str, Measure] = {m.name: m for m in (Count(), CountDistinct(), Sum(), Mean(),
                                                     Quantile())}  # fmt: skip
