"""Aggregates and their arguments: the accepted expression grammar, rebuilt node by node
with an interval for every sub-expression.

An argument is a numeric column with declared bounds, a number, ``CAST(flag AS INTEGER)``,
``CAST(x AS INTEGER|DOUBLE)``, ``-x``, ``x + y``, ``x - y``, ``x * constant`` or
``CASE WHEN condition THEN x [ELSE y] END`` (no ELSE: NULL, which aggregates skip).
Brackets are kept, casts are rebuilt as ``BIGINT`` (rounding a real value) or ``DOUBLE``,
and every sub-expression's interval must lie within ``±MAX_VALUE``: with each column clamped
to its declared bounds where it is read (``compile.py``), no sub-expression can overflow or
fail on any data — the engine's SQL is total.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp

from safesetting.engine.bounds import MAX_VALUE, Interval
from safesetting.engine.measures import Count, CountDistinct, Mean, Quantile, Sum
from safesetting.engine.plan import AGGREGATE, COUNT_DISTINCT, Aggregate, ColumnRef
from safesetting.engine.types import INTEGER_RANGES, LiteralError, literal_value

if TYPE_CHECKING:
    from safesetting.engine.parse import _Parser

FLOAT_RESOLUTION = 0.01  # real-valued sums are counted in hundredths (integer noise, exact ε)
MAX_UNITS = 1e9  # the widest clamping range an aggregate may have, in its counting units
INTEGER_CASTS = {
    exp.DataType.Type.TINYINT: "TINYINT",
    exp.DataType.Type.SMALLINT: "SMALLINT",
    exp.DataType.Type.INT: "INTEGER",
    exp.DataType.Type.BIGINT: "BIGINT",
}
REAL_CASTS = {exp.DataType.Type.DOUBLE}


def aggregate(p: _Parser, node: exp.Expression, alias: str | None, n: int) -> Aggregate:
    """One accepted aggregate, or a refusal recorded on ``p`` (and ``Refused`` raised)."""
    from safesetting.engine.parse import Refused

    label = alias or _default_label(node, n)
    if isinstance(node, exp.Count):
        inner = node.this
        if isinstance(inner, exp.Star):
            return Aggregate(Count.name, label)
        if isinstance(inner, exp.Distinct):
            cols = inner.expressions
            if len(cols) == 1 and isinstance(cols[0], exp.Column):
                ref = p.column(cols[0])
                # Only the privacy unit: the sensitivity of a distinct count is calibrated
                # for counting pupils (a shape rule; whether the column may be used at all
                # is decide()'s).
                if ref is not None and ref.column == "pupil_id":
                    p.use(ref, COUNT_DISTINCT, cols[0], coarse=False)
                    return Aggregate(CountDistinct.name, label, arg=_qualified(ref))
            p.refuse("unsupported_aggregate.count_distinct")
            raise Refused
        if isinstance(inner, exp.Column):
            ref = p.column(inner)
            if ref is None:
                raise Refused
            p.use(ref, AGGREGATE, inner, coarse=False)
            return Aggregate(Count.name, label, arg=_qualified(ref))
        p.refuse("unsupported_aggregate.count", sql=inner.sql())
        raise Refused
    if isinstance(node, exp.Sum | exp.Avg | exp.Median | exp.PercentileCont):
        # SQL's aggregate → the measure that owns it (measures.py)
        func = {exp.Sum: Sum.name, exp.Avg: Mean.name}.get(type(node), Quantile.name)
        if isinstance(node.this, exp.Distinct):
            p.refuse("unsupported_aggregate.distinct")
            raise Refused
        arg, span = bounded(p, node.this)
        q = None
        if isinstance(node, exp.Median):
            q = 0.5
        elif isinstance(node, exp.PercentileCont):
            q = number(p, node.expression)
            if not 0.0 < q < 1.0:
                p.refuse("unsupported_aggregate.quantile")
                raise Refused
        resolution = 1.0 if span.integral else FLOAT_RESOLUTION
        if span.magnitude / resolution > MAX_UNITS:
            p.refuse("unbounded_argument.units", sql=node.sql())
            raise Refused
        return Aggregate(func, label, arg, float(span.lo), float(span.hi), resolution, q)
    if isinstance(node, exp.AggFunc):
        p.refuse("unsupported_aggregate.other", name=node.key.upper())
        raise Refused
    if isinstance(node, exp.Filter):
        p.refuse("unsupported_expression.filter")
        raise Refused
    if any(isinstance(x, exp.AggFunc) for x in node.walk()):
        p.refuse("unsupported_expression.aggregate_arithmetic")
    else:
        p.refuse("bare_column.not_aggregate", sql=node.sql())
    raise Refused


def number(p: _Parser, node: exp.Expression | None) -> float:
    from safesetting.engine.parse import Refused

    try:
        value = literal_value(node) if node is not None else None
    except LiteralError:
        value = None
    if value is None or isinstance(value, str | bool):
        p.refuse("unsupported_expression.number")
        raise Refused
    v = float(value)  # type: ignore[arg-type]
    if not abs(v) <= MAX_VALUE:  # also catches a literal too large for a float (inf)
        p.refuse("unbounded_argument.number", limit=MAX_VALUE)
        raise Refused
    return v


def bounded(p: _Parser, node: exp.Expression) -> tuple[exp.Expression, Interval]:
    """An aggregate argument rebuilt from the grammar, with the interval of its values."""
    from safesetting.engine.parse import Refused

    expr, span = _bounded(p, node)
    if span.magnitude > MAX_VALUE:
        p.refuse("unbounded_argument.reach", sql=node.sql(), reach=span.magnitude, limit=MAX_VALUE)
        raise Refused
    return expr, span


def _bounded(p: _Parser, node: exp.Expression) -> tuple[exp.Expression, Interval]:
    from safesetting.engine.parse import Refused

    if isinstance(node, exp.Paren):
        inner, span = bounded(p, node.this)
        return exp.Paren(this=inner), span
    if isinstance(node, exp.Column):
        ref = p.column(node)
        if ref is None:
            raise Refused
        p.use(ref, AGGREGATE, node, coarse=False)
        col = p.declared(ref)
        if col.bounds is None:
            if col.dtype == "BOOLEAN":
                p.refuse("unbounded_argument.flag", column=ref.qualified)
            else:
                p.refuse("unbounded_argument.no_bounds", column=ref.qualified)
            raise Refused
        lo, hi = col.bounds
        return _qualified(ref), Interval(lo, hi, col.dtype in INTEGER_RANGES)
    if isinstance(node, exp.Literal | exp.Neg) and _is_number(node):
        v = number(p, node)
        return _number(v), Interval(v, v, v.is_integer())
    if isinstance(node, exp.Neg):
        inner, span = bounded(p, node.this)
        return exp.Neg(this=_paren(inner)), -span
    if isinstance(node, exp.Cast):
        return _cast(p, node)
    if isinstance(node, exp.Case):
        return _case(p, node)
    if isinstance(node, exp.Add | exp.Sub):
        a, sa = bounded(p, node.this)
        b, sb = bounded(p, node.expression)
        if isinstance(node, exp.Add):
            return exp.Paren(this=exp.Add(this=a, expression=b)), sa + sb
        return exp.Paren(this=exp.Sub(this=a, expression=b)), sa - sb
    if isinstance(node, exp.Mul):
        for left, right in ((node.this, node.expression), (node.expression, node.this)):
            if _is_number(right):
                k = number(p, right)
                a, span = bounded(p, left)
                return exp.Paren(this=exp.Mul(this=a, expression=_number(k))), span.scale(k)
    p.refuse("unsupported_expression.unbounded", sql=node.sql())
    raise Refused


def _cast(p: _Parser, node: exp.Cast) -> tuple[exp.Expression, Interval]:
    from safesetting.engine.parse import Refused

    kind = node.to.this if isinstance(node.to, exp.DataType) else None
    if kind not in INTEGER_CASTS and kind not in REAL_CASTS:
        p.refuse("unsupported_expression.cast", type=node.to.sql())
        raise Refused
    inner = node.this
    if isinstance(inner, exp.Column):
        ref = p.column(inner)
        if ref is None:
            raise Refused
        if p.declared(ref).dtype == "BOOLEAN":
            p.use(ref, AGGREGATE, inner, coarse=False)
            target = "BIGINT" if kind in INTEGER_CASTS else "DOUBLE"
            return _to(_qualified(ref), target), Interval(0, 1, True)
    expr, span = bounded(p, inner)
    if kind in REAL_CASTS:
        return _to(expr, "DOUBLE"), Interval(span.lo, span.hi, False)
    name = INTEGER_CASTS[kind]
    if not span.integral:
        expr, span = exp.func("round", expr), span.rounded()
    lo, hi = INTEGER_RANGES[name]
    if not span.fits(lo, hi):
        p.refuse("type_mismatch.cast", sql=node.sql(), reach=span.magnitude, type=name)
        raise Refused
    return _to(expr, "BIGINT"), span


def _case(p: _Parser, node: exp.Case) -> tuple[exp.Expression, Interval]:
    from safesetting.engine.parse import Refused

    if node.this is not None:
        p.refuse("unsupported_expression.simple_case")
        raise Refused
    ifs: list[exp.Expression] = []
    span: Interval | None = None
    for branch in node.args.get("ifs") or []:
        cond = p.condition(branch.this)
        value, s = bounded(p, branch.args["true"])
        span = s if span is None else span.hull(s)
        ifs.append(exp.If(this=cond, true=value))
    default = node.args.get("default")
    built_default = None
    if default is not None and not isinstance(default, exp.Null):
        built_default, s = bounded(p, default)
        span = s if span is None else span.hull(s)
    if span is None:
        p.refuse("unsupported_expression.empty_case")
        raise Refused
    return exp.Case(ifs=ifs, default=built_default), span


def _is_number(node: exp.Expression) -> bool:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Neg):
        node = node.this
    return isinstance(node, exp.Literal) and not node.is_string


def _number(v: float) -> exp.Expression:
    return exp.Literal.number(int(v) if float(v).is_integer() else v)


def _to(expr: exp.Expression, target: str) -> exp.Expression:
    return exp.Cast(this=expr, to=exp.DataType.build(target))


def _paren(expr: exp.Expression) -> exp.Expression:
    return expr if isinstance(expr, exp.Paren | exp.Column | exp.Literal) else exp.Paren(this=expr)


def _qualified(ref: ColumnRef) -> exp.Column:
    return exp.column(ref.column, table=ref.node, quoted=True)


def _default_label(node: exp.Expression, n: int) -> str:
    if isinstance(node, exp.Count):
        if isinstance(node.this, exp.Star):
            return "count_star"
        if isinstance(node.this, exp.Distinct):
            return "count_distinct_pupils"
    cols = [c.name for c in node.find_all(exp.Column)]
    name = node.key.lower()
    return f"{name}_{cols[0]}" if cols else f"{name}_{n + 1}"
