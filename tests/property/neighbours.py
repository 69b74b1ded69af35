"""The neighbour harness: random accepted queries over random schema-valid data, and one
extra pupil holding the most rows every table allows and extreme values.

Used by ``test_neighbours.py`` (the privacy properties) and ``tests/spec/
test_expressions_spec.py`` (the engine's SQL means what the researcher wrote). Everything
here is built from ``synthetic.schema``: tables, columns, types, domains, bounds and the
constraints the contribution bounds rely on.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
from hypothesis import strategies as st

from safesetting.engine.bounds import contribution_bound
from safesetting.engine.compile import CompiledQuery, compile_plan
from safesetting.engine.noise import gather, sensitivity
from safesetting.engine.parse import MAX_ROWS_PER_PUPIL_JOINED, Catalogue, parse_query
from safesetting.engine.plan import QueryPlan
from safesetting.engine.planes.duckdb import DuckDBPlane
from safesetting.engine.types import value_range
from synthetic import codes
from synthetic.load import create_table_sql
from synthetic.schema import PRIVATE_TABLES, TABLES, YEARS, Column, ColumnClass

DATA_YEARS = (2019, 2020, 2021, 2022)  # the ordinary pupils' years
EXTREME_PID = 999_999
LA_POOL = ("202", "330", "390", "926")
URNS = (100_001, 100_002, 100_003)
INT_RANGE = {"SMALLINT": (-(2**15), 2**15 - 1), "INTEGER": (-(2**31), 2**31 - 1)}
FOREIGN = [  # (table, column, public table it references)
    (t.name, col, ref.split(".")[0])
    for t in TABLES.values()
    for col, ref in t.foreign_keys
    if not TABLES[ref.split(".")[0]].private
]


# -- data ---------------------------------------------------------------------------------
@dataclass
class Dataset:
    """Rows per table, in the schema's column order."""

    rows: dict[str, list[tuple]] = field(default_factory=lambda: {t: [] for t in TABLES})

    def plus(self, other: Dataset) -> Dataset:
        return Dataset({t: self.rows[t] + other.rows[t] for t in TABLES})

    def upn(self, pid: int) -> str:
        return next(r[1] for r in self.rows["pupils"] if r[0] == pid)

    @property
    def pupil_ids(self) -> list[int]:
        return [r[0] for r in self.rows["pupils"]]


def public_rows() -> Dataset:
    ds = Dataset()
    for code in LA_POOL:
        name, region_code = codes.LOCAL_AUTHORITIES[code]
        ds.rows["local_authorities"].append((code, name, codes.REGIONS[region_code]))
    for i, urn in enumerate(URNS):
        ds.rows["schools"].append(
            (urn, f"School {i}", LA_POOL[i % len(LA_POOL)], codes.PHASES[i % len(codes.PHASES)],
             codes.SCHOOL_TYPES[i % len(codes.SCHOOL_TYPES)])
        )  # fmt: skip
    return ds


def _value(draw, col: Column, extreme: bool) -> object:
    """A value for ``col``: within its type, domain and bounds, or (``extreme``) at or
    beyond its bounds and outside its domain, as far as its type allows."""
    if col.nullable and draw(st.integers(0, 3)) == 0:
        return None
    if col.dtype == "BOOLEAN":
        return draw(st.booleans())
    if col.name == "urn":
        return draw(st.sampled_from(URNS))
    if col.name == "la_code":
        return draw(st.sampled_from(LA_POOL))
    if col.bounds is not None:
        lo, hi = col.bounds
        if col.dtype == "DOUBLE":
            if extreme:
                return draw(
                    st.sampled_from([lo, hi, -1e300, 1e300, float("inf"), float("-inf"),
                                     float("nan"), hi + 0.005, lo - 0.5])
                )  # fmt: skip
            return round(draw(st.floats(lo, hi)), 2)
        if extreme:
            tlo, thi = INT_RANGE[col.dtype]
            return draw(st.sampled_from([lo, hi, tlo, thi, hi + 1, lo - 1]))
        return draw(st.integers(int(lo), int(hi)))
    if col.domain is not None:
        if extreme and col.dtype == "VARCHAR" and draw(st.integers(0, 4)) == 0:
            return "ZZ-outside"
        return draw(st.sampled_from(col.domain))
    if col.dtype == "DATE":
        return dt.date(2010, 1, 1) + dt.timedelta(days=draw(st.integers(0, 4000)))
    return draw(st.text("abc", min_size=1, max_size=3))


