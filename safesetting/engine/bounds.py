"""Contribution bounds and interval arithmetic: what one pupil can do to a query, from the
schema's declared, enforced constraints alone (pure functions; table-driven tests in
``tests/unit/engine/test_bounds.py``).

**The join-tree lemma.** The join rule (``joins.py``) makes every pupil table of a plan join
an already-joined pupil table by ``pupil_id`` equality (optionally also ``academic_year``),
and every public table join many-to-one on its own key. So every row of the joined result
belongs to exactly one pupil, the same pupil in every pupil table of the row, and one
pupil's rows in the result number at most the product, over the plan's pupil tables, of
the rows that pupil has in each table — public tables multiply by at most 1. Tables joined
on ``academic_year`` as well can only pair rows of the same year, which gives the tighter
``min_i(total_i × Π_{j≠i} yearly_j)`` per group of year-joined tables; a table whose year a
top-level ``WHERE academic_year = Y`` pins has its per-year bound as its total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from synthetic.schema import TABLES, Table

DEFAULT_MAX_ROWS_PER_PUPIL = 20
MAX_VALUE = 1e9  # the widest value any sub-expression of an aggregate argument may take


@dataclass(frozen=True)
class Bound:
    """How many rows one pupil can contribute after joins and filters, and why."""

    rows: int  # the bound the noise is calibrated to
    natural: int  # what the database constraints guarantee
    truncate: bool  # whether the SQL must enforce ``rows`` itself


def per_year_rows(table: Table) -> int:
    """Rows per pupil per academic year that the primary key allows.

    >>> from synthetic.schema import table
    >>> per_year_rows(table("exclusions")), per_year_rows(table("census"))
    (6, 1)
    """
    extra = [c for c in table.primary_key if c not in ("pupil_id", "academic_year")]
    n = 1
    for name in extra:
        domain = table.column(name).domain
        n *= len(domain) if domain else 1
    return min(n, table.max_rows_per_pupil or n)


def contribution_bound(
    nodes: dict[str, str],
    year_joins: list[tuple[str, str]],
    pinned: frozenset[str],
    cap: int = DEFAULT_MAX_ROWS_PER_PUPIL,
) -> Bound:
    """The most rows one pupil can put into a plan's joined rows.

    ``nodes`` maps each node (canonical alias) to its table; ``year_joins`` lists pairs of
    pupil-table nodes joined on ``academic_year``; ``pinned`` the nodes whose year a
    top-level filter fixes. Above ``cap`` the SQL truncates each pupil to ``cap`` rows.

    >>> contribution_bound({"ks2": "ks2"}, [], frozenset()).rows
    1
    >>> b = contribution_bound({"exclusions": "exclusions"}, [], frozenset())
    >>> (b.natural, b.rows, b.truncate)
    (120, 20, True)
    >>> contribution_bound({"c": "census", "e": "exclusions"}, [("c", "e")], frozenset({"c"}))
    Bound(rows=6, natural=6, truncate=False)
    """
    private = {alias: TABLES[name] for alias, name in nodes.items() if TABLES[name].private}
    components = year_components(year_joins)
    pinned_all = set(pinned) & set(private)
    for group in components:
        if pinned_all & group:
            pinned_all |= group
    totals, yearly = {}, {}
    for alias, table in private.items():
        total = table.max_rows_per_pupil or 1
        per_year = per_year_rows(table) if "academic_year" in table.primary_key else total
        totals[alias] = per_year if alias in pinned_all else total
        yearly[alias] = per_year
    natural = 1
    for group in components:
        natural *= min(totals[i] * math.prod(yearly[j] for j in group if j != i) for i in group)
    grouped = set().union(*components) if components else set()
    natural *= math.prod(totals[a] for a in private if a not in grouped)
    natural = max(natural, 1)
    if natural <= cap:
        return Bound(natural, natural, False)
    return Bound(cap, natural, True)


def year_components(pairs: list[tuple[str, str]]) -> list[set[str]]:
    """Connected groups of nodes joined to each other on ``academic_year``.

    >>> sorted(map(sorted, year_components([("a", "b"), ("c", "d"), ("b", "c"), ("x", "y")])))
    [['a', 'b', 'c', 'd'], ['x', 'y']]
    """
    groups: list[set[str]] = []
    for a, b in pairs:
        touching = [g for g in groups if a in g or b in g]
        merged = {a, b}.union(*touching)
        groups = [g for g in groups if g not in touching] + [merged]
    return groups


@dataclass(frozen=True)
class Interval:
    """The values an aggregate argument can take, by interval arithmetic over declared
    bounds; ``integral`` when every value is a whole number.

    >>> (Interval(80, 120) + Interval(80, 120)).scale(-2)
    Interval(lo=-480, hi=-320, integral=True)
    """

    lo: float
    hi: float
    integral: bool = True

    def __add__(self, other: Interval) -> Interval:
        return Interval(self.lo + other.lo, self.hi + other.hi, self.integral and other.integral)

    def __sub__(self, other: Interval) -> Interval:
        return Interval(self.lo - other.hi, self.hi - other.lo, self.integral and other.integral)

    def __neg__(self) -> Interval:
        return Interval(-self.hi, -self.lo, self.integral)

    def scale(self, k: float) -> Interval:
        lo, hi = sorted((self.lo * k, self.hi * k))
        return Interval(lo, hi, self.integral and float(k).is_integer())

    def hull(self, other: Interval) -> Interval:
        return Interval(
            min(self.lo, other.lo), max(self.hi, other.hi), self.integral and other.integral
        )

    def rounded(self) -> Interval:
        """After ``ROUND`` (half away from zero, as DuckDB): whole numbers."""
        return Interval(_round_half_away(self.lo), _round_half_away(self.hi), True)

    @property
    def magnitude(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    def fits(self, lo: float, hi: float) -> bool:
        return lo <= self.lo and self.hi <= hi


def _round_half_away(x: float) -> float:
    return float(math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1))
