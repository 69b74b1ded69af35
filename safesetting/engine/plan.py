"""The validated, typed form of a researcher's query. The engine only ever runs SQL built
from a ``QueryPlan``, never the researcher's text.

Tables appear in a plan as *nodes* of a join tree rooted at the base table. Each node has a
canonical alias: the table's own name for its first appearance, ``<table>_2``, ``<table>_3``
… for later ones (a table joined to itself), so two spellings of one question share one plan
whatever aliases the researcher chose. Columns are referred to through their node.
"""

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
    """A column of one node of the join tree: ``alias`` names the node (canonical alias),
    ``table`` the catalogue table it is a copy of."""

    table: str
    column: str
    alias: str = ""

    @property
    def node(self) -> str:
        return self.alias or self.table

    @property
    def qualified(self) -> str:
        """``table.column``: how the policy names the column, whichever node it came from.

        >>> ref = ColumnRef("census", "region", "census_2")
        >>> ref.qualified, ref.in_node
        ('census.region', 'census_2.region')
        """
        return f"{self.table}.{self.column}"

    @property
    def in_node(self) -> str:
        """``alias.column``: which node's column (the plan's own naming)."""
        return f"{self.node}.{self.column}"


@dataclass(frozen=True)
class TableRef:
    name: str
    alias: str


@dataclass(frozen=True)
class Join:
    """One edge of the join tree: ``table`` (a new node) attached to nodes already joined.

    ``on`` holds the equalities, each ``(already joined, new node)``; ``joins.py`` admits
    only ``pupil_id`` (and ``academic_year``) equalities between pupil tables, and a public
    table's own key equal to a column of a joined table that references it.
    """

    table: TableRef
    on: tuple[tuple[ColumnRef, ColumnRef], ...]


@dataclass(frozen=True)
class GroupKey:
    column: ColumnRef
    label: str
    domain: tuple[object, ...]


@dataclass(frozen=True, eq=False)
class Aggregate:
    """One aggregate: ``func`` is count, count_distinct, sum, avg or quantile.

    ``arg`` is a rebuilt, node-qualified sqlglot expression (None for COUNT(*)); its values
    lie in ``[lower, upper]`` (interval arithmetic over the catalogue's bounds, enforced by
    clamping in the compiled SQL) and, for sums, are counted in units of ``resolution``.
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
    pinned_years: frozenset[str] = frozenset()  # nodes whose academic_year WHERE fixes
    fine: frozenset[str] = frozenset()  # table.column used other than on its public values

    @property
    def nodes(self) -> tuple[TableRef, ...]:
        """Every node of the join tree, base first."""
        return (self.base, *(j.table for j in self.joins))

    @property
    def year_joins(self) -> list[tuple[str, str]]:
        """Pairs of nodes joined on ``academic_year`` (the bound's year groups)."""
        return [
            (a.node, b.node)
            for join in self.joins
            for a, b in join.on
            if a.column == b.column == "academic_year"
        ]

    @property
    def tables(self) -> tuple[str, ...]:
        """The catalogue tables the plan reads, each once, in join order."""
        return tuple(dict.fromkeys(n.name for n in self.nodes))

    @property
    def aliases(self) -> dict[str, str]:
        """Canonical alias → table name."""
        return {n.alias: n.name for n in self.nodes}

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
        """A canonical text of the plan: same meaning, same text (the cache key's core).

        ``from`` lists the base table, then ``[table, [a=b, …]]`` per join, with the
        node's canonical alias as a third item when it is not the table's own name.
        """
        doc = {
            "from": [self.base.name, *[_join_doc(j) for j in self.joins]],
            "where": self.where.sql(dialect="duckdb") if self.where is not None else None,
            "keys": [k.column.in_node for k in self.keys],
            "aggs": [a.signature() for a in self.aggregates],
            "out": list(self.output),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.normalised().encode()).hexdigest()


def _join_doc(join: Join) -> list[object]:
    on = sorted(f"{a.in_node}={b.in_node}" for a, b in join.on)
    doc: list[object] = [join.table.name, on]
    if join.table.alias != join.table.name:
        doc.append(join.table.alias)
    return doc


@dataclass(frozen=True)
class Refusal:
    """The parser could build no plan, or the plan breaks a query-shape rule."""

    reasons: tuple[Reason, ...]
