"""Researcher SQL → ``QueryPlan``, or every reason it cannot be answered.

Deny by default: only node types, tables, columns and functions named here get through.
Syntax errors are unusable input (``UsageError``, exit 2); a well-formed query that breaks a
rule is a refusal with reason codes (exit 3), which the service audits as ``query.denied``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from safesetting.engine.plan import (
    AGGREGATE,
    COUNT_DISTINCT,
    FILTER,
    GROUP_KEY,
    JOIN_KEY,
    Aggregate,
    ColumnRef,
    GroupKey,
    Join,
    QueryPlan,
    Refusal,
    TableRef,
)
from safesetting.errors import Reason, UsageError
from synthetic.schema import TABLES, Column, ColumnClass, Table

# sqlglot logs a warning echoing unsupported SQL; the refusal already says what happened.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

MAX_SQL_LENGTH = 20_000
FILE_FUNCTIONS = {
    "read_csv", "read_csv_auto", "read_parquet", "read_json", "read_json_auto", "read_blob",
    "read_text", "glob", "parquet_scan", "sniff_csv", "query", "query_table",
}  # fmt: skip
INTEGER_TYPES = {"TINYINT", "SMALLINT", "INT", "INTEGER", "BIGINT", "HUGEINT"}
FLOAT_TYPES = {"DOUBLE", "FLOAT", "DECIMAL", "REAL"}
FLOAT_RESOLUTION = 0.01  # real-valued sums are counted in hundredths (integer noise, exact ε)
JOINABLE_PUBLIC = {"schools": "urn", "local_authorities": "la_code"}
MAX_CELLS = 5_000
MAX_UNITS = 1e9  # the widest clamping range an aggregate may have, in its counting units
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_FLIP = {exp.EQ: exp.EQ, exp.NEQ: exp.NEQ, exp.GT: exp.LT, exp.GTE: exp.LTE, exp.LT: exp.GT,
         exp.LTE: exp.GTE}  # fmt: skip


@dataclass
class Catalogue:
    """What the parser may assume: the declared schema plus referenced public domains."""

    tables: dict[str, Table] = field(default_factory=lambda: dict(TABLES))
    ref_domains: dict[str, tuple[object, ...]] = field(default_factory=dict)
    max_cells: int = MAX_CELLS

    def domain(self, col: Column) -> tuple[object, ...] | None:
        if col.domain is not None:
            return col.domain
        if col.domain_ref is not None:
            return self.ref_domains.get(col.domain_ref, ())
        return None


class _Refused(Exception):
    """Internal: stop walking one branch; the reason is already recorded."""


def parse_query(sql: str, catalogue: Catalogue | None = None) -> QueryPlan | Refusal:
    """Validate ``sql`` and return its plan, or a ``Refusal`` listing every reason.

    >>> plan = parse_query("SELECT region, COUNT(*) FROM census GROUP BY region")
    >>> plan.tables, plan.labels
    (('census',), ['region', 'count_star'])
    >>> parse_query("SELECT * FROM pupils").reasons[0].code
    'select_star'
    """
    return _Parser(catalogue or Catalogue()).run(sql)


class _Parser:
    def __init__(self, catalogue: Catalogue) -> None:
        self.cat = catalogue
        self.reasons: list[Reason] = []
        self.scope: dict[str, Table] = {}  # alias or name -> table
        self.names: dict[str, str] = {}  # alias -> table name
        self.using: set[str] = set()
        self.usage: dict[str, set[str]] = {}

    # -- helpers ---------------------------------------------------------------------------
    def refuse(self, code: str, message: str) -> None:
        reason = Reason(code, message)
        if reason not in self.reasons:
            self.reasons.append(reason)

    def use(self, ref: ColumnRef, how: str) -> None:
        self.usage.setdefault(ref.qualified, set()).add(how)

    # -- entry -----------------------------------------------------------------------------
    def run(self, sql: str) -> QueryPlan | Refusal:
        if len(sql) > MAX_SQL_LENGTH:
            raise UsageError(f"the query is longer than {MAX_SQL_LENGTH} characters")
        try:
            statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
        except (ParseError, TokenError) as exc:
            raise UsageError(f"could not parse the SQL: {_first_line(exc)}") from None
        except RecursionError:
            raise UsageError("the query is nested too deeply") from None
        if not statements:
            raise UsageError("the query is empty")
        if len(statements) > 1:
            self.refuse("multiple_statements", "send exactly one SELECT statement")
            return Refusal(tuple(self.reasons))
        # DuckDB identifiers are case-insensitive, quoted or not.
        stmt = normalize_identifiers(statements[0], dialect="duckdb")
        for ident in stmt.find_all(exp.Identifier):
            ident.set("this", ident.this.lower())
        if not isinstance(stmt, exp.Select):
            if isinstance(stmt, exp.SetOperation):
                self.refuse("subquery", "UNION, INTERSECT and EXCEPT are not supported")
            else:
                kind = stmt.key.upper()
                self.refuse("not_a_query", f"only SELECT is allowed, not {kind}")
            return Refusal(tuple(self.reasons))
        try:
            plan = self.select(stmt)
        except RecursionError:
            raise UsageError("the query is nested too deeply") from None
        if self.reasons or plan is None:
            return Refusal(tuple(self.reasons))
        return plan

    def select(self, stmt: exp.Select) -> QueryPlan | None:
        self.check_shape(stmt)
        base, joins = self.from_clause(stmt)
        if base is None:
            return None
        self.sweep_identifiers(stmt)
        where, pinned = None, frozenset()
        if stmt.args.get("where") is not None:
            try:
                where = self.condition(stmt.args["where"].this)
                pinned = self.pinned_years(where)
            except _Refused:
                where = None
        keys = self.group_by(stmt)
        aggregates, output = self.projections(stmt, keys)
        if not aggregates and not self.reasons:
            self.refuse("no_aggregate", "a query must ask for at least one aggregate")
        plan = QueryPlan(
            base=base,
            joins=tuple(joins),
            where=where,
            keys=tuple(keys),
            aggregates=tuple(aggregates),
            output=tuple(output),
            usage={k: frozenset(v) for k, v in self.usage.items()},
            pinned_years=pinned,
        )
        if keys and plan.n_cells > self.cat.max_cells:
            self.refuse(
                "too_many_cells",
                f"the grouping has {plan.n_cells} cells; at most {self.cat.max_cells} are allowed",
            )
        return plan

    # -- statement shape -------------------------------------------------------------------
    def check_shape(self, stmt: exp.Select) -> None:
        if stmt.args.get("with_") or stmt.args.get("with"):
            self.refuse("subquery", "WITH (common table expressions) is not supported")
        for node in stmt.walk():
            if node is stmt:
                continue
            if isinstance(node, exp.Select | exp.Subquery | exp.SetOperation):
                self.refuse("subquery", "subqueries are not supported")
            elif isinstance(node, exp.Window):
                self.refuse("window_function", "window functions are not allowed")
            elif isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
                self.refuse("select_star", "SELECT * would release rows; ask for aggregates")
            elif isinstance(node, exp.Anonymous | exp.ReadCSV | exp.ReadParquet):
                name = (node.name if isinstance(node, exp.Anonymous) else node.key).lower()
                if name in FILE_FUNCTIONS or isinstance(node, exp.ReadCSV | exp.ReadParquet):
                    self.refuse("table_function", f"{name}() reads files; it is not allowed")
                else:
                    self.refuse("unsupported_expression", f"function {name}() is not allowed")
        if stmt.args.get("distinct"):
            self.refuse("distinct", "SELECT DISTINCT lists values; ask for aggregates")
        if stmt.args.get("having"):
            self.refuse("having", "HAVING filters on true aggregates; filter the released table")
        if stmt.args.get("limit") or stmt.args.get("offset"):
            self.refuse("limit", "LIMIT and OFFSET select rows; every group is released")
        if stmt.args.get("qualify"):
            self.refuse("window_function", "QUALIFY is not allowed")
        if stmt.args.get("order"):
            self.refuse("order_by", "ORDER BY is not supported; sort the released table")
        for arg in ("into", "laterals", "pivots", "sample", "connect", "prewhere", "settings"):
            if stmt.args.get(arg):
                self.refuse("unsupported_expression", f"{arg.upper()} is not supported")

    # -- FROM and JOIN ---------------------------------------------------------------------
    def table_ref(self, node: exp.Expression) -> TableRef | None:
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            self.refuse("table_function", "only named tables may appear in FROM")
            return None
        if node.args.get("db") or node.args.get("catalog"):
            self.refuse("unknown_table", f"qualified table names are not allowed ({node.sql()})")
            return None
        extra = {k for k, v in node.args.items() if v and k not in ("this", "alias")}
        if extra:
            self.refuse(
                "unsupported_expression",
                f"{', '.join(sorted(e.upper() for e in extra))} on a table is not supported",
            )
            return None
        name = node.name
        if name not in self.cat.tables:
            self.refuse("unknown_table", f"there is no table {name!r}; see `data catalogue`")
            return None
        if name in self.names.values():
            self.refuse("unsupported_join", f"table {name} may appear only once")
            return None
        alias = node.alias or name
        self.scope[alias] = self.cat.tables[name]
        self.scope[name] = self.cat.tables[name]
        self.names[alias] = name
        self.names[name] = name
        return TableRef(name, name)

    def from_clause(self, stmt: exp.Select) -> tuple[TableRef | None, list[Join]]:
        frm = stmt.args.get("from_") or stmt.args.get("from")
        if frm is None:
            self.refuse("unknown_table", "a query must read FROM a table")
            return None, []
        base = self.table_ref(frm.this)
        joins: list[Join] = []
        for node in stmt.args.get("joins") or []:
            join = self.join(node)
            if join is not None:
                joins.append(join)
        if base is not None and not self.cat.tables[base.name].private:
            self.refuse("unknown_table", "query a pupil table (public tables only join to one)")
        return base, joins

    def join(self, node: exp.Join) -> Join | None:
        extra = {k for k, v in node.args.items() if v and k not in ("this", "on", "using", "kind")}
        if node.args.get("side") or node.args.get("kind") not in (None, "INNER") or extra:
            kind = " ".join(
                str(node.args[k]) for k in ("method", "side", "kind") if node.args.get(k)
            ) or ", ".join(sorted(extra))
            self.refuse("unsupported_join", f"only inner joins are supported, not {kind} JOIN")
            return None
        in_scope = dict(self.names)
        right = self.table_ref(node.this)
        if right is None:
            return None
        rtable = self.cat.tables[right.name]
        pairs: list[tuple[ColumnRef, ColumnRef]] = []
        using = node.args.get("using")
        if using:
            for ident in using:
                col = ident.name
                left = self._find_in(col, in_scope)
                if left is None or col not in rtable.column_names:
                    self.refuse("unknown_column", f"USING ({col}) needs the column on both sides")
                    return None
                pairs.append((left, ColumnRef(right.name, col)))
                self.using.add(col)
        elif node.args.get("on") is not None:
            for cond in conjuncts(node.args["on"]):
                if not (isinstance(cond, exp.EQ) and _both_columns(cond)):
                    self.refuse("unsupported_join", "join conditions must be column = column")
                    return None
                a, b = (self.column(c) for c in (cond.this, cond.expression))
                if a is None or b is None:
                    return None
                pairs.append((a, b) if b.table == right.name else (b, a))
        else:
            self.refuse("unsupported_join", "a join needs USING (...) or ON a = b")
            return None
        for a, b in pairs:
            self.check_join_pair(a, b, right.name)
        return Join(right, tuple(pairs))

    def check_join_pair(self, a: ColumnRef, b: ColumnRef, right: str) -> None:
        ta, tb = self.cat.tables[a.table], self.cat.tables[b.table]
        if a.column != b.column or b.table != right:
            self.refuse("unsupported_join", f"cannot join {a.qualified} to {b.qualified}")
            return
        if ta.private and tb.private:
            if a.column not in ("pupil_id", "academic_year"):
                self.refuse("unsupported_join", "pupil tables join on pupil_id (and academic_year)")
        elif JOINABLE_PUBLIC.get(tb.name) != b.column and JOINABLE_PUBLIC.get(ta.name) != a.column:
            self.refuse(
                "unsupported_join",
                f"public tables join only on their key ({', '.join(JOINABLE_PUBLIC.values())})",
            )
        for ref in (a, b):
            self.use(ref, JOIN_KEY)

    def _find_in(self, col: str, names: dict[str, str]) -> ColumnRef | None:
        for name in dict.fromkeys(names.values()):
            if col in self.cat.tables[name].column_names:
                return ColumnRef(name, col)
        return None

    def sweep_identifiers(self, stmt: exp.Select) -> None:
        """Refuse a direct identifier wherever it hides (inside functions, CASE, casts …).

        The only places one may appear are join conditions and COUNT(DISTINCT pupil_id).
        """
        for node in stmt.find_all(exp.Column):
            if node.find_ancestor(exp.Join) is not None:
                continue
            distinct = node.parent if isinstance(node.parent, exp.Distinct) else None
            if distinct is not None and isinstance(distinct.parent, exp.Count):
                continue
            owners = [
                t for alias, t in self.names.items()
                if (not node.table or node.table == alias)
                and node.name in self.cat.tables[t].column_names
            ]  # fmt: skip
            for table in dict.fromkeys(owners):
                col = self.cat.tables[table].column(node.name)
                if col.cls is ColumnClass.DIRECT_IDENTIFIER:
                    self.refuse(
                        "direct_identifier",
                        f"{table}.{col.name} identifies a pupil; it cannot be used",
                    )

    # -- columns ---------------------------------------------------------------------------
    def column(self, node: exp.Column) -> ColumnRef | None:
        col = node.name
        qualifier = node.table
        if node.args.get("db") or node.args.get("catalog"):
            self.refuse("unknown_column", f"{node.sql()} is not a column of a table in FROM")
            return None
        if qualifier:
            if qualifier not in self.names:
                self.refuse("unknown_column", f"{qualifier}.{col}: no table {qualifier} in FROM")
                return None
            table = self.names[qualifier]
            if col not in self.cat.tables[table].column_names:
                self.refuse("unknown_column", f"table {table} has no column {col}")
                return None
            return ColumnRef(table, col)
        owners = [
            n for n in dict.fromkeys(self.names.values()) if col in self.cat.tables[n].column_names
        ]
        if not owners:
            self.refuse("unknown_column", f"no table in FROM has a column {col!r}")
            return None
        if len(owners) > 1 and col not in self.using:
            self.refuse("ambiguous_column", f"{col} is in {', '.join(owners)}: qualify it")
            return None
        return ColumnRef(owners[0], col)

    def declared(self, ref: ColumnRef) -> Column:
        return self.cat.tables[ref.table].column(ref.column)

    def check_identifier(self, ref: ColumnRef, how: str) -> bool:
        """Direct identifiers: never, except pupil_id as a join key or COUNT(DISTINCT)."""
        col = self.declared(ref)
        if col.cls is ColumnClass.DIRECT_IDENTIFIER and how not in (JOIN_KEY, COUNT_DISTINCT):
            self.refuse(
                "direct_identifier", f"{ref.qualified} identifies a pupil; it cannot be used"
            )
            return False
        if col.cls is ColumnClass.QUASI_IDENTIFIER and self.cat.domain(col) is None:
            self.refuse("quasi_identifier", f"{ref.qualified} can only be used in a coarse form")
            return False
        return True

    # -- WHERE -----------------------------------------------------------------------------
    def condition(self, node: exp.Expression) -> exp.Expression:
        """Rebuild a filter from allowed nodes only, with table-qualified columns."""
        if isinstance(node, exp.Paren):
            return exp.Paren(this=self.condition(node.this))
        if isinstance(node, exp.And | exp.Or):
            cls = type(node)
            return cls(this=self.condition(node.this), expression=self.condition(node.expression))
        if isinstance(node, exp.Not):
            return exp.Not(this=self.condition(node.this))
        if isinstance(node, exp.Column):
            ref = self.filter_column(node)
            if self.declared(ref).dtype != "BOOLEAN":
                self.refuse("unsupported_expression", f"{ref.qualified} is not a yes/no column")
                raise _Refused
            return _qualified(ref)
        if isinstance(node, COMPARISONS):
            col, lit, flipped = _column_and_literal(node)
            if col is None or lit is None:
                self.refuse(
                    "unsupported_expression", f"compare a column with a value: {node.sql()}"
                )
                raise _Refused
            ref = self.filter_column(col)
            op = _FLIP[type(node)] if flipped else type(node)  # canonical: column op value
            return op(this=_qualified(ref), expression=self.literal(lit))
        if isinstance(node, exp.In):
            if not isinstance(node.this, exp.Column) or node.args.get("query"):
                self.refuse("unsupported_expression", "IN needs a column and a list of values")
                raise _Refused
            ref = self.filter_column(node.this)
            values = [self.literal(v) for v in node.expressions]
            return exp.In(this=_qualified(ref), expressions=values)
        if isinstance(node, exp.Between):
            if not isinstance(node.this, exp.Column):
                self.refuse("unsupported_expression", "BETWEEN needs a column")
                raise _Refused
            ref = self.filter_column(node.this)
            return exp.Between(
                this=_qualified(ref),
                low=self.literal(node.args["low"]),
                high=self.literal(node.args["high"]),
            )
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            if not isinstance(node.this, exp.Column):
                self.refuse("unsupported_expression", "IS NULL needs a column")
                raise _Refused
            ref = self.filter_column(node.this)
            return exp.Is(this=_qualified(ref), expression=exp.Null())
        if isinstance(node, exp.Boolean):
            return exp.Boolean(this=bool(node.this))
        self.refuse("unsupported_expression", f"{node.key.upper()} is not allowed in a filter")
        raise _Refused

    def filter_column(self, node: exp.Column) -> ColumnRef:
        ref = self.column(node)
        if ref is None or not self.check_identifier(ref, FILTER):
            raise _Refused
        self.use(ref, FILTER)
        return ref

    def literal(self, node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
            if node.this.is_string:
                self.refuse("unsupported_expression", "cannot negate text")
                raise _Refused
            return exp.Neg(this=exp.Literal.number(node.this.this))
        if isinstance(node, exp.Literal):
            if node.is_string:
                return exp.Literal.string(node.this)
            return exp.Literal.number(node.this)
        if isinstance(node, exp.Boolean):
            return exp.Boolean(this=bool(node.this))
        if isinstance(node, exp.Null):
            return exp.Null()
        self.refuse("unsupported_expression", f"expected a value, got {node.sql()}")
        raise _Refused

    def pinned_years(self, where: exp.Expression) -> frozenset[str]:
        """Tables whose academic_year is fixed to one value by a top-level AND conjunct."""
        pinned: set[str] = set()
        for cond in conjuncts(where):
            column = cond.this if isinstance(cond, exp.EQ) else None
            if isinstance(column, exp.Column) and column.name == "academic_year":
                pinned.add(column.table)
        return frozenset(pinned)

    # -- GROUP BY and SELECT ---------------------------------------------------------------
    def group_by(self, stmt: exp.Select) -> list[GroupKey]:
        group = stmt.args.get("group")
        if not group:
            return []
        if group.args.get("all"):
            self.refuse("unsupported_expression", "GROUP BY ALL is not supported: name the keys")
        if group.args.get("rollup") or group.args.get("cube") or group.args.get("grouping_sets"):
            self.refuse(
                "unsupported_expression", "ROLLUP, CUBE and GROUPING SETS are not supported"
            )
        aliases = {p.alias: p.this for p in stmt.expressions if isinstance(p, exp.Alias)}
        keys: list[GroupKey] = []
        for item in group.expressions:
            node = item
            if isinstance(item, exp.Literal) and not item.is_string:
                index = int(item.this) - 1
                if not 0 <= index < len(stmt.expressions):
                    self.refuse("unknown_column", f"GROUP BY {item.this}: no such output column")
                    continue
                node = stmt.expressions[index].unalias()
            elif (
                isinstance(item, exp.Column)
                and not item.table
                and isinstance(aliases.get(item.name), exp.Column)
            ):
                node = aliases[item.name]
            if not isinstance(node, exp.Column):
                self.refuse("no_public_domain", f"group by plain columns only, not {node.sql()}")
                continue
            ref = self.column(node)
            if ref is None or not self.check_identifier(ref, GROUP_KEY):
                continue
            domain = self.cat.domain(self.declared(ref))
            if domain is None:
                self.refuse(
                    "no_public_domain",
                    f"{ref.qualified} has no public list of values, so it cannot be grouped",
                )
                continue
            self.use(ref, GROUP_KEY)
            keys.append(GroupKey(ref, ref.column, domain))
        return keys

    def projections(
        self, stmt: exp.Select, keys: list[GroupKey]
    ) -> tuple[list[Aggregate], list[tuple[str, int]]]:
        aggregates: list[Aggregate] = []
        output: list[tuple[str, int]] = []
        key_refs = [k.column for k in keys]
        for proj in stmt.expressions:
            alias = proj.alias if isinstance(proj, exp.Alias) else None
            node = proj.unalias()
            if isinstance(node, exp.Column):
                ref = self.column(node)
                if ref is None:
                    continue
                if ref not in key_refs:
                    if self.declared(ref).cls is ColumnClass.DIRECT_IDENTIFIER:
                        self.check_identifier(ref, GROUP_KEY)
                    self.refuse(
                        "bare_column",
                        f"{ref.qualified} is neither aggregated nor in GROUP BY; rows never leave",
                    )
                    continue
                output.append(("key", key_refs.index(ref)))
                continue
            if isinstance(node, exp.Star):
                continue  # already refused as select_star
            try:
                agg = self.aggregate(node, alias, len(aggregates))
            except _Refused:
                continue
            output.append(("agg", len(aggregates)))
            aggregates.append(agg)
        for key in keys:  # every key must be shown, so each released row is labelled
            if ("key", keys.index(key)) not in output:
                output.insert(keys.index(key), ("key", keys.index(key)))
        return aggregates, output

    def aggregate(self, node: exp.Expression, alias: str | None, n: int) -> Aggregate:
        label = alias or _default_label(node, n)
        if isinstance(node, exp.Count):
            inner = node.this
            if isinstance(inner, exp.Star):
                return Aggregate("count", label)
            if isinstance(inner, exp.Distinct):
                cols = inner.expressions
                if len(cols) == 1 and isinstance(cols[0], exp.Column):
                    ref = self.column(cols[0])
                    if ref is not None and ref.column == "pupil_id":
                        self.use(ref, COUNT_DISTINCT)
                        return Aggregate("count_distinct", label, arg=_qualified(ref))
                self.refuse("unsupported_aggregate", "COUNT(DISTINCT ...) works on pupil_id only")
                raise _Refused
            if isinstance(inner, exp.Column):
                ref = self.column(inner)
                if ref is None or not self.check_identifier(ref, AGGREGATE):
                    raise _Refused
                self.use(ref, AGGREGATE)
                return Aggregate("count", label, arg=_qualified(ref))
            self.refuse("unsupported_aggregate", f"cannot count {inner.sql()}")
            raise _Refused
        if isinstance(node, exp.Sum | exp.Avg | exp.Median | exp.PercentileCont):
            func = {exp.Sum: "sum", exp.Avg: "avg"}.get(type(node), "quantile")
            if isinstance(node, exp.Sum | exp.Avg) and isinstance(node.this, exp.Distinct):
                self.refuse("unsupported_aggregate", "DISTINCT inside SUM/AVG is not supported")
                raise _Refused
            arg, lower, upper, is_int = self.bounded(node.this)
            q = None
            if isinstance(node, exp.Median):
                q = 0.5
            elif isinstance(node, exp.PercentileCont):
                q = float(self.number(node.expression))
                if not 0.0 < q < 1.0:
                    self.refuse("unsupported_aggregate", "a quantile must be between 0 and 1")
                    raise _Refused
            resolution = 1.0 if is_int else FLOAT_RESOLUTION
            if max(abs(lower), abs(upper)) / resolution > MAX_UNITS:
                self.refuse(
                    "unbounded_argument",
                    f"{node.sql()} can range too widely for a useful answer",
                )
                raise _Refused
            return Aggregate(func, label, arg, float(lower), float(upper), resolution, q)
        if isinstance(node, exp.AggFunc):
            name = node.key.upper()
            self.refuse(
                "unsupported_aggregate",
                f"{name} is not supported; use COUNT, SUM, AVG, MEDIAN or QUANTILE_CONT",
            )
            raise _Refused
        if any(isinstance(n, exp.AggFunc) for n in node.walk()):
            self.refuse(
                "unsupported_expression",
                "arithmetic on aggregates is not supported; compute it from the released table",
            )
        else:
            self.refuse("bare_column", f"{node.sql()} is not an aggregate")
        raise _Refused

    def number(self, node: exp.Expression | None) -> float:
        if isinstance(node, exp.Literal) and not node.is_string:
            return float(node.this)
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
            return -float(node.this.this)
        self.refuse("unsupported_expression", "expected a number")
        raise _Refused

    def bounded(self, node: exp.Expression) -> tuple[exp.Expression, float, float, bool]:
        """An aggregate argument whose bounds follow from the catalogue: (expr, lo, hi, int?)."""
        if isinstance(node, exp.Paren):
            return self.bounded(node.this)
        if isinstance(node, exp.Column):
            ref = self.column(node)
            if ref is None or not self.check_identifier(ref, AGGREGATE):
                raise _Refused
            col = self.declared(ref)
            if col.bounds is None:
                hint = " (use CAST(col AS INTEGER))" if col.dtype == "BOOLEAN" else ""
                self.refuse("unbounded_argument", f"{ref.qualified} has no declared bounds{hint}")
                raise _Refused
            self.use(ref, AGGREGATE)
            lo, hi = col.bounds
            return _qualified(ref), lo, hi, col.dtype in INTEGER_TYPES
        if isinstance(node, exp.Literal | exp.Neg):
            v = self.number(node)
            return exp.Literal.number(v if not v.is_integer() else int(v)), v, v, v.is_integer()
        if isinstance(node, exp.Cast):
            target = node.to.this.name if hasattr(node.to.this, "name") else str(node.to.this)
            target = target.upper()
            if target not in INTEGER_TYPES | FLOAT_TYPES:
                self.refuse("unsupported_expression", f"cannot cast to {target}")
                raise _Refused
            inner = node.this
            if isinstance(inner, exp.Column):
                ref = self.column(inner)
                if ref is None or not self.check_identifier(ref, AGGREGATE):
                    raise _Refused
                col = self.declared(ref)
                if col.dtype == "BOOLEAN":
                    self.use(ref, AGGREGATE)
                    return (
                        exp.Cast(this=_qualified(ref), to=exp.DataType.build("INTEGER")),
                        0,
                        1,
                        True,
                    )
            expr, lo, hi, is_int = self.bounded(inner)
            as_int = target in INTEGER_TYPES
            if as_int and not is_int:
                expr = exp.Cast(this=exp.func("round", expr), to=exp.DataType.build("BIGINT"))
            return expr, lo, hi, is_int or as_int
        if isinstance(node, exp.Case):
            if node.this is not None:
                self.refuse("unsupported_expression", "use CASE WHEN condition THEN value END")
                raise _Refused
            ifs, values = [], []
            for branch in node.args.get("ifs") or []:
                cond = self.condition(branch.this)
                value = self.number(branch.args["true"])
                values.append(value)
                ifs.append(exp.If(this=cond, true=exp.Literal.number(_num(value))))
            default = node.args.get("default")
            dvalue = self.number(default) if default is not None else 0.0
            values.append(dvalue)
            expr = exp.Case(ifs=ifs, default=exp.Literal.number(_num(dvalue)))
            return expr, min(values), max(values), all(float(v).is_integer() for v in values)
        if isinstance(node, exp.Add | exp.Sub):
            a, alo, ahi, ai = self.bounded(node.this)
            b, blo, bhi, bi = self.bounded(node.expression)
            if isinstance(node, exp.Add):
                return exp.Add(this=a, expression=b), alo + blo, ahi + bhi, ai and bi
            return exp.Sub(this=a, expression=b), alo - bhi, ahi - blo, ai and bi
        if isinstance(node, exp.Mul):
            for left, right in ((node.this, node.expression), (node.expression, node.this)):
                if isinstance(right, exp.Literal | exp.Neg):
                    k = self.number(right)
                    a, lo, hi, is_int = self.bounded(left)
                    lo, hi = sorted((lo * k, hi * k))
                    return (
                        exp.Mul(this=a, expression=exp.Literal.number(_num(k))),
                        lo,
                        hi,
                        (is_int and float(k).is_integer()),
                    )
        self.refuse(
            "unsupported_expression",
            f"{node.sql()} has no bounds the catalogue can vouch for",
        )
        raise _Refused


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v


def _qualified(ref: ColumnRef) -> exp.Column:
    return exp.column(ref.column, table=ref.table, quoted=True)


def conjuncts(node: exp.Expression) -> Iterable[exp.Expression]:
    if isinstance(node, exp.Paren):
        yield from conjuncts(node.this)
    elif isinstance(node, exp.And):
        yield from conjuncts(node.this)
        yield from conjuncts(node.expression)
    else:
        yield node


def _both_columns(cond: exp.Expression) -> bool:
    return isinstance(cond.this, exp.Column) and isinstance(cond.expression, exp.Column)


def _column_and_literal(
    node: exp.Expression,
) -> tuple[exp.Column | None, exp.Expression | None, bool]:
    a, b = node.this, node.expression
    if isinstance(a, exp.Column) and not isinstance(b, exp.Column):
        return a, b, False
    if isinstance(b, exp.Column) and not isinstance(a, exp.Column):
        return b, a, True
    return None, None, False


def _default_label(node: exp.Expression, n: int) -> str:
    if isinstance(node, exp.Count):
        if isinstance(node.this, exp.Star):
            return "count_star"
        if isinstance(node.this, exp.Distinct):
            return "count_distinct_pupils"
    cols = [c.name for c in node.find_all(exp.Column)]
    name = node.key.lower()
    return f"{name}_{cols[0]}" if cols else f"{name}_{n + 1}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
