"""The validated, typed form of a researcher's query. The engine only ever runs SQL built
from a ``QueryPlan``, never the researcher's text."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from itertools import product

from sqlglot import exp

from safesetting.errors import Reason

# Usages a column can have in a query; the policy decides which classes allow which.
GROUP_KEY, AGGREGATE, FILTER, JOIN_KEY, COUNT_DISTINCT = (
    "group_key",
    "aggregate",
    "filter",
    "join_key",
    "count_distinct",
)


@dataclass(frozen=True)
class ColumnRef:
    table: str
    column: str

    @property
    def qualified(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class TableRef:
    name: str
    alias: str


@dataclass(frozen=True)
class Join:
    table: TableRef
    on: tuple[tuple[ColumnRef, ColumnRef], ...]  # equalities (left side already in scope)


@dataclass(frozen=True)
class GroupKey:
    column: ColumnRef
    label: str
    domain: tuple[object, ...]


@dataclass(frozen=True, eq=False)
class Aggregate:
    """One aggregate: ``func`` is count, count_distinct, sum, avg or quantile.

    ``arg`` is a rebuilt, table-qualified sqlglot expression (None for COUNT(*)); values are
    clamped to ``[lower, upper]`` and, for sums, counted in units of ``resolution``.
    """

    func: str
    label: str
    arg: exp.Expression | None = None
    lower: float = 0.0
    upper: float = 1.0
    resolution: float = 1.0
    quantile: float | None = None

    def signature(self) -> str:
        arg = self.arg.sql(dialect="duckdb") if self.arg is not None else "*"
        return f"{self.func}({arg};{self.lower};{self.upper};{self.resolution};{self.quantile})"


@dataclass(frozen=True, eq=False)
class QueryPlan:
    base: TableRef
    joins: tuple[Join, ...]
    where: exp.Expression | None
    keys: tuple[GroupKey, ...]
    aggregates: tuple[Aggregate, ...]
    output: tuple[tuple[str, int], ...]  # ("key"|"agg", index) in SELECT order
    usage: dict[str, frozenset[str]] = field(default_factory=dict)  # table.column -> usages
    pinned_years: frozenset[str] = frozenset()  # aliases whose academic_year WHERE fixes

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.base.name, *(j.table.name for j in self.joins))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(sorted(self.usage))

    @property
    def labels(self) -> list[str]:
        return [
            self.keys[i].label if kind == "key" else self.aggregates[i].label
            for kind, i in self.output
        ]

    @property
    def n_cells(self) -> int:
        n = 1
        for key in self.keys:
            n *= max(len(key.domain), 1)
        return n

    def groups(self) -> list[tuple[object, ...]]:
        """Every group of the public (cartesian) domain, empty ones included."""
        return list(product(*(k.domain for k in self.keys))) if self.keys else [()]

    def normalised(self) -> str:
        """A canonical text of the plan: same meaning, same text (the cache key's core)."""
        doc = {
            "from": [self.base.name, *[[j.table.name, _on(j)] for j in self.joins]],
            "where": self.where.sql(dialect="duckdb") if self.where is not None else None,
            "keys": [k.column.qualified for k in self.keys],
            "aggs": [a.signature() for a in self.aggregates],
            "out": list(self.output),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.normalised().encode()).hexdigest()


def _on(join: Join) -> list[str]:
    return sorted(f"{a.qualified}={b.qualified}" for a, b in join.on)


@dataclass(frozen=True)
class Refusal:
    """The parser could build no plan, or the plan breaks a query-shape rule."""

    reasons: tuple[Reason, ...]
