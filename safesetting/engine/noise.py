"""Differentially private release: the plane's rows become vectors, OpenDP adds the noise.

Every released number comes from an OpenDP measurement (``mechanisms.py``) calibrated so
that its privacy map at the query's sensitivity is at most its share of ε; the shares sum
to at most the ε charged (an equal split over the measurements, rounded down to whole
micro-ε). What each aggregate measures, at what sensitivity, is its measure class's
business (``measures.py``); this module only routes vectors to them.

``gather()`` is the one place the data plane's rows become the vectors fed to OpenDP;
``sensitivity()`` the one place their calibration comes from. The neighbour harness
(``tests/property/test_neighbours.py``) checks the first against the second on random data.
"""

from __future__ import annotations

from policies.epsilon import format_epsilon
from safesetting.engine.compile import CompiledQuery
from safesetting.engine.measures import Expected
from safesetting.engine.mechanisms import (
    MICRO,
    CalibrationError,
    PrivacyError,
    check_map,
    quantile_rank_error,
)
from safesetting.engine.output import Noisy, Released, present
from safesetting.engine.plan import Aggregate, QueryPlan
from safesetting.errors import UsageError

__all__ = [
    "Expected",
    "PrivacyError",
    "check_map",
    "epsilon_share",
    "expected_errors",
    "gather",
    "measure",
    "mechanism_count",
    "quantile_rank_error",
    "release",
    "sensitivity",
]

Part = tuple[int, str]  # (aggregate index, one of its measure's parts)


def mechanism_count(plan: QueryPlan) -> int:
    """How many OpenDP measurements the query needs (one per part: AVG needs two)."""
    return sum(len(a.measure.parts) for a in plan.aggregates)


def epsilon_share(plan: QueryPlan, epsilon_micro: int) -> float:
    """Each measurement's ε: an equal split, rounded down to whole micro-ε so shares never
    add up to more than the ε charged."""
    return (epsilon_micro // mechanism_count(plan)) / MICRO


def sensitivity(agg: Aggregate, part: str, bound: int, n_groups: int) -> int:
    """The most one pupil can move this part's group vector (the measure's own rule).

    >>> from safesetting.engine.plan import Aggregate
    >>> sensitivity(Aggregate("sum", "s", None, 80, 120), "value", 3, 10)
    360
    >>> sensitivity(Aggregate("count_distinct", "n"), "value", 20, 3)
    3
    """
    return agg.measure.sensitivity(agg, part, bound, n_groups)


def gather(plan: QueryPlan, compiled: CompiledQuery, true_rows: list[tuple]) -> dict[Part, list]:
    """The plane's rows as one vector per part over the full public domain, empty groups
    as the measure's zero; rows whose key is outside the domain (a NULL key, say) are
    dropped."""
    groups = plan.groups()
    index = {g: i for i, g in enumerate(groups)}
    n, k = len(groups), compiled.key_count
    owners = [plan.aggregates[a].measure for a, _part in compiled.agg_columns]
    vectors: dict[Part, list] = {
        (a, part): [m.zero(part) for _ in range(n)]
        for (a, part), m in zip(compiled.agg_columns, owners, strict=True)
    }
    for row in true_rows:
        i = index.get(tuple(row[:k]))
        if i is None:
            continue  # a value outside the public domain: never released
        for j, (part, m) in enumerate(zip(compiled.agg_columns, owners, strict=True)):
            value = row[k + j]
            if value is not None:
                vectors[part][i] = m.collect(part[1], value)
    return vectors


def _check_epsilon(plan: QueryPlan, epsilon_micro: int) -> float:
    n_measures = mechanism_count(plan)
    if epsilon_micro // n_measures < 1:
        raise UsageError(
            f"epsilon {format_epsilon(epsilon_micro)} is too small: this query makes "
            f"{n_measures} measurements, each needing at least 0.000001 "
            f"(ask for at least {format_epsilon(n_measures)})"
        )
    return epsilon_share(plan, epsilon_micro)


def expected_errors(plan: QueryPlan, compiled: CompiledQuery, epsilon_micro: int) -> list[Expected]:
    """Per-aggregate error at this ε and contribution bound (data-independent).

    Calibrates every measurement the release will use, so an ε too small to calibrate is
    unusable input here, before anything is charged.
    """
    eps = _check_epsilon(plan, epsilon_micro)
    n_groups, bound = len(plan.groups()), compiled.bound.rows
    try:
        return [a.measure.expected(a, bound, n_groups, eps) for a in plan.aggregates]
    except CalibrationError:
        raise UsageError(
            f"epsilon {format_epsilon(epsilon_micro)} is too small to calibrate this query's "
            "noise: ask for more"
        ) from None


def release(
    plan: QueryPlan,
    compiled: CompiledQuery,
    true_rows: list[tuple],
    epsilon_micro: int,
    min_cell_count: int,
) -> Released:
    """Add OpenDP noise to the true aggregates, then apply the output rules.

    ``true_rows`` are the plane's rows; they are read here and dropped, never returned.
    """
    return present(plan, measure(plan, compiled, true_rows, epsilon_micro), min_cell_count,
                   compiled.bound.rows)  # fmt: skip


def measure(
    plan: QueryPlan, compiled: CompiledQuery, true_rows: list[tuple], epsilon_micro: int
) -> list[Noisy]:
    """One OpenDP measurement per part, each calibrated at its measure's sensitivity with
    its share of ε. What comes back is noisy; the true vectors end here."""
    n, bound = len(plan.groups()), compiled.bound.rows
    eps = epsilon_share(plan, epsilon_micro)
    vectors = gather(plan, compiled, true_rows)
    out = [
        agg.measure.measure(agg, {p: vectors[(a, p)] for p in agg.measure.parts}, bound, n, eps)
        for a, agg in enumerate(plan.aggregates)
    ]
    del vectors
    return out
