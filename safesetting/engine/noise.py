"""Differentially private release with OpenDP, and the output rules as post-processing.

Every released number comes from an OpenDP measurement calibrated (by binary search) so that
its privacy map at the query's sensitivity is at most its share of ε; the shares sum to at
most the ε charged. Counts and sums use the discrete Laplace mechanism on the vector of all
groups at once (the groups are disjoint, so one pupil moves the vector by at most
``sensitivity()`` in L1); real values are counted in integer units, so no floating-point
noise is used. Medians and quantiles use OpenDP's exponential-mechanism quantile over
catalogue candidates, one per group, each calibrated at the contribution bound in symmetric
distance: its privacy map is linear in the distance, so a pupil whose ``k_g`` rows fall in
group ``g`` (``Σ k_g ≤ bound``) loses at most ``Σ (k_g / bound) · share ≤ share``.

``gather()`` is the one place the sandbox's rows become the vectors fed to OpenDP;
``sensitivity()`` the one place their calibration comes from. The neighbour harness
(``tests/property/test_neighbours.py``) checks the first against the second on random data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import opendp.prelude as dp

from policies.epsilon import format_epsilon
from safesetting.engine.compile import CompiledQuery
from safesetting.engine.output import Noisy, Released, present, round_up
from safesetting.engine.plan import Aggregate, QueryPlan
from safesetting.errors import SafeSettingError, UsageError

dp.enable_features("contrib")

ALPHA = 0.05  # error bounds are 95 % half-widths
MICRO = 1_000_000
MAX_QUANTILE_CANDIDATES = 201
TRUE_LIMIT = 2**62  # true sums are held within ±2^62 (1-Lipschitz: sensitivity unchanged)
QUANTILE_MARGIN = 1e-9  # relative: covers float rounding when per-group losses are summed

_COUNT_SPACE = (dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64"))

Part = tuple[int, str]  # (aggregate index, "value" | "count" | "values")


class PrivacyError(SafeSettingError):
    """A measurement's privacy map exceeds its share of ε: never released (an incident)."""


def mechanism_count(plan: QueryPlan) -> int:
    """How many OpenDP measurements the query needs (AVG needs two: a sum and a count)."""
    return sum(2 if a.func == "avg" else 1 for a in plan.aggregates)