def _row(draw, table: str, fixed: dict[str, object], extreme: bool) -> tuple:
    return tuple(
        fixed[c.name] if c.name in fixed else _value(draw, c, extreme)
        for c in TABLES[table].columns
    )


@st.composite
def pupil(draw, pid: int, extreme: bool = False) -> Dataset:
    """One pupil's rows in every private table. ``extreme``: every year of the domain in
    every year-keyed table, six exclusions a year, a KS2 and a KS4 row, extreme values."""
    ds = Dataset()
    ds.rows["pupils"].append(
        _row(draw, "pupils", {"pupil_id": pid, "upn": f"Z{pid:011d}Q"}, extreme)
    )
    if extreme:
        years = list(YEARS)
    else:
        years = draw(st.lists(st.sampled_from(DATA_YEARS), unique=True, max_size=3))
    for table in ("census", "absence"):
        for year in years if extreme else draw(st.sets(st.sampled_from(years or [2020]))):
            row = _row(draw, table, {"pupil_id": pid, "academic_year": year}, extreme)
            if table == "absence" and not extreme:
                possible, authorised, unauthorised = draw(_sessions())
                row = (pid, year, possible, authorised, unauthorised, row[5])
            ds.rows[table].append(row)
    for table in ("ks2", "ks4"):
        if extreme or draw(st.booleans()):
            year = draw(st.sampled_from(years or list(DATA_YEARS)))
            ds.rows[table].append(_row(draw, table, {"pupil_id": pid, "academic_year": year},
                                       extreme))  # fmt: skip
    for year in years:
        n = 6 if extreme else draw(st.integers(0, 2))
        for seq in range(1, n + 1):
            ds.rows["exclusions"].append(
                _row(draw, "exclusions",
                     {"pupil_id": pid, "academic_year": year, "exclusion_seq": seq}, extreme)
            )  # fmt: skip
    return ds


@st.composite
def _sessions(draw) -> tuple[int, int, int]:
    possible = draw(st.integers(0, 400))
    authorised = draw(st.integers(0, possible))
    return possible, authorised, draw(st.integers(0, possible - authorised))


@st.composite
def dataset(draw, max_pupils: int = 5) -> Dataset:
    ds = public_rows()
    for pid in range(1, draw(st.integers(0, max_pupils)) + 1):
        ds = ds.plus(draw(pupil(pid)))
    return ds


@contextmanager
def database(ds: Dataset) -> Iterator[Path]:
    """``ds`` as a DuckDB file with the schema's tables and the constraints the bounds rely
    on (keys, UNIQUE, NOT NULL, CHECKs on key columns), but not the value CHECKs."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "npd.duckdb"
        con = duckdb.connect(str(path))
        try:
            for name, table in TABLES.items():
                con.execute(create_table_sql(table, value_checks=False))
                if ds.rows[name]:
                    marks = ", ".join("?" * len(table.columns))
                    con.executemany(f"INSERT INTO {name} VALUES ({marks})", ds.rows[name])
        finally:
            con.close()
        yield path


def catalogue() -> Catalogue:
    return Catalogue(ref_domains={"schools.urn": URNS})


def run_engine(path: Path, plan: QueryPlan, compiled: CompiledQuery, optouts: list[str]):  # noqa: ARG001
    """The engine's own compiled SQL on the engine's own data plane, as the service runs
    it, with the opted-out pupils (by UPN) looked up as the session looks them up."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        ids = [r[0] for r in con.execute(
            "SELECT pupil_id FROM pupils WHERE upn IN (SELECT unnest(?::VARCHAR[]))",
            [list(optouts)],
        ).fetchall()]  # fmt: skip
    finally:
        con.close()
    plane = DuckDBPlane(path)
    try:
        return plane.run(compiled, ids)
    finally:
        plane.close()


