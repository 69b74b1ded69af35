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
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from safesetting.engine.measures import MEASURES, Measure
from safesetting.errors import Reason, UsageError

if TYPE_CHECKING:
    from safesetting.engine.parse import Catalogue

DOC_VERSION = 2  # the plan document's format (to_doc / from_doc)

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

    @property
    def measure(self) -> Measure:
        """The measurement class that owns everything about this kind of aggregate."""
        return MEASURES[self.func]

    def to_doc(self) -> dict[str, Any]:
        return {
            "func": self.func,
            "arg": canonical_sql(self.arg) if self.arg is not None else None,
            "lower": self.lower,
            "upper": self.upper,
            "resolution": self.resolution,
            "quantile": self.quantile,
        }


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

    def to_doc(self) -> dict[str, Any]:
        """The plan as a versioned, JSON-ready document: same meaning, same document.

        The cache key, the ``query.accepted`` audit entry, the transparency summary and
        subject access all use it; nobody parses SQL out of it by hand. ``from`` lists the
        nodes of the join tree, base first, each with the equalities joining it (``as``
        names a node that is not the table's own name: a table joined again); ``where`` is
        the engine's rebuilt filter; labels are left out (presentation, not meaning).
        """
        nodes: list[dict[str, Any]] = [_node_doc(self.base)]
        for join in self.joins:
            node = _node_doc(join.table)
            node["on"] = sorted(f"{a.in_node}={b.in_node}" for a, b in join.on)
            nodes.append(node)
        return {
            "v": DOC_VERSION,
            "from": nodes,
            "where": canonical_sql(self.where) if self.where is not None else None,
            "keys": [k.column.in_node for k in self.keys],
            "aggs": [a.to_doc() for a in self.aggregates],
            "out": [f"{kind}:{i}" for kind, i in self.output],
        }

    @staticmethod
    def from_doc(doc: dict[str, Any], catalogue: Catalogue | None = None) -> QueryPlan:
        """The plan a document describes, rebuilt by the parser (which alone derives
        domains, bounds and column uses) and checked to give the same document back.
        Raises ``ValueError`` for a document of another version or one that does not
        describe an accepted plan."""
        from safesetting.engine.parse import parse_query  # noqa: PLC0415 - parse imports plan

        if not isinstance(doc, dict) or doc.get("v") != DOC_VERSION:
            raise ValueError(f"not a version {DOC_VERSION} plan document")
        try:
            plan = parse_query(doc_sql(doc), catalogue)
        except UsageError as exc:
            raise ValueError(f"the plan document is not a query: {exc.message}") from None
        if not isinstance(plan, QueryPlan):
            raise ValueError("the plan document describes a refused query")
        if plan.to_doc() != doc:
            raise ValueError("the plan document does not describe the plan it rebuilds")
        return plan

    def normalised(self) -> str:
        """The document as canonical JSON text (the cache key's core, the audit entry's
        ``normalised``)."""
        return json.dumps(self.to_doc(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.normalised().encode()).hexdigest()


def canonical_sql(e: exp.Expression) -> str:
    """An engine-built expression as SQL the parser rebuilds into the same expression:
    brackets around brackets are one pair, and ``CAST(ROUND(x) AS BIGINT)`` (how the parser
    rebuilds a cast of a real value to an integer) is written as the researcher could
    write it, ``CAST(x AS BIGINT)``.

    >>> from sqlglot import parse_one
    >>> canonical_sql(parse_one("-((x * 3))"))
    '-(x * 3)'
    >>> canonical_sql(parse_one("CAST(ROUND(0.5) AS BIGINT)"))
    'CAST(0.5 AS BIGINT)'
    """

    def simplify(node: exp.Expression) -> exp.Expression:
        while isinstance(node, exp.Paren) and isinstance(node.this, exp.Paren):
            node = node.this
        if (
            isinstance(node, exp.Cast)
            and isinstance(node.this, exp.Round)
            and node.this.args.get("decimals") is None
            and node.to.is_type(exp.DataType.Type.BIGINT)
        ):
            node = exp.Cast(this=node.this.this, to=node.to)
        return node

    # ``transform`` does not look inside a node it replaced: repeat until nothing changes.
    text, previous = e.sql(dialect="duckdb"), None
    while text != previous:
        e, previous = e.transform(simplify), text
        text = e.sql(dialect="duckdb")
    return text


def _node_doc(node: TableRef) -> dict[str, Any]:
    doc: dict[str, Any] = {"table": node.name}
    if node.alias != node.name:
        doc["as"] = node.alias
    return doc


def _quoted(in_node: str) -> str:
    node, column = in_node.split(".", 1)
    return f'"{node}"."{column}"'


def doc_sql(doc: dict[str, Any]) -> str:
    """SQL for a plan document, for the parser to validate like any researcher's query.

    >>> doc = {"v": 2, "from": [{"table": "census"}], "where": None,
    ...        "keys": ["census.region"], "aggs": [], "out": ["key:0"]}
    >>> doc_sql(dict(doc, aggs=[dict(func="count", arg=None)], out=["key:0", "agg:0"]))
    'SELECT "census"."region", COUNT(*) FROM "census" GROUP BY "census"."region"'
    """
    keys = [_quoted(k) for k in doc["keys"]]
    aggs = [MEASURES[a["func"]].source(a) for a in doc["aggs"]]
    select = []
    for item in doc["out"]:
        kind, _colon, i = str(item).partition(":")
        select.append(keys[int(i)] if kind == "key" else aggs[int(i)])
    base, *joins = doc["from"]

    def node(n: dict[str, Any]) -> str:
        return f'"{n["table"]}"' + (f' AS "{n["as"]}"' if "as" in n else "")

    # Text for the parser, which validates it like any researcher's query.
    sql = f"SELECT {', '.join(select)} FROM {node(base)}"  # noqa: S608
    for join in joins:
        on = " AND ".join(
            f"{_quoted(a)} = {_quoted(b)}" for a, b in (p.split("=", 1) for p in join["on"])
        )
        sql += f" JOIN {node(join)} ON {on}"
    if doc.get("where"):
        sql += f" WHERE {doc['where']}"
    if keys:
        sql += " GROUP BY " + ", ".join(keys)
    return sql


@dataclass(frozen=True)
class Refusal:
    """The parser could build no plan, or the plan breaks a query-shape rule.

    ``usage`` and ``fine`` report the columns the parser saw and how, as on a plan, so the
    policy can classify them too (every reason at once)."""

    reasons: tuple[Reason, ...]
    usage: dict[str, frozenset[str]] = field(default_factory=dict, hash=False)
    fine: frozenset[str] = frozenset()