def epsilon_share(plan: QueryPlan, epsilon_micro: int) -> float:
    """Each measurement's ε: an equal split, rounded down to whole micro-ε so shares never
    add up to more than the ε charged."""
    return (epsilon_micro // mechanism_count(plan)) / MICRO


def sensitivity(agg: Aggregate, part: str, bound: int, n_groups: int) -> int:
    """The most one pupil can move this part's group vector: L1 in integer units for the
    Laplace parts, symmetric distance summed over groups for quantile values.

    ``bound`` is the contribution bound (rows per pupil after joins, filters and
    truncation); each row falls in one group.

    >>> from safesetting.engine.plan import Aggregate
    >>> sensitivity(Aggregate("sum", "s", None, 80, 120), "value", 3, 10)
    360
    >>> sensitivity(Aggregate("count_distinct", "n"), "value", 20, 3)
    3
    """
    if agg.func == "count_distinct":
        return max(1, min(bound, n_groups))
    if agg.func == "count" or part in ("count", "values"):
        return bound
    units = max(abs(agg.lower), abs(agg.upper)) / agg.resolution
    return bound * max(1, math.ceil(units))


def gather(plan: QueryPlan, compiled: CompiledQuery, true_rows: list[tuple]) -> dict[Part, list]:
    """The sandbox's rows as one vector per part over the full public domain, empty groups
    as zeros; rows whose key is outside the domain (a NULL key, say) are dropped. Quantile
    parts hold each group's list of (non-NULL) values."""
    groups = plan.groups()
    index = {g: i for i, g in enumerate(groups)}
    n, k = len(groups), compiled.key_count
    vectors: dict[Part, list] = {
        part: [0] * n if part[1] != "values" else [[] for _ in range(n)]
        for part in compiled.agg_columns
    }
    for row in true_rows:
        i = index.get(tuple(row[:k]))
        if i is None:
            continue  # a value outside the public domain: never released
        for j, part in enumerate(compiled.agg_columns):
            value = row[k + j]
            if value is None:
                continue
            if part[1] == "values":
                vectors[part][i] = [float(v) for v in value if v is not None]
            else:
                vectors[part][i] = max(-TRUE_LIMIT, min(TRUE_LIMIT, int(value)))
    return vectors


@lru_cache(maxsize=4096)
def _laplace_scale(d_in: int, epsilon: float) -> float:
    return float(
        dp.binary_search_param(
            lambda s: dp.m.make_laplace(*_COUNT_SPACE, scale=s), d_in=d_in, d_out=epsilon
        )
    )


def _laplace(values: np.ndarray, d_in: int, epsilon: float) -> tuple[np.ndarray, float, float]:
    """Noisy integer vector, its 95 % half-width and the scale."""
    scale = _laplace_scale(d_in, epsilon)
    meas = dp.m.make_laplace(*_COUNT_SPACE, scale=scale)
    check_map(meas.map(d_in), epsilon)
    noisy = np.asarray(meas(values.astype(np.int64)), dtype=np.int64)
    return noisy, round_up(dp.discrete_laplacian_scale_to_accuracy(scale, ALPHA)), scale


def check_map(loss: float, epsilon: float) -> None:
    """The calibration guarantee, checked on every release (a real check, not an assert:
    it must hold under ``python -O`` too)."""
    if not loss <= epsilon:
        raise PrivacyError("a measurement's privacy loss exceeds its share of epsilon")


def _alpha(agg: Aggregate) -> float:
    """The quantile asked for (the parser sets it for every MEDIAN and QUANTILE_CONT)."""
    if agg.quantile is None:
        raise ValueError(f"{agg.label} is not a quantile")
    return agg.quantile


def _candidates(agg: Aggregate) -> list[float]:
    """The values a quantile may be released as: the public grid of its bounds (whole
    numbers, or halves for real values), at most 201 of them.

    >>> from safesetting.engine.plan import Aggregate
    >>> _candidates(Aggregate("quantile", "q", None, 80, 84, 1.0, 0.5))
    [80.0, 81.0, 82.0, 83.0, 84.0]
    >>> _candidates(Aggregate("quantile", "q", None, 0, 1.5, 0.01, 0.5))
    [0.0, 0.5, 1.0, 1.5]
    """
    lo, hi = agg.lower, agg.upper
    step = 1.0 if agg.resolution >= 1 else 0.5
    n = int((hi - lo) / step) + 1
    if n > MAX_QUANTILE_CANDIDATES:
        return [float(x) for x in np.linspace(lo, hi, MAX_QUANTILE_CANDIDATES)]
    return [lo + i * step for i in range(n)]


@lru_cache(maxsize=1024)
def _quantile_meas(cands: tuple[float, ...], q: float, d_in: int, epsilon: float):
    dom = dp.vector_domain(dp.atom_domain(T=float, nan=False))
    met = dp.symmetric_distance()

    def make(s: float):
        return dp.m.make_private_quantile(
            dom, met, dp.max_divergence(), candidates=list(cands), alpha=q, scale=s
        )

    target = epsilon * (1 - QUANTILE_MARGIN)
    scale = dp.binary_search_param(make, d_in=d_in, d_out=target)
    meas = make(scale)
    check_map(meas.map(d_in), target)
    return meas, float(scale)


@dataclass(frozen=True)
class Expected:
    """What a dry run reports: cost and each aggregate's error, without touching data."""

    label: str
    mechanism: str
    scale: float
    half_width: float | None  # None where the error depends on the group size (AVG)


def expected_errors(plan: QueryPlan, compiled: CompiledQuery, epsilon_micro: int) -> list[Expected]:
    """Per-aggregate error at this ε and contribution bound (data-independent).

    Calibrates every measurement the release will use, so an ε too small to calibrate is
    unusable input here, before anything is charged.
    """
    n_measures = mechanism_count(plan)
    if epsilon_micro // n_measures < 1:
        raise UsageError(
            f"epsilon {format_epsilon(epsilon_micro)} is too small: this query makes "
            f"{n_measures} measurements, each needing at least 0.000001 "
            f"(ask for at least {format_epsilon(n_measures)})"
        )
    eps = epsilon_share(plan, epsilon_micro)
    n_groups = len(plan.groups())
    bound = compiled.bound.rows
    out = []
    try:
        for agg in plan.aggregates:
            if agg.func == "quantile":
                _m, scale = _quantile_meas(tuple(_candidates(agg)), _alpha(agg), bound, eps)
                out.append(Expected(agg.label, "exponential (quantile)", scale, None))
                continue
            scale = _laplace_scale(sensitivity(agg, "value", bound, n_groups), eps)
            half = dp.discrete_laplacian_scale_to_accuracy(scale, ALPHA) * agg.resolution
            out.append(
                Expected(
                    agg.label,
                    "discrete Laplace",
                    scale * agg.resolution,
                    None if agg.func == "avg" else float(half),
                )
            )
    except dp.OpenDPException:
        raise UsageError(
            f"epsilon {format_epsilon(epsilon_micro)} is too small to calibrate this query's "
            "noise: ask for more"
        ) from None
    return out


def release(
    plan: QueryPlan,
    compiled: CompiledQuery,
    true_rows: list[tuple],
    epsilon_micro: int,
    min_cell_count: int,
) -> Released:
    """Add OpenDP noise to the true aggregates, then apply the output rules.

    ``true_rows`` are the sandbox's rows; they are read here and dropped, never returned.
    """
    return present(plan, measure(plan, compiled, true_rows, epsilon_micro), min_cell_count,
                   compiled.bound.rows)  # fmt: skip


def measure(
    plan: QueryPlan, compiled: CompiledQuery, true_rows: list[tuple], epsilon_micro: int
) -> list[Noisy]:
    """One OpenDP measurement per part, each calibrated at ``sensitivity()`` with its share
    of ε. What comes back is noisy; the true vectors end here."""
    n = len(plan.groups())
    bound = compiled.bound.rows
    eps = epsilon_share(plan, epsilon_micro)
    vectors = gather(plan, compiled, true_rows)
    out: list[Noisy] = []
    for a, agg in enumerate(plan.aggregates):
        if agg.func == "quantile":
            cands = _candidates(agg)
            meas, scale = _quantile_meas(tuple(cands), _alpha(agg), bound, eps)
            chosen = [float(meas(np.asarray(v, dtype=float))) for v in vectors[(a, "values")]]
            rank = quantile_rank_error(scale, len(cands))
            out.append(Noisy(agg, chosen, None, rank_error=rank, candidates=len(cands)))
            continue
        d_in = sensitivity(agg, "value", bound, n)
        noisy, half, _ = _laplace(np.asarray(vectors[(a, "value")], dtype=np.int64), d_in, eps)
        if agg.func != "avg":
            out.append(Noisy(agg, [int(x) for x in noisy], half))
            continue
        counts, c_half, _ = _laplace(
            np.asarray(vectors[(a, "count")], dtype=np.int64),
            sensitivity(agg, "count", bound, n),
            eps,
        )
        out.append(Noisy(agg, [int(x) for x in noisy], half, [int(c) for c in counts], c_half))
    del vectors
    return out


def quantile_rank_error(scale: float, n_candidates: int) -> int:
    """Selection error of the exponential mechanism at 95 %: with probability at least
    1 - α the chosen candidate's score is within ``scale · ln(|C| / α)`` of the best, and a
    score unit here is one record's worth of rank.

    >>> quantile_rank_error(2.0, 91)
    16
    """
    return math.ceil(scale * math.log(n_candidates / ALPHA))
