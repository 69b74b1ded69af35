"""``QueryPlan`` → bounded SQL that the sandbox runs. Never the researcher's text.

The SQL applies the opt-out anti-join and the retention filter, truncates each pupil to the
contribution bound unless a database constraint already guarantees it, clamps every
aggregate argument to its catalogue bounds and, for sums, counts in integer units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sqlglot import exp

from safesetting.engine.parse import conjuncts
from safesetting.engine.plan import ColumnRef, QueryPlan
from synthetic.schema import TABLES, Table

OPTOUT_TABLE = "__optout"  # pupil_ids of opted-out pupils, inside the sandbox only
DEFAULT_MAX_ROWS_PER_PUPIL = 20


@dataclass(frozen=True)
class Bound:
    """How many rows one pupil can contribute after joins and filters, and why."""

    rows: int  # the bound the noise is calibrated to
    natural: int  # what the database constraints guarantee
    truncate: bool  # whether the SQL must enforce ``rows`` itself


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    bound: Bound
    key_count: int
    agg_columns: tuple[tuple[int, str], ...]  # (aggregate index, part: value|count)
    pushdown: dict[str, str] = field(default_factory=dict)  # table -> filter on its own rows


def per_year_rows(table: Table) -> int:
    """Rows per pupil per academic year that the primary key allows."""
    extra = [c for c in table.primary_key if c not in ("pupil_id", "academic_year")]
    n = 1
    for name in extra:
        domain = table.column(name).domain
        n *= len(domain) if domain else 1
    return min(n, table.max_rows_per_pupil or n)


def contribution_bound(plan: QueryPlan, cap: int = DEFAULT_MAX_ROWS_PER_PUPIL) -> Bound:
    """The most rows one pupil can put into the query, from declared, enforced constraints.

    >>> from safesetting.engine.parse import parse_query
    >>> contribution_bound(parse_query("SELECT COUNT(*) FROM ks2")).rows
    1
    >>> b = contribution_bound(parse_query("SELECT COUNT(*) FROM exclusions"))
    >>> (b.natural, b.rows, b.truncate)
    (120, 20, True)
    """
    private = [TABLES[t] for t in plan.tables if TABLES[t].private]
    components = _year_components(plan)
    pinned = set(plan.pinned_years)
    for group in components:
        if pinned & group:
            pinned |= group
    totals, yearly = {}, {}
    for table in private:
        total = table.max_rows_per_pupil or 1
        per_year = per_year_rows(table) if "academic_year" in table.primary_key else total
        totals[table.name] = per_year if table.name in pinned else total
        yearly[table.name] = per_year
    natural = 1
    for group in components:
        # Tables joined on academic_year: each row of one matches at most the per-year rows
        # of the others, so the group has at most min_i(total_i * prod_{j != i} yearly_j).
        natural *= min(totals[i] * math.prod(yearly[j] for j in group if j != i) for i in group)
    grouped = set().union(*components) if components else set()
    natural *= math.prod(totals[t.name] for t in private if t.name not in grouped)
    natural = max(natural, 1)
    if natural <= cap:
        return Bound(natural, natural, False)
    return Bound(cap, natural, True)


def _year_components(plan: QueryPlan) -> list[set[str]]:
    """Groups of pupil tables joined to each other on academic_year (connected components)."""
    groups: list[set[str]] = []
    for join in plan.joins:
        for a, b in join.on:
            if a.column != "academic_year" or not (
                TABLES[a.table].private and TABLES[b.table].private
            ):
                continue
            touching = [g for g in groups if a.table in g or b.table in g]
            merged = {a.table, b.table}.union(*touching)
            groups = [g for g in groups if g not in touching] + [merged]
    return groups


def compile_plan(
    plan: QueryPlan,
    *,
    min_year: int | None = None,
    salt: str = "",
    cap: int = DEFAULT_MAX_ROWS_PER_PUPIL,
) -> CompiledQuery:
    """Emit the bounded SQL for ``plan`` (DuckDB dialect)."""
    bound = contribution_bound(plan, cap)
    pid = exp.column("pupil_id", table=plan.base.name, quoted=True)

    inner_cols: dict[str, exp.Expression] = {}

    def inner(e: exp.Expression) -> exp.Expression:
        """Rewrite qualified columns to the inner query's flat names."""

        def swap(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column):
                name = f"{node.table}__{node.name}"
                inner_cols[name] = exp.column(node.name, table=node.table, quoted=True)
                return exp.column(name, quoted=True)
            return node

        return e.copy().transform(swap)

    keys = [inner(exp.column(k.column.column, table=k.column.table)) for k in plan.keys]
    outer: list[exp.Expression] = list(keys)
    parts: list[tuple[int, str]] = []
    for i, agg in enumerate(plan.aggregates):
        arg = inner(agg.arg) if agg.arg is not None else None
        if agg.func == "count":
            outer.append(exp.Count(this=arg if arg is not None else exp.Star()))
            parts.append((i, "value"))
        elif agg.func == "count_distinct":
            outer.append(exp.Count(this=exp.Distinct(expressions=[arg])))
            parts.append((i, "value"))
        elif agg.func in ("sum", "avg"):
            units = _units(arg, agg.lower, agg.upper, agg.resolution)
            outer.append(exp.Sum(this=units))
            parts.append((i, "value"))
            if agg.func == "avg":
                outer.append(exp.Count(this=arg))
                parts.append((i, "count"))
        else:  # quantile: the clamped values themselves, scored by OpenDP outside SQL
            outer.append(exp.func("list", _clamp(arg, agg.lower, agg.upper)))
            parts.append((i, "values"))

    conditions: list[exp.Expression] = []
    if plan.where is not None:
        conditions.append(exp.Paren(this=plan.where.copy()))
    conditions.append(
        exp.Not(
            this=exp.In(
                this=pid.copy(),
                query=exp.Subquery(this=exp.select("pupil_id").from_(OPTOUT_TABLE)),
            )
        )
    )
    if min_year is not None:
        for name in plan.tables:
            if TABLES[name].private and "academic_year" in TABLES[name].column_names:
                year = exp.column("academic_year", table=name, quoted=True)
                conditions.append(exp.GTE(this=year, expression=exp.Literal.number(min_year)))

    select_inner: list[exp.Expression] = [exp.alias_(pid.copy(), "__pid", quoted=True)]
    select_inner += [exp.alias_(col, name, quoted=True) for name, col in inner_cols.items()]
    from_ = exp.table_(plan.base.name, quoted=True)
    query = exp.select(*select_inner).from_(from_)
    for join in plan.joins:
        on = exp.and_(*[exp.EQ(this=_q(a), expression=_q(b)) for a, b in join.on])
        query = query.join(exp.table_(join.table.name, quoted=True), on=on, join_type="inner")
    query = query.where(exp.and_(*conditions))
    if bound.truncate:
        order = exp.func(
            "hash",
            exp.column("__pid", quoted=True),
            *[exp.column(n, quoted=True) for n in inner_cols],
            exp.Literal.string(salt),
        )
        rn = exp.Window(
            this=exp.RowNumber(),
            partition_by=[exp.column("__pid", quoted=True)],
            order=exp.Order(expressions=[exp.Ordered(this=order)]),
        )
        numbered = exp.select("*", exp.alias_(rn, "__rn", quoted=True)).from_(
            query.subquery("__rows")
        )
        query = (
            exp.select("*")
            .from_(numbered.subquery("__numbered"))
            .where(
                exp.LTE(
                    this=exp.column("__rn", quoted=True), expression=exp.Literal.number(bound.rows)
                )
            )
        )
    final = exp.select(*outer).from_(query.subquery("__bounded"))
    if keys:
        final = final.group_by(*[k.copy() for k in keys])
    return CompiledQuery(
        final.sql(dialect="duckdb"), bound, len(keys), tuple(parts), _pushdown(plan, min_year)
    )


