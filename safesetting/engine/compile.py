"""``QueryPlan`` → bounded SQL that the sandbox runs. Never the researcher's text.

The SQL applies the opt-out anti-join and the retention filter to every pupil table of the
plan, truncates each pupil to the contribution bound unless a database constraint already
guarantees it, clamps every numeric column where an aggregate reads it (and the whole
argument) to the catalogue's bounds and, for sums, counts in integer units.

**Totality.** For any data whose columns hold values of their declared types, this SQL
cannot raise: every literal a filter compares a column with has that column's type (checked
in ``types.py``, written here as ``CAST(literal AS <column type>)``, folded once at bind
time), so no column is ever cast; aggregate arguments read each column clamped to its
declared bounds and widened to ``BIGINT`` or ``DOUBLE``, every sub-expression's interval
lies within ±10⁹ (``expressions.py``), and nothing is divided — so nothing overflows or
fails to convert, whatever a pupil's record holds. Whether a query fails therefore cannot
depend on the data (``tests/property/test_neighbours.py`` runs the compiled SQL on random
and extreme data and requires that it never raises).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from safesetting.engine.bounds import DEFAULT_MAX_ROWS_PER_PUPIL, Bound, contribution_bound
from safesetting.engine.plan import Aggregate, ColumnRef, QueryPlan, TableRef
from synthetic.schema import TABLES, Column

OPTOUT_TABLE = "__optout"  # pupil_ids of opted-out pupils: a temporary table of the query
SUBJECT_TABLE = "__subject"  # subject access: the one pupil whose rows may be read
ALL_PUPILS = (-(2**63), 2**63 - 1)  # every pupil_id: a truncated query in one pass
_CASTABLE = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "DOUBLE"}

__all__ = [
    "OPTOUT_TABLE",
    "ALL_PUPILS",
    "SUBJECT_TABLE",
    "Bound",
    "CompiledQuery",
    "compile_plan",
    "plan_bound",
]


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    bound: Bound
    key_count: int
    agg_columns: tuple[tuple[int, str], ...]  # (aggregate index, one of its measure's parts)
    sliced: bool = False  # truncated: may run in passes over pupil_id ranges (``pupils``)


def plan_bound(plan: QueryPlan, cap: int = DEFAULT_MAX_ROWS_PER_PUPIL) -> Bound:
    """The plan's contribution bound (``bounds.contribution_bound`` over its join tree).

    >>> from safesetting.engine.parse import parse_query
    >>> plan_bound(parse_query("SELECT COUNT(*) FROM ks2")).rows
    1
    >>> b = plan_bound(parse_query("SELECT COUNT(*) FROM exclusions"))
    >>> (b.natural, b.rows, b.truncate)
    (120, 20, True)
    """
    return contribution_bound(plan.aliases, plan.year_joins, plan.pinned_years, cap)


def compile_plan(
    plan: QueryPlan,
    *,
    min_year: int | None = None,
    salt: str = "",
    cap: int = DEFAULT_MAX_ROWS_PER_PUPIL,
    subject: bool = False,
    pupils: tuple[int, int] = ALL_PUPILS,
) -> CompiledQuery:
    """Emit the bounded SQL for ``plan`` (DuckDB dialect). ``subject``: read only the rows
    of the pupils in ``SUBJECT_TABLE`` (subject access asks whether one pupil's record
    meets a logged query's filters). ``pupils``: for a truncated plan, the pupil_id range
    this pass reads (whole pupils, so the passes' parts add up to one pass's)."""
    bound = plan_bound(plan, cap)
    aliases = plan.aliases
    pid = _col(plan.base.alias, "pupil_id")

    inner_cols: dict[str, exp.Expression] = {}

    def inner(e: exp.Expression) -> exp.Expression:
        """Rewrite node-qualified columns to the inner query's flat names."""

        def swap(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column):
                name = f"{node.table}__{node.name}"
                inner_cols[name] = _col(node.table, node.name)
                return exp.column(name, quoted=True)
            return node

        return e.copy().transform(swap)

    class Context:
        """What each measure builds its SQL parts with (``measures.SqlContext``)."""

        column = staticmethod(inner)

        @staticmethod
        def bounded(agg: Aggregate) -> exp.Expression:
            value = inner(argument(agg.arg, aliases))
            if not isinstance(agg.arg, exp.Column):  # a bare column is clamped where read
                value = _clamp(value, agg.lower, agg.upper,
                               nullable=may_be_null(agg.arg, aliases))  # fmt: skip
            return value

    keys = [inner(_col(k.column.node, k.column.column)) for k in plan.keys]
    outer: list[exp.Expression] = list(keys)
    parts: list[tuple[int, str]] = []
    for i, agg in enumerate(plan.aggregates):
        measure = agg.measure
        outer += measure.sql_parts(agg, Context)
        parts += [(i, part) for part in measure.parts]

    conditions: list[exp.Expression] = []
    if plan.where is not None:
        conditions.append(exp.Paren(this=typed_filter(plan.where, aliases)))

    select_inner: list[exp.Expression] = [exp.alias_(pid.copy(), "__pid", quoted=True)]
    select_inner += [exp.alias_(col, name, quoted=True) for name, col in inner_cols.items()]
    pass_range = pupils if bound.truncate else None
    query = exp.select(*select_inner).from_(_node(plan.base, min_year, subject, pass_range))
    for join in plan.joins:
        pairs = sorted(join.on, key=lambda p: (p[0].in_node, p[1].in_node))  # one spelling
        on = exp.and_(*[exp.EQ(this=_q(a), expression=_q(b)) for a, b in pairs])
        node = _node(join.table, min_year, subject, pass_range)
        query = query.join(node, on=on, join_type="inner")
    if conditions:
        query = query.where(exp.and_(*conditions))
    if bound.truncate:
        query = _truncated(query, list(inner_cols), salt, bound.rows)
    final = exp.select(*outer).from_(query.subquery("__bounded"))
    if keys:
        final = final.group_by(*[k.copy() for k in keys])
    return CompiledQuery(
        final.sql(dialect="duckdb"), bound, len(keys), tuple(parts), sliced=bound.truncate
    )


def _truncated(rows: exp.Select, names: list[str], salt: str, limit: int) -> exp.Select:
    """At most ``limit`` of each pupil's ``rows``, chosen by a salted hash of the row (so
    the same rows every time, and not chosen by the researcher's order).

    Only pupils with more than ``limit`` rows go through the window (at national scale a
    few in a thousand); every other pupil's rows pass as they are, which is what the window
    keeps of them too, so the result is the window's over all rows, at a third of the
    cost. One partition per pupil: every pupil node's pupil_id equals the base's
    (joins.py)."""
    pid = exp.column("__pid", quoted=True)
    order = exp.func(
        "hash", pid.copy(), *[exp.column(n, quoted=True) for n in names], exp.Literal.string(salt)
    )
    rn = exp.Window(
        this=exp.RowNumber(),
        partition_by=[pid.copy()],
        order=exp.Order(expressions=[exp.Ordered(this=order)]),
    )
    heavy = exp.select(pid.copy()).from_("__heavy").subquery()
    light = exp.select("*").from_("__rows").where(exp.not_(exp.In(this=pid.copy(), query=heavy)))
    numbered = (
        exp.select("*", exp.alias_(rn, "__rn", quoted=True))
        .from_("__rows")
        .where(exp.In(this=pid.copy(), query=heavy.copy()))
    )
    kept = (
        exp.select(exp.Star(except_=[exp.column("__rn", quoted=True)]))
        .from_(numbered.subquery("__numbered"))
        .where(exp.LTE(this=exp.column("__rn", quoted=True), expression=_count(limit)))
    )
    over = (
        exp.select(pid.copy())
        .from_("__rows")
        # Never a NULL in the list: ``x NOT IN (…, NULL)`` is NULL for every x, which would
        # drop every other pupil's rows (pupil_id is NOT NULL in the snapshot, and a pass's
        # range filter drops NULLs too; this holds without either).
        .where(exp.not_(exp.Is(this=pid.copy(), expression=exp.Null())))
        .group_by(pid.copy())
        .having(exp.GT(this=exp.Count(this=exp.Star()), expression=_count(limit)))
    )
    union = exp.union(light, kept, distinct=False)
    return (
        exp.select("*")
        .from_(union.subquery("__kept"))
        .with_("__rows", as_=rows, materialized=True)
        .with_("__heavy", as_=over, materialized=True)
    )


def _count(n: int) -> exp.Expression:
    return exp.Literal.number(int(n))


def declared(node: exp.Column, aliases: dict[str, str]) -> Column:
    """The schema's declaration of a node-qualified column of the plan."""
    return TABLES[aliases[node.table]].column(node.name)


def typed_filter(where: exp.Expression, aliases: dict[str, str]) -> exp.Expression:
    """The plan's filter with every numeric literal written as ``CAST(v AS <column type>)``:
    DuckDB then compares in the column's own type and never casts the column."""

    def cast(node: exp.Expression) -> exp.Expression:
        col = node.this if isinstance(node, exp.Predicate | exp.In | exp.Between) else None
        if not isinstance(col, exp.Column):
            return node
        dtype = declared(col, aliases).dtype
        if dtype not in _CASTABLE:
            return node
        for key in ("expression", "low", "high"):
            value = node.args.get(key)
            if isinstance(value, exp.Literal) and not value.is_string:
                node.set(key, _as(value, dtype))
        if isinstance(node, exp.In):
            node.set("expressions", [_as(v, dtype) for v in node.expressions])
        return node

    return where.copy().transform(cast)


def argument(arg: exp.Expression, aliases: dict[str, str]) -> exp.Expression:
    """An aggregate argument as the engine runs it: each column read clamped to its declared
    bounds and widened (``BIGINT`` or ``DOUBLE``), real literals as ``DOUBLE``, conditions
    typed as in filters. On data within the declared bounds this is the same value."""
    if isinstance(arg, exp.Column):
        col = declared(arg, aliases)
        if col.bounds is None:  # the parser admits only bounded columns here
            raise ValueError(f"{arg.sql()} has no declared bounds")
        widened = _as(arg.copy(), "BIGINT" if col.dtype != "DOUBLE" else "DOUBLE")
        return _clamp(widened, *col.bounds, nullable=col.nullable)
    if (
        isinstance(arg, exp.Cast)
        and isinstance(arg.this, exp.Column)
        and declared(arg.this, aliases).dtype == "BOOLEAN"
    ):
        return arg.copy()  # CAST(flag AS BIGINT): 0 or 1, never fails
    if isinstance(arg, exp.Literal):
        return arg.copy() if float(arg.this).is_integer() else _as(arg.copy(), "DOUBLE")
    if isinstance(arg, exp.Case):
        ifs = [
            exp.If(this=typed_filter(i.this, aliases), true=argument(i.args["true"], aliases))
            for i in arg.args.get("ifs") or []
        ]
        default = arg.args.get("default")
        return exp.Case(ifs=ifs, default=argument(default, aliases) if default else None)
    rebuilt = arg.copy()
    for key in ("this", "expression"):
        child = arg.args.get(key)
        if isinstance(child, exp.Expression):
            rebuilt.set(key, argument(child, aliases))
    return rebuilt


def _node(
    node: TableRef,
    min_year: int | None,
    subject: bool = False,
    pupils: tuple[int, int] | None = None,
) -> exp.Expression:
    """One node of the join tree. A pupil table is read through its own opt-out anti-join
    and retention filter *before* it is joined: an opted-out pupil's rows never enter the
    join (not even to cost time), and every pupil node is filtered, not only the base."""
    table = TABLES[node.name]
    if not table.private:
        return _table(node.name, node.alias)
    keep: list[exp.Expression] = [
        exp.Not(
            this=exp.In(
                this=exp.column("pupil_id", quoted=True),
                query=exp.Subquery(this=exp.select("pupil_id").from_(OPTOUT_TABLE)),
            )
        )
    ]
    if pupils is not None:  # a pass over a range of pupils: all of a pupil's rows, or none
        keep.append(
            exp.Between(
                this=exp.column("pupil_id", quoted=True),
                low=_as(exp.Literal.number(pupils[0]), "BIGINT"),
                high=_as(exp.Literal.number(pupils[1]), "BIGINT"),
            )
        )
    if subject:
        keep.append(
            exp.In(
                this=exp.column("pupil_id", quoted=True),
                query=exp.Subquery(this=exp.select("pupil_id").from_(SUBJECT_TABLE)),
            )
        )
    if min_year is not None and "academic_year" in table.column_names:
        keep.append(
            exp.GTE(
                this=exp.column("academic_year", quoted=True),
                expression=_as(_lit(min_year), "SMALLINT"),
            )
        )
    rows = exp.select("*").from_(exp.table_(node.name, quoted=True)).where(exp.and_(*keep))
    return rows.subquery(node.alias, copy=False).as_(node.alias, quoted=True)


def may_be_null(arg: exp.Expression, aliases: dict[str, str]) -> bool:
    """Whether an aggregate argument can be NULL: a CASE without ELSE, or a nullable column."""
    if any(c.args.get("default") is None for c in arg.find_all(exp.Case)):
        return True
    return any(declared(c, aliases).nullable for c in arg.find_all(exp.Column))


def _col(node: str, column: str) -> exp.Column:
    return exp.column(column, table=node, quoted=True)


def _q(ref: ColumnRef) -> exp.Column:
    return _col(ref.node, ref.column)


def _table(name: str, alias: str) -> exp.Expression:
    table = exp.table_(name, quoted=True)
    return table.as_(alias, quoted=True) if alias != name else table


def _as(value: exp.Expression, dtype: str) -> exp.Expression:
    return exp.Cast(this=value, to=exp.DataType.build(dtype))


def _clamp(arg: exp.Expression, lower: float, upper: float, *, nullable: bool) -> exp.Expression:
    """``arg`` held to ``[lower, upper]``. DuckDB's LEAST and GREATEST skip NULLs, so a value
    that may be NULL (``CASE`` without ``ELSE``) keeps its NULL explicitly."""
    clamped = exp.func("least", exp.func("greatest", arg, _lit(lower)), _lit(upper))
    if not nullable:
        return clamped
    return exp.Case(
        ifs=[exp.If(this=exp.Is(this=arg.copy(), expression=exp.Null()), true=exp.Null())],
        default=clamped,
    )


def _lit(v: float) -> exp.Expression:
    if float(v).is_integer():
        return exp.Literal.number(int(v))
    return _as(exp.Literal.number(v), "DOUBLE")


def needed_columns(plan: QueryPlan) -> dict[str, set[str]]:
    """The columns of each table the compiled SQL reads (what the sandbox must copy)."""
    needed: dict[str, set[str]] = {name: set() for name in plan.tables}
    for qualified in plan.usage:
        table, column = qualified.split(".", 1)
        needed[table].add(column)
    for name in plan.tables:
        if TABLES[name].private:
            needed[name].add("pupil_id")
            if "academic_year" in TABLES[name].column_names:
                needed[name].add("academic_year")
    return needed