def vectors(path: Path, plan: QueryPlan, compiled: CompiledQuery, optouts: list[str]):
    """Each part's vector as OpenDP is fed it; a quantile's group values (arrays) as sorted
    lists, so that two runs compare as multisets."""
    found = gather(plan, compiled, run_engine(path, plan, compiled, optouts))
    return {
        part: [sorted(v.tolist()) if isinstance(v, np.ndarray) else v for v in vector]
        for part, vector in found.items()
    }


def movement(before: dict, after: dict, plan: QueryPlan, compiled: CompiledQuery) -> list:
    """Per part: (how far one pupil moved it, the sensitivity its noise is calibrated to)."""
    n_groups = len(plan.groups())
    out = []
    for part in compiled.agg_columns:
        agg = plan.aggregates[part[0]]
        d_in = sensitivity(agg, part[1], compiled.bound.rows, n_groups)
        a, b = before[part], after[part]
        if part[1] == "values":  # symmetric distance of each group's multiset, summed
            moved = sum(sum(((Counter(x) - Counter(y)) + (Counter(y) - Counter(x))).values())
                        for x, y in zip(a, b, strict=True))  # fmt: skip
        else:
            moved = sum(abs(x - y) for x, y in zip(a, b, strict=True))
        out.append((part, moved, d_in))
    return out


# -- queries ------------------------------------------------------------------------------
@dataclass
class Node:
    table: str
    written: str  # how the query names it (alias, or the table's own name)
    aliased: bool


@dataclass
class Query:
    """A generated query: the researcher's SQL, and pieces of a reference query that raw
    DuckDB can run (columns widened, real literals as DOUBLE) for the spec test."""

    sql: str
    from_where: str
    keys: list[str]
    aggregates: list[tuple[str, str | None]]  # (kind, reference expression or None)


def _lit(col: Column, value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value) if isinstance(value, float) else str(value)


def _domain(col: Column) -> tuple[object, ...] | None:
    if col.domain_ref == "schools.urn":
        return URNS
    return col.domain


