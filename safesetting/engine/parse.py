"""Researcher SQL → ``QueryPlan``, or every reason it cannot be answered.

Deny by default: only node types, tables, columns and functions named here get through.
Syntax errors are unusable input (``UsageError``, exit 2); a well-formed query that breaks a
rule is a refusal with reason codes (exit 3), which the service audits as ``query.denied``.

What is accepted, and why each form is sound, is in ``docs/PRIVACY.md``: joins follow the
join rule (``joins.py``), every literal has its column's type (``types.py``), aggregate
arguments have interval bounds (``bounds.py``), and the plan is rebuilt from the accepted
nodes only, so the engine's SQL means what the researcher wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError, TokenError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from safesetting.engine import expressions
from safesetting.engine.bounds import contribution_bound
from safesetting.engine.joins import JoinError, attach
from safesetting.engine.plan import (
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
from safesetting.engine.types import LiteralError, identifier_shaped, typed_literal
from safesetting.errors import Reason, UsageError
from synthetic.schema import TABLES, Column, ColumnClass, Table

# sqlglot logs a warning echoing unsupported SQL; the refusal already says what happened.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

MAX_SQL_LENGTH = 20_000
MAX_MESSAGE = 200  # characters of one refusal's message (they quote the caller's SQL)
MAX_POSITION_DIGITS = 4  # GROUP BY 9999 is already far past any SELECT list
FILE_FUNCTIONS = {
    "read_csv", "read_csv_auto", "read_parquet", "read_json", "read_json_auto", "read_blob",
    "read_text", "glob", "parquet_scan", "sniff_csv", "query", "query_table",
}  # fmt: skip
MAX_CELLS = 5_000
MAX_NODES = 8  # tables in one query, copies included
MAX_ROWS_PER_PUPIL_JOINED = 400  # one pupil's joined rows before truncation (census x absence)
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
MEMBERSHIP = (exp.EQ, exp.NEQ)
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


class Refused(Exception):
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
        self.nodes: dict[str, str] = {}  # canonical alias -> table name
        self.written: dict[str, str] = {}  # the name a query uses for a node -> canonical
        self.merged: dict[str, list[set[str]]] = {}  # USING column -> groups of nodes
        self.usage: dict[str, set[str]] = {}
        self.fine: set[str] = set()

    # -- helpers ---------------------------------------------------------------------------
    def refuse(self, code: str, message: str) -> None:
        # A message quotes the caller's SQL: never more than MAX_MESSAGE characters of it
        # (a 20,000-digit literal must not come back as a 40 KB refusal).
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
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
        except (SqlglotError, ValueError, TypeError, KeyError, IndexError):
            # sqlglot raises a few other errors on odd input: still unusable input.
            raise UsageError("could not parse the SQL") from None
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
                pinned = pinned_years(where)
            except Refused:
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
            fine=frozenset(self.fine),
        )
        if keys and plan.n_cells > self.cat.max_cells:
            self.refuse(
                "too_many_cells",
                f"the grouping has {plan.n_cells} cells; at most {self.cat.max_cells} are allowed",
            )
        if not self.reasons:  # a width from a half-read plan would only confuse
            self.check_width(plan)
        return plan

    def check_width(self, plan: QueryPlan) -> None:
        """Refuse a join that could give one pupil more than ``MAX_ROWS_PER_PUPIL_JOINED``
        rows before truncation, or more than ``MAX_NODES`` tables: otherwise how long a
        query runs (and whether it hits the time limit) could depend on one pupil's record."""
        if len(plan.nodes) > MAX_NODES:
            self.refuse("join_too_wide", f"a query may join at most {MAX_NODES} tables")
            return
        natural = contribution_bound(plan.aliases, plan.year_joins, plan.pinned_years).natural
        if natural > MAX_ROWS_PER_PUPIL_JOINED:
            self.refuse(
                "join_too_wide",
                f"this join could give one pupil up to {natural:,} rows (at most "
                f"{MAX_ROWS_PER_PUPIL_JOINED} are allowed): join pupil tables on academic_year "
                "too, or fix their year with WHERE academic_year = …",
            )

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
        alias = node.alias or ""
        if isinstance(node.args.get("alias"), exp.TableAlias) and node.args["alias"].columns:
            self.refuse("unsupported_join", "column aliases on a table are not supported")
            return None
        if alias and alias != name and alias in self.cat.tables:
            self.refuse(
                "unsupported_join",
                f"the alias {alias} shadows the table {alias}: choose another alias",
            )
            return None
        written = alias or name
        if written in self.written:
            self.refuse(
                "unsupported_join",
                f"{written} appears twice in FROM: give each copy of a table its own alias",
            )
            return None
        copies = sum(1 for t in self.nodes.values() if t == name)
        canonical = name if copies == 0 else f"{name}_{copies + 1}"
        self.nodes[canonical] = name
        self.written[written] = canonical
        return TableRef(name, canonical)

    def from_clause(self, stmt: exp.Select) -> tuple[TableRef | None, list[Join]]:
        frm = stmt.args.get("from_") or stmt.args.get("from")
        if frm is None:
            self.refuse("unknown_table", "a query must read FROM a table")
            return None, []
        base = self.table_ref(frm.this)
        joins: list[Join] = []
        for node in stmt.args.get("joins") or []:
            join = self.join(node)
            if join is None:
                return None, joins  # later joins could not be checked against this one
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
        joined = set(self.nodes)
        right = self.table_ref(node.this)
        if right is None:
            return None
        pairs: list[tuple[ColumnRef, ColumnRef]] = []
        using = node.args.get("using")
        try:
            if using:
                pairs = [self.using_pair(ident.name, right, joined) for ident in using]
            elif node.args.get("on") is not None:
                for cond in conjuncts(node.args["on"]):
                    if not (isinstance(cond, exp.EQ) and _both_columns(cond)):
                        self.refuse("unsupported_join", "join conditions must be column = column")
                        return None
                    a, b = (self.column(c) for c in (cond.this, cond.expression))
                    if a is None or b is None:
                        return None
                    pairs.append((a, b))
            join = attach(right, pairs, joined)
        except Refused:
            return None
        except JoinError as exc:
            self.refuse("unsupported_join", exc.message)
            return None
        for a, b in join.on:
            self.use(a, JOIN_KEY)
            self.use(b, JOIN_KEY)
        return join

    def using_pair(self, col: str, right: TableRef, joined: set[str]) -> tuple[ColumnRef, ...]:
        """``USING (col)``: the joined node holding ``col`` (one, or one merged group, as in
        DuckDB) and the new node's column; then the new node joins that group."""
        owners = [a for a in self.nodes if a in joined and col in self.cat.tables[self.nodes[a]]
                  .column_names]  # fmt: skip
        if not owners or col not in self.cat.tables[right.name].column_names:
            self.refuse("unknown_column", f"USING ({col}) needs the column on both sides")
            raise Refused
        group = self._merged_group(col, owners)
        if group is None:
            self.refuse(
                "ambiguous_column",
                f"USING ({col}) could mean {' or '.join(f'{o}.{col}' for o in owners)}: "
                "join with ON and name the columns",
            )
            raise Refused
        group.add(right.alias)
        left = owners[0]
        return ColumnRef(self.nodes[left], col, left), ColumnRef(right.name, col, right.alias)

    def _merged_group(self, col: str, owners: list[str]) -> set[str] | None:
        groups = self.merged.setdefault(col, [])
        if len(owners) == 1:
            for group in groups:
                if owners[0] in group:
                    return group
            groups.append({owners[0]})
            return groups[-1]
        for group in groups:
            if set(owners) <= group:
                return group
        return None

    def sweep_identifiers(self, stmt: exp.Select) -> None:
        """Refuse a direct identifier wherever it hides (inside functions, CASE, casts …),
        and any text shaped like a UPN or a postcode (the audit log may not hold one).

        The only places ``pupil_id`` may appear are join conditions and COUNT(DISTINCT).
        """
        for literal in stmt.find_all(exp.Literal):
            if literal.is_string and identifier_shaped(str(literal.this)):
                self.refuse(
                    "direct_identifier",
                    "a value shaped like a UPN or a postcode cannot be used in a query",
                )
        for node in stmt.find_all(exp.Column):
            if node.find_ancestor(exp.Join) is not None:
                continue
            distinct = node.parent if isinstance(node.parent, exp.Distinct) else None
            if distinct is not None and isinstance(distinct.parent, exp.Count):
                continue
            owners = [
                t for written, alias in self.written.items()
                if (not node.table or node.table == written)
                and node.name in self.cat.tables[t := self.nodes[alias]].column_names
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
            alias = self.written.get(qualifier)
            if alias is None:
                aliased = [w for w, a in self.written.items() if self.nodes[a] == qualifier]
                hint = f" (it is called {aliased[0]} here)" if aliased else ""
                self.refuse(
                    "unknown_column", f"{qualifier}.{col}: no table {qualifier} in FROM{hint}"
                )
                return None
            table = self.nodes[alias]
            if col not in self.cat.tables[table].column_names:
                self.refuse("unknown_column", f"table {table} has no column {col}")
                return None
            return ColumnRef(table, col, alias)
        owners = [a for a, t in self.nodes.items() if col in self.cat.tables[t].column_names]
        if not owners:
            self.refuse("unknown_column", f"no table in FROM has a column {col!r}")
            return None
        if len(owners) > 1 and not any(set(owners) <= g for g in self.merged.get(col, [])):
            self.refuse("ambiguous_column", f"{col} is in {', '.join(owners)}: qualify it")
            return None
        return ColumnRef(self.nodes[owners[0]], col, owners[0])

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
        """Rebuild a filter from allowed nodes only, with node-qualified columns and typed
        literals; operands of AND, OR and NOT keep their grouping (brackets)."""
        if isinstance(node, exp.Paren):
            return exp.Paren(this=self.condition(node.this))
        if isinstance(node, exp.And | exp.Or):
            cls = type(node)
            return cls(
                this=_grouped(self.condition(node.this)),
                expression=_grouped(self.condition(node.expression)),
            )
        if isinstance(node, exp.Not):
            return exp.Not(this=_grouped(self.condition(node.this)))
        if isinstance(node, exp.Column):
            ref = self.filter_column(node)
            if self.declared(ref).dtype != "BOOLEAN":
                self.refuse("type_mismatch", f"{ref.qualified} is not a yes/no column")
                raise Refused
            return _qualified(ref)
        if isinstance(node, COMPARISONS):
            col, lit, flipped = _column_and_literal(node)
            if col is None or lit is None:
                self.refuse(
                    "unsupported_expression", f"compare a column with a value: {node.sql()}"
                )
                raise Refused
            op = _FLIP[type(node)] if flipped else type(node)  # canonical: column op value
            ref = self.filter_column(col, coarse=op in MEMBERSHIP)
            return op(this=_qualified(ref), expression=self.typed(ref, lit, op in MEMBERSHIP))
        if isinstance(node, exp.In):
            if not isinstance(node.this, exp.Column) or node.args.get("query"):
                self.refuse("unsupported_expression", "IN needs a column and a list of values")
                raise Refused
            ref = self.filter_column(node.this)
            values = [self.typed(ref, v, True) for v in node.expressions]
            return exp.In(this=_qualified(ref), expressions=values)
        if isinstance(node, exp.Between):
            if not isinstance(node.this, exp.Column):
                self.refuse("unsupported_expression", "BETWEEN needs a column")
                raise Refused
            if node.args.get("symmetric"):  # not DuckDB SQL: never silently rebuilt as BETWEEN
                self.refuse(
                    "unsupported_expression",
                    "BETWEEN SYMMETRIC is not supported: write BETWEEN low AND high",
                )
                raise Refused
            ref = self.filter_column(node.this, coarse=False)
            low, high = (self.typed(ref, node.args[k], False) for k in ("low", "high"))
            return exp.Between(this=_qualified(ref), low=low, high=high)
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            if not isinstance(node.this, exp.Column):
                self.refuse("unsupported_expression", "IS NULL needs a column")
                raise Refused
            ref = self.filter_column(node.this)
            return exp.Is(this=_qualified(ref), expression=exp.Null())
        if isinstance(node, exp.Boolean):
            return exp.Boolean(this=bool(node.this))
        self.refuse("unsupported_expression", f"{node.key.upper()} is not allowed in a filter")
        raise Refused

    def filter_column(self, node: exp.Column, coarse: bool = True) -> ColumnRef:
        """A column in a filter; ``coarse`` is False for range comparisons (``<``,
        ``BETWEEN``), which the policy refuses on quasi-identifiers."""
        ref = self.column(node)
        if ref is None or not self.check_identifier(ref, FILTER):
            raise Refused
        self.use(ref, FILTER)
        if not coarse:
            self.fine.add(ref.qualified)
        return ref

    def typed(self, ref: ColumnRef, node: exp.Expression, membership: bool) -> exp.Expression:
        col = self.declared(ref)
        try:
            return typed_literal(
                ref.qualified, col, self.cat.domain(col), node, membership=membership
            )
        except LiteralError as exc:
            self.refuse(exc.code, exc.message)
            raise Refused from None

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
                index = _position(item.this) - 1
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
            if any(k.column == ref for k in keys):
                continue  # GROUP BY a, a groups by a
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
                agg = expressions.aggregate(self, node, alias, len(aggregates))
            except Refused:
                continue
            output.append(("agg", len(aggregates)))
            aggregates.append(agg)
        for key in keys:  # every key must be shown, so each released row is labelled
            if ("key", keys.index(key)) not in output:
                output.insert(keys.index(key), ("key", keys.index(key)))
        return aggregates, output


def pinned_years(where: exp.Expression) -> frozenset[str]:
    """Nodes whose academic_year is fixed to one value by a top-level AND conjunct."""
    pinned: set[str] = set()
    for cond in conjuncts(where):
        column = cond.this if isinstance(cond, exp.EQ) else None
        if isinstance(column, exp.Column) and column.name == "academic_year":
            pinned.add(column.table)
    return frozenset(pinned)


def _position(text: str) -> int:
    """A ``GROUP BY`` position: a whole number, else unusable input (audited as invalid)."""
    if str(text).isascii() and str(text).isdigit() and len(str(text)) > MAX_POSITION_DIGITS:
        raise UsageError(
            f"GROUP BY {str(text)[:MAX_POSITION_DIGITS]}…: no such output column "
            f"(a position has at most {MAX_POSITION_DIGITS} digits)"
        )
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        value = Decimal("NaN")
    if (
        not value.is_finite()
        or value != value.to_integral_value()
        or "." in str(text)
        or ("e" in str(text).lower())
    ):
        raise UsageError(
            f"GROUP BY {str(text)[:20]}: a position is written in plain digits (GROUP BY 1, 2)"
        )
    return int(value)


def _grouped(node: exp.Expression) -> exp.Expression:
    """Keep a compound operand bracketed, so the rebuilt filter means what was written."""
    return exp.Paren(this=node) if isinstance(node, exp.Connector | exp.Not) else node


def _qualified(ref: ColumnRef) -> exp.Column:
    return exp.column(ref.column, table=ref.node, quoted=True)


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


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
