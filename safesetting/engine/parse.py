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

from policies.reasons import reason
from safesetting.engine import expressions
from safesetting.engine.bounds import contribution_bound
from safesetting.engine.joins import JoinError, attach
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
from safesetting.engine.types import LiteralError, identifier_shaped, typed_literal
from safesetting.errors import Reason, UsageError
from synthetic.schema import TABLES, Column, Table

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
        self.accounted: set[int] = set()  # id() of every Column node whose use is recorded
        self.uses: dict[ColumnRef, set[tuple[str, bool]]] = {}  # per node: (use, coarse)

    # -- helpers ---------------------------------------------------------------------------
    def refuse(self, key: str, /, **params: object) -> None:
        """Record the registry's reason ``key`` (``code`` or ``code.variant``)."""
        self.add(reason(key, **params))

    def add(self, found: Reason) -> None:
        # A message quotes the caller's SQL: never more than MAX_MESSAGE characters of it
        # (a 20,000-digit literal must not come back as a 40 KB refusal).
        message = found.message
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        found = Reason(found.code, message)
        if found not in self.reasons:
            self.reasons.append(found)

    def use(
        self, ref: ColumnRef, how: str, node: exp.Expression | None = None, *, coarse: bool
    ) -> None:
        """Report that the query uses ``ref`` as ``how`` (for ``decide()`` to classify).

        ``coarse`` is True only when the use touches nothing but the column's public values
        (a group key of its public domain, ``=``, ``<>`` or ``IN`` with values from it, a
        join on a key that has one); a column with any other use is reported as ``fine``.
        ``node`` is the query's own column node, so that the final sweep can tell which
        columns were reported."""
        self.usage.setdefault(ref.qualified, set()).add(how)
        self.uses.setdefault(ref, set()).add((how, coarse))
        if not coarse:
            self.fine.add(ref.qualified)
        if node is not None:
            self.accounted.add(id(node))

    def share_equal_uses(self, joins: list[Join]) -> None:
        """A join equality makes two columns one value in every joined row, so a use of
        either is a use of both: after ``ON schools.urn = census.urn``, ``schools.urn <
        100500`` is a range on the pupil's school (``census.urn``, a quasi-identifier), and
        the policy must classify both columns."""
        classes: list[set[ColumnRef]] = []
        for join in joins:
            for a, b in join.on:
                merged = {a, b}
                for joined in [c for c in classes if c & merged]:
                    merged |= joined
                    classes.remove(joined)
                classes.append(merged)
        for members in classes:
            shared = set().union(*(self.uses.get(m, set()) for m in members))
            for member in members:
                for how, coarse in shared:
                    self.use(member, how, coarse=coarse)

    def public(self, ref: ColumnRef) -> bool:
        """Whether ``ref``'s column has a public list of values (its domain)."""
        return self.cat.domain(self.declared(ref)) is not None

    def refusal(self) -> Refusal:
        return Refusal(
            tuple(self.reasons),
            usage={k: frozenset(v) for k, v in self.usage.items()},
            fine=frozenset(self.fine),
        )

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
            self.refuse("multiple_statements")
            return self.refusal()
        # DuckDB identifiers are case-insensitive, quoted or not.
        stmt = normalize_identifiers(statements[0], dialect="duckdb")
        for ident in stmt.find_all(exp.Identifier):
            ident.set("this", ident.this.lower())
        if not isinstance(stmt, exp.Select):
            if isinstance(stmt, exp.SetOperation):
                self.refuse("subquery.set_operation")
            else:
                self.refuse("not_a_query.statement", kind=stmt.key.upper())
            return self.refusal()
        try:
            plan = self.select(stmt)
        except RecursionError:
            raise UsageError("the query is nested too deeply") from None
        if self.reasons or plan is None:
            return self.refusal()
        return plan

    def select(self, stmt: exp.Select) -> QueryPlan | None:
        self.check_shape(stmt)
        base, joins = self.from_clause(stmt)
        if base is None:
            self.sweep_columns(stmt)  # report what the tables read so far name
            return None
        self.sweep_literals(stmt)
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
            self.refuse("no_aggregate.none")
        self.sweep_columns(stmt)
        self.share_equal_uses(joins)
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
            self.refuse("too_many_cells.grouping", cells=plan.n_cells, limit=self.cat.max_cells)
        if not self.reasons:  # a width from a half-read plan would only confuse
            self.check_width(plan)
        return plan

    def check_width(self, plan: QueryPlan) -> None:
        """Refuse a join that could give one pupil more than ``MAX_ROWS_PER_PUPIL_JOINED``
        rows before truncation, or more than ``MAX_NODES`` tables: otherwise how long a
        query runs (and whether it hits the time limit) could depend on one pupil's record."""
        if len(plan.nodes) > MAX_NODES:
            self.refuse("join_too_wide.tables", limit=MAX_NODES)
            return
        natural = contribution_bound(plan.aliases, plan.year_joins, plan.pinned_years).natural
        if natural > MAX_ROWS_PER_PUPIL_JOINED:
            self.refuse("join_too_wide.rows", rows=natural, limit=MAX_ROWS_PER_PUPIL_JOINED)

    # -- statement shape -------------------------------------------------------------------
    def check_shape(self, stmt: exp.Select) -> None:
        if stmt.args.get("with_") or stmt.args.get("with"):
            self.refuse("subquery.with")
        for node in stmt.walk():
            if node is stmt:
                continue
            if isinstance(node, exp.Select | exp.Subquery | exp.SetOperation):
                self.refuse("subquery.nested")
            elif isinstance(node, exp.Window):
                self.refuse("window_function")
            elif isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
                self.refuse("select_star.rows")
            elif isinstance(node, exp.Anonymous | exp.ReadCSV | exp.ReadParquet):
                name = (node.name if isinstance(node, exp.Anonymous) else node.key).lower()
                if name in FILE_FUNCTIONS or isinstance(node, exp.ReadCSV | exp.ReadParquet):
                    self.refuse("table_function.file", name=name)
                else:
                    self.refuse("unsupported_expression.function", name=name)
        if stmt.args.get("distinct"):
            self.refuse("distinct.values")
        if stmt.args.get("having"):
            self.refuse("having.true_values")
        if stmt.args.get("limit") or stmt.args.get("offset"):
            self.refuse("limit.rows")
        if stmt.args.get("qualify"):
            self.refuse("window_function.qualify")
        if stmt.args.get("order"):
            self.refuse("order_by.sort")
        for arg in ("into", "laterals", "pivots", "sample", "connect", "prewhere", "settings"):
            if stmt.args.get(arg):
                self.refuse("unsupported_expression.clause", clause=arg.upper())

    # -- FROM and JOIN ---------------------------------------------------------------------
    def table_ref(self, node: exp.Expression) -> TableRef | None:
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            self.refuse("table_function.from")
            return None
        if node.args.get("db") or node.args.get("catalog"):
            self.refuse("unknown_table.qualified", sql=node.sql())
            return None
        extra = {k for k, v in node.args.items() if v and k not in ("this", "alias")}
        if extra:
            options = ", ".join(sorted(e.upper() for e in extra))
            self.refuse("unsupported_expression.table_option", options=options)
            return None
        name = node.name
        if name not in self.cat.tables:
            self.refuse("unknown_table.named", name=name)
            return None
        alias = node.alias or ""
        if isinstance(node.args.get("alias"), exp.TableAlias) and node.args["alias"].columns:
            self.refuse("unsupported_join.column_aliases")
            return None
        if alias and alias != name and alias in self.cat.tables:
            self.refuse("unsupported_join.shadow", alias=alias)
            return None
        written = alias or name
        if written in self.written:
            self.refuse("unsupported_join.twice", name=written)
            return None
        copies = sum(1 for t in self.nodes.values() if t == name)
        canonical = name if copies == 0 else f"{name}_{copies + 1}"
        self.nodes[canonical] = name
        self.written[written] = canonical
        return TableRef(name, canonical)

    def from_clause(self, stmt: exp.Select) -> tuple[TableRef | None, list[Join]]:
        frm = stmt.args.get("from_") or stmt.args.get("from")
        if frm is None:
            self.refuse("unknown_table.no_from")
            return None, []
        base = self.table_ref(frm.this)
        joins: list[Join] = []
        for node in stmt.args.get("joins") or []:
            join = self.join(node)
            if join is None:
                return None, joins  # later joins could not be checked against this one
            joins.append(join)
        if base is not None and not self.cat.tables[base.name].private:
            self.refuse("unknown_table.public_base")
        return base, joins

    def join(self, node: exp.Join) -> Join | None:
        extra = {k for k, v in node.args.items() if v and k not in ("this", "on", "using", "kind")}
        if node.args.get("side") or node.args.get("kind") not in (None, "INNER") or extra:
            kind = " ".join(
                str(node.args[k]) for k in ("method", "side", "kind") if node.args.get(k)
            ) or ", ".join(sorted(extra))
            self.refuse("unsupported_join.kind", kind=kind)
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
                        self.refuse("unsupported_join.condition")
                        return None
                    a, b = (self.column(c) for c in (cond.this, cond.expression))
                    if a is None or b is None:
                        return None
                    self.accounted |= {id(cond.this), id(cond.expression)}
                    pairs.append((a, b))
            for a, b in pairs:  # reported even if the join rule then refuses the join
                self.use(a, JOIN_KEY, coarse=self.public(a))
                self.use(b, JOIN_KEY, coarse=self.public(b))
            return attach(right, pairs, joined)
        except Refused:
            return None
        except JoinError as exc:
            self.add(exc.reason)
            return None

    def using_pair(self, col: str, right: TableRef, joined: set[str]) -> tuple[ColumnRef, ...]:
        """``USING (col)``: the joined node holding ``col`` (one, or one merged group, as in
        DuckDB) and the new node's column; then the new node joins that group."""
        owners = [a for a in self.nodes if a in joined and col in self.cat.tables[self.nodes[a]]
                  .column_names]  # fmt: skip
        if not owners or col not in self.cat.tables[right.name].column_names:
            self.refuse("unknown_column.using", column=col)
            raise Refused
        group = self._merged_group(col, owners)
        if group is None:
            choices = " or ".join(f"{o}.{col}" for o in owners)
            self.refuse("ambiguous_column.using", column=col, choices=choices)
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

    def sweep_literals(self, stmt: exp.Select) -> None:
        """Refuse any text shaped like a UPN or a postcode, wherever it is (the audit log
        may not hold one, so this is the parser's, whatever the columns' classes)."""
        for literal in stmt.find_all(exp.Literal):
            if literal.is_string and identifier_shaped(str(literal.this)):
                self.refuse("direct_identifier.shaped_value")

    def sweep_columns(self, stmt: exp.Select) -> None:
        """Fail closed: every column of a table in FROM that the query names must have been
        reported with its use, so ``decide()`` classifies it. A column the walk above did not
        report (inside a function, a ``LIKE``, a window, an ``ORDER BY`` …) is reported here
        with the use of the clause it sits in, as not coarse, and refused if nothing else
        already refuses the query."""
        for node in stmt.find_all(exp.Column):
            if id(node) in self.accounted:
                continue
            for ref in dict.fromkeys(self.named(node)):
                self.use(ref, _clause_use(node), node, coarse=False)
                if not self.reasons:
                    self.refuse("unsupported_expression.column_use", column=ref.qualified)

    def named(self, node: exp.Column) -> list[ColumnRef]:
        """Every column of a table in FROM that ``node`` could name, however it is dotted:
        ``upn``, ``p.upn``, and the struct-field forms ``upn.x``, ``p.upn.x`` …"""
        parts = [node.args.get(k) for k in ("catalog", "db", "table", "this")]
        names = [part.name for part in parts if part is not None]
        refs: list[ColumnRef] = []
        for i, name in enumerate(names):
            if i == 0:  # a bare name: a column of any node that has one so named
                owners = list(self.nodes)
            else:  # after a name for a node: that node's column
                alias = self.written.get(names[i - 1])
                owners = [alias] if alias is not None else []
            refs += [
                ColumnRef(self.nodes[a], name, a)
                for a in owners
                if name in self.cat.tables[self.nodes[a]].column_names
            ]
        return refs

    # -- columns ---------------------------------------------------------------------------
    def column(self, node: exp.Column) -> ColumnRef | None:
        col = node.name
        qualifier = node.table
        if node.args.get("db") or node.args.get("catalog"):
            self.refuse("unknown_column.qualified", sql=node.sql())
            return None
        if qualifier:
            alias = self.written.get(qualifier)
            if alias is None:
                aliased = [w for w, a in self.written.items() if self.nodes[a] == qualifier]
                if aliased:
                    self.refuse(
                        "unknown_column.aliased", qualifier=qualifier, column=col, alias=aliased[0]
                    )
                else:
                    self.refuse("unknown_column.no_table", qualifier=qualifier, column=col)
                return None
            table = self.nodes[alias]
            if col not in self.cat.tables[table].column_names:
                self.refuse("unknown_column.in_table", table=table, column=col)
                return None
            return ColumnRef(table, col, alias)
        owners = [a for a, t in self.nodes.items() if col in self.cat.tables[t].column_names]
        if not owners:
            self.refuse("unknown_column.anywhere", column=col)
            return None
        if len(owners) > 1 and not any(set(owners) <= g for g in self.merged.get(col, [])):
            self.refuse("ambiguous_column.owners", column=col, owners=", ".join(owners))
            return None
        return ColumnRef(self.nodes[owners[0]], col, owners[0])

    def declared(self, ref: ColumnRef) -> Column:
        return self.cat.tables[ref.table].column(ref.column)

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
                self.refuse("type_mismatch.not_boolean", column=ref.qualified)
                raise Refused
            return _qualified(ref)
        if isinstance(node, COMPARISONS):
            col, lit, flipped = _column_and_literal(node)
            if col is None or lit is None:
                self.refuse("unsupported_expression.comparison", sql=node.sql())
                raise Refused
            op = _FLIP[type(node)] if flipped else type(node)  # canonical: column op value
            ref = self.filter_column(col, membership=op in MEMBERSHIP)
            return op(this=_qualified(ref), expression=self.typed(ref, lit, op in MEMBERSHIP))
        if isinstance(node, exp.In):
            if not isinstance(node.this, exp.Column) or node.args.get("query"):
                self.refuse("unsupported_expression.in_list")
                raise Refused
            ref = self.filter_column(node.this)
            values = [self.typed(ref, v, True) for v in node.expressions]
            return exp.In(this=_qualified(ref), expressions=values)
        if isinstance(node, exp.Between):
            if not isinstance(node.this, exp.Column):
                self.refuse("unsupported_expression.between")
                raise Refused
            if node.args.get("symmetric"):  # not DuckDB SQL: never silently rebuilt as BETWEEN
                self.refuse("unsupported_expression.symmetric")
                raise Refused
            ref = self.filter_column(node.this, membership=False)
            low, high = (self.typed(ref, node.args[k], False) for k in ("low", "high"))
            return exp.Between(this=_qualified(ref), low=low, high=high)
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            if not isinstance(node.this, exp.Column):
                self.refuse("unsupported_expression.is_null")
                raise Refused
            ref = self.filter_column(node.this)
            return exp.Is(this=_qualified(ref), expression=exp.Null())
        if isinstance(node, exp.Boolean):
            return exp.Boolean(this=bool(node.this))
        self.refuse("unsupported_expression.in_filter", name=node.key.upper())
        raise Refused

    def filter_column(self, node: exp.Column, membership: bool = True) -> ColumnRef:
        """A column in a filter, reported as a ``FILTER`` use. It is coarse only for
        membership (``=``, ``<>``, ``IN``, ``IS NULL``, a yes/no column) in a column with
        a public list of values (every value compared with is then one of them); a range
        (``<``, ``BETWEEN``) or a column without a public list is fine, which the policy
        refuses for quasi-identifiers."""
        ref = self.column(node)
        if ref is None:
            raise Refused
        self.use(ref, FILTER, node, coarse=membership and self.public(ref))
        return ref

    def typed(self, ref: ColumnRef, node: exp.Expression, membership: bool) -> exp.Expression:
        col = self.declared(ref)
        try:
            return typed_literal(
                ref.qualified, col, self.cat.domain(col), node, membership=membership
            )
        except LiteralError as exc:
            self.add(exc.reason)
            raise Refused from None

    # -- GROUP BY and SELECT ---------------------------------------------------------------
    def group_by(self, stmt: exp.Select) -> list[GroupKey]:
        group = stmt.args.get("group")
        if not group:
            return []
        if group.args.get("all"):
            self.refuse("unsupported_expression.group_by_all")
        if group.args.get("rollup") or group.args.get("cube") or group.args.get("grouping_sets"):
            self.refuse("unsupported_expression.grouping_sets")
        aliases = {p.alias: p.this for p in stmt.expressions if isinstance(p, exp.Alias)}
        keys: list[GroupKey] = []
        for item in group.expressions:
            node = item
            if isinstance(item, exp.Literal) and not item.is_string:
                index = _position(item.this) - 1
                if not 0 <= index < len(stmt.expressions):
                    self.refuse("unknown_column.position", position=item.this)
                    continue
                node = stmt.expressions[index].unalias()
            elif (
                isinstance(item, exp.Column)
                and not item.table
                and isinstance(aliases.get(item.name), exp.Column)
            ):
                node = aliases[item.name]
                self.accounted.add(id(item))  # names a SELECT item: that column is reported
            if not isinstance(node, exp.Column):
                self.refuse("no_public_domain.expression", sql=node.sql())
                continue
            ref = self.column(node)
            if ref is None:
                continue
            domain = self.cat.domain(self.declared(ref))
            # A group key is released with every value of its public domain, so it needs
            # one (a shape rule, whatever the column's class); as a key it is coarse.
            self.use(ref, GROUP_KEY, node, coarse=domain is not None)
            if domain is None:
                self.refuse("no_public_domain.group_key", column=ref.qualified)
                continue
            if any(k.column == ref for k in keys):
                continue  # GROUP BY a, a groups by a
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
                    # Reported by the final sweep (as a group key that is not coarse).
                    self.refuse("bare_column.ungrouped", column=ref.qualified)
                    continue
                self.accounted.add(id(node))  # the key's own use is already reported
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


def _clause_use(node: exp.Column) -> str:
    """The use a column has from where it sits, for a column the walk could not place:
    conservative, and reported as not coarse."""
    if node.find_ancestor(exp.Join) is not None:
        return JOIN_KEY
    if isinstance(node.parent, exp.Distinct) and isinstance(node.parent.parent, exp.Count):
        return COUNT_DISTINCT
    if node.find_ancestor(exp.AggFunc) is not None:
        return AGGREGATE
    if node.find_ancestor(exp.Where, exp.Having, exp.Qualify) is not None:
        return FILTER
    return GROUP_KEY  # in the SELECT list, GROUP BY, ORDER BY …: shown as it is


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