class QueryBuilder:
    """Draws one accepted query, clause by clause, from ``draw``."""

    def __init__(self, draw) -> None:
        self.draw = draw
        self.nodes: list[Node] = []
        self.pid_using = True  # every pupil node so far joined with USING (pupil_id …)
        self.year_using = True  # … and every node with academic_year with USING (…year)
        self.year_pairs: list[tuple[str, str]] = []  # nodes joined on academic_year
        self.pins: list[str] = []  # nodes whose year a top-level filter fixes

    # columns of a node, by role
    def columns(self, node: Node, *, numeric=False, boolean=False, keys=False, filters=False):
        out = []
        for col in TABLES[node.table].columns:
            if col.cls is ColumnClass.DIRECT_IDENTIFIER or col.dtype == "DATE":
                continue
            if numeric and (col.bounds is None or col.dtype == "BOOLEAN"):
                continue
            if boolean and col.dtype != "BOOLEAN":
                continue
            dom = _domain(col)
            if keys and (dom is None or len(dom) > 160):
                continue
            if filters and dom is None and col.dtype == "VARCHAR":
                continue  # text without public values cannot be compared
            out.append(col)
        return out

    def ref(self, node: Node, col: Column) -> str:
        return f"{node.written}.{col.name}"

    def pick(self, **role) -> tuple[Node, Column] | None:
        options = [(n, c) for n in self.nodes for c in self.columns(n, **role)]
        return self.draw(st.sampled_from(options)) if options else None

    def add_node(self, table: str, alias_needed: bool) -> Node:
        aliased = alias_needed or self.draw(st.booleans())
        written = f"t{len(self.nodes)}" if aliased else table
        node = Node(table, written, aliased)
        self.nodes.append(node)
        return node

    def table_sql(self, node: Node) -> str:
        return f"{node.table} AS {node.written}" if node.aliased else node.table

    def from_clause(self, max_joins: int = 3) -> str:
        base = self.draw(st.sampled_from(PRIVATE_TABLES))
        text = self.table_sql(self.add_node(base, False))
        for _ in range(self.draw(st.integers(0, max_joins))):
            text += self.join()
        return text

    def join(self) -> str:
        d = self.draw
        edges = [(n, col, target) for n in self.nodes for t, col, target in FOREIGN
                 if n.table == t]  # fmt: skip
        if edges and d(st.integers(0, 2)) == 0:
            parent, col, target = d(st.sampled_from(edges))
            key = TABLES[target].primary_key[0]
            owners = [n for n in self.nodes if key in TABLES[n.table].column_names]
            node = self.add_node(target, any(n.table == target for n in self.nodes))
            if len(owners) == 1 and col == key and d(st.booleans()):
                return f" JOIN {self.table_sql(node)} USING ({key})"
            sides = [f"{node.written}.{key}", f"{parent.written}.{col}"]
            if d(st.booleans()):
                sides.reverse()
            return f" JOIN {self.table_sql(node)} ON {sides[0]} = {sides[1]}"
        pupils = [n for n in self.nodes if TABLES[n.table].private]
        # Six exclusions a year: a fourth copy could not fit the width limit even pinned.
        wide = sum(n.table == "exclusions" for n in self.nodes) >= 3
        table = d(st.sampled_from([t for t in PRIVATE_TABLES if not (wide and t == "exclusions")]))
        parent = d(st.sampled_from(pupils))
        node = self.add_node(table, any(n.table == table for n in self.nodes))
        both_years = all("academic_year" in TABLES[t].column_names for t in (table, parent.table))
        with_year = both_years and d(st.booleans())
        year_nodes = [n for n in self.nodes[:-1] if "academic_year" in TABLES[n.table].column_names]
        can_using = self.pid_using and (not with_year or self.year_using)
        if can_using and d(st.booleans()):
            if "academic_year" in TABLES[table].column_names and not with_year and year_nodes:
                self.year_using = False
            if with_year:
                self.year_pairs.append((year_nodes[0].written, node.written))
            return f" JOIN {self.table_sql(node)} USING (pupil_id{', academic_year' * with_year})"
        self.pid_using = False
        if "academic_year" in TABLES[table].column_names:
            self.year_using = False
        conds = [f"{parent.written}.pupil_id = {node.written}.pupil_id"]
        if with_year:
            other = d(st.sampled_from([n for n in year_nodes if TABLES[n.table].private]))
            conds.append(f"{node.written}.academic_year = {other.written}.academic_year")
            self.year_pairs.append((other.written, node.written))
        conds = d(st.permutations(conds))
        return f" JOIN {self.table_sql(node)} ON {' AND '.join(conds)}"

    # WHERE
    def literal(self, col: Column, membership: bool) -> str:
        """A value the engine accepts: a public value for =, <>, IN and text; a threshold
        within the public range for a range comparison."""
        d = self.draw
        dom = _domain(col)
        if col.dtype == "BOOLEAN":
            return _lit(col, d(st.booleans()))
        if (membership or col.dtype == "VARCHAR") and dom is not None:
            return _lit(col, d(st.sampled_from(dom)))
        lo, hi = value_range(col, dom)  # type: ignore[misc]
        if col.dtype == "DOUBLE":
            return _lit(col, round(d(st.floats(lo, hi)), 2))
        return _lit(col, d(st.integers(int(lo), int(hi))))

    def condition(self, depth: int = 0) -> str:
        d = self.draw
        kind = d(st.integers(0, 9 if depth < 2 else 5))
        node, col = self.pick(filters=True)  # type: ignore[misc]
        ref = self.ref(node, col)
        if kind == 0 and col.dtype == "BOOLEAN":
            return ref if d(st.booleans()) else f"NOT {ref}"
        if kind in (0, 1, 2):
            op = d(st.sampled_from(["=", "<>", "!=", "<", "<=", ">", ">="]))
            lit = self.literal(col, op in ("=", "<>", "!="))
            return f"{ref} {op} {lit}" if d(st.booleans()) else f"{lit} {_flip(op)} {ref}"
        if kind == 3:
            values = ", ".join(self.literal(col, True) for _ in range(d(st.integers(1, 3))))
            return f"{ref} {'NOT ' * d(st.booleans())}IN ({values})"
        if kind == 4 and col.dtype != "BOOLEAN":
            a, b = self.literal(col, False), self.literal(col, False)
            return f"{ref} {'NOT ' * d(st.booleans())}BETWEEN {a} AND {b}"
        if kind == 5:
            return f"{ref} IS {'NOT ' * d(st.booleans())}NULL"
        if kind in (6, 7):
            return f"({self.condition(depth + 1)} {d(st.sampled_from(['AND', 'OR']))} " \
                   f"{self.condition(depth + 1)})"  # fmt: skip
        if kind == 8:
            return f"NOT ({self.condition(depth + 1)})"
        return f"{ref} = {self.literal(col, True)}" if col.dtype != "BOOLEAN" else ref

    def natural(self) -> int:
        """One pupil's joined rows as the engine will bound them (its width limit)."""
        nodes = {n.written: n.table for n in self.nodes}
        return contribution_bound(nodes, self.year_pairs, frozenset(self.pins)).natural

    def where(self) -> str:
        d = self.draw
        parts = []
        year_nodes = [n for n in self.nodes if "academic_year" in TABLES[n.table].column_names]
        if year_nodes and d(st.integers(0, 2)) == 0:
            self.pins.append(d(st.sampled_from(year_nodes)).written)
        while self.natural() > MAX_ROWS_PER_PUPIL_JOINED:  # fix years until the join fits
            free = [n.written for n in year_nodes if n.written not in self.pins]
            self.pins.append(d(st.sampled_from(free)))
        for written in self.pins:
            parts.append(f"{written}.academic_year = {d(st.sampled_from(DATA_YEARS))}")
        if d(st.booleans()):
            parts.append(self.condition())
        return f" WHERE {' AND '.join(parts)}" if parts else ""

    # SELECT
    def expression(self, depth: int = 0) -> tuple[str, str]:
        """(researcher's text, reference text) of a numeric aggregate argument."""
        d = self.draw
        kind = d(st.integers(0, 8 if depth < 2 else 2))
        if kind in (0, 1):
            node, col = self.pick(numeric=True) or (None, None)
            if node is None:
                kind = 2
            else:
                ref = self.ref(node, col)  # type: ignore[arg-type]
                wide = "DOUBLE" if col.dtype == "DOUBLE" else "BIGINT"  # type: ignore[union-attr]
                return ref, f"CAST({ref} AS {wide})"
        if kind == 2:
            picked = self.pick(boolean=True)
            if picked is not None and d(st.booleans()):
                ref = self.ref(*picked)
                cast = d(st.sampled_from(["CAST({} AS INTEGER)", "{}::INT", "CAST({} AS BIGINT)"]))
                return cast.format(ref), f"CAST({ref} AS BIGINT)"
            v = d(st.sampled_from([0, 1, 2, 5, -3, 0.5, 1.25]))
            return _num(v), _num_ref(v)
        if kind == 3:
            a, ra = self.expression(depth + 1)
            b, rb = self.expression(depth + 1)
            op = d(st.sampled_from(["+", "-"]))
            return f"({a} {op} {b})", f"({ra} {op} {rb})"
        if kind == 4:
            a, ra = self.expression(depth + 1)
            k = d(st.sampled_from([2, 3, -1, 0.5, 1.5, 10]))
            if d(st.booleans()):
                return f"({a}) * {_num(k)}", f"(({ra}) * {_num_ref(k)})"
            return f"{_num(k)} * ({a})", f"({_num_ref(k)} * ({ra}))"
        if kind == 5:
            a, ra = self.expression(depth + 1)
            return f"-({a})", f"(-({ra}))"
        if kind == 6:
            a, ra = self.expression(depth + 1)
            if d(st.booleans()):
                return f"CAST({a} AS DOUBLE)", f"CAST({ra} AS DOUBLE)"
            return f"CAST({a} AS BIGINT)", f"CAST(ROUND({ra}) AS BIGINT)"
        cond = self.condition(2)
        a, ra = self.expression(depth + 1)
        if d(st.booleans()):
            b, rb = self.expression(depth + 1)
            return (f"CASE WHEN {cond} THEN {a} ELSE {b} END",
                    f"CASE WHEN {cond} THEN {ra} ELSE {rb} END")  # fmt: skip
        return f"CASE WHEN {cond} THEN {a} END", f"CASE WHEN {cond} THEN {ra} END"

    def aggregate(self) -> tuple[str, tuple[str, str | None]]:
        d = self.draw
        kind = d(st.sampled_from(["count", "distinct", "count_col", "sum", "avg", "median",
                                  "quantile"]))  # fmt: skip
        if kind == "count":
            return "COUNT(*)", ("count", None)
        if kind == "distinct":
            node = d(st.sampled_from([n for n in self.nodes if TABLES[n.table].private]))
            ref = f"{node.written}.pupil_id"
            return f"COUNT(DISTINCT {ref})", ("count_distinct", ref)
        if kind == "count_col":
            node, col = self.pick(filters=True)  # type: ignore[misc]
            return f"COUNT({self.ref(node, col)})", ("count_col", self.ref(node, col))
        text, ref = self.expression()
        if kind == "quantile":
            q = d(st.sampled_from([0.1, 0.25, 0.9]))
            return f"QUANTILE_CONT({text}, {q})", ("quantile", ref)
        return f"{kind.upper()}({text})", (kind, ref)