def _pushdown(plan: QueryPlan, min_year: int | None) -> dict[str, str]:
    """Filters that read one table only, so the sandbox copies only rows that can matter.

    The compiled SQL applies the same filters again: pushing them down changes the cost,
    never the answer.
    """
    per_table: dict[str, list[exp.Expression]] = {}
    if plan.where is not None:
        for cond in conjuncts(plan.where):
            tables = {c.table for c in cond.find_all(exp.Column)}
            if len(tables) == 1:
                per_table.setdefault(tables.pop(), []).append(cond.copy())
    for name in plan.tables:
        if (
            min_year is not None
            and TABLES[name].private
            and "academic_year" in TABLES[name].column_names
        ):
            year = exp.column("academic_year", table=name, quoted=True)
            per_table.setdefault(name, []).append(
                exp.GTE(this=year, expression=exp.Literal.number(min_year))
            )
    return {t: exp.and_(*conds).sql(dialect="duckdb") for t, conds in per_table.items()}


def _q(ref: ColumnRef) -> exp.Column:
    return exp.column(ref.column, table=ref.table, quoted=True)


def _clamp(arg: exp.Expression, lower: float, upper: float) -> exp.Expression:
    return exp.func("least", exp.func("greatest", arg, _lit(lower)), _lit(upper))


def _units(arg: exp.Expression, lower: float, upper: float, resolution: float) -> exp.Expression:
    scaled = _clamp(arg, lower, upper)
    if resolution != 1.0:
        scaled = exp.Div(this=scaled, expression=_lit(resolution))
    return exp.Cast(this=exp.func("round", scaled), to=exp.DataType.build("BIGINT"))


def _lit(v: float) -> exp.Literal:
    return exp.Literal.number(int(v) if float(v).is_integer() else v)


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