@st.composite
def accepted_query(draw, max_joins: int = 3) -> Query:
    """A query from the grammar the engine accepts (it must parse to a plan)."""
    b = QueryBuilder(draw)
    frm = b.from_clause(max_joins)
    where = b.where()
    keys, cells = [], 1
    for _ in range(draw(st.integers(0, 2))):
        picked = b.pick(keys=True)
        if picked is None or b.ref(*picked) in keys:
            continue
        size = len(_domain(picked[1]) or ())
        if cells * size <= 2_000:  # within the engine's cell limit
            keys.append(b.ref(*picked))
            cells *= size
    aggs = [b.aggregate() for _ in range(draw(st.integers(1, 3)))]
    select = ", ".join([*keys, *(text for text, _ in aggs)])
    by = [str(i + 1) for i in range(len(keys))] if draw(st.booleans()) else keys
    group = f" GROUP BY {', '.join(by)}" if keys else ""
    return Query(f"SELECT {select} FROM {frm}{where}{group}", f" FROM {frm}{where}", keys,
                 [a for _, a in aggs])  # fmt: skip


def _flip(op: str) -> str:
    return {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


def _num_ref(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"CAST({v!r} AS DOUBLE)"


def plan_of(sql: str) -> QueryPlan:
    parsed = parse_query(sql, catalogue())
    assert isinstance(parsed, QueryPlan), (sql, getattr(parsed, "reasons", None))
    return parsed


def compiled_of(plan: QueryPlan, min_year: int | None = None) -> CompiledQuery:
    return compile_plan(plan, min_year=min_year, salt=plan.digest())
