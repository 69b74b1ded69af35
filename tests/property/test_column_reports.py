"""Nothing escapes classification: for every query of the accepted grammar (the neighbour
harness's generator: every aggregate, argument, filter, grouping and join shape) and every
near miss of it that still parses to a plan, each column the SQL names is reported to the
policy (the explicit shapes, refused ones included, are in
``tests/unit/engine/test_column_reports.py``)."""

from __future__ import annotations

import sqlglot
from hypothesis import given
from hypothesis import strategies as st
from sqlglot import exp

from safesetting.engine.parse import parse_query
from safesetting.engine.plan import QueryPlan
from safesetting.errors import UsageError
from synthetic.schema import TABLES
from tests.property.neighbours import accepted_query, catalogue
from tests.property.test_neighbours import MUTATIONS


def named_columns(sql: str) -> set[str]:
    """``table.column`` for every column node of ``sql`` (read independently of the parser)."""
    stmt = sqlglot.parse_one(sql, read="duckdb")
    written = {(t.alias or t.name).lower(): t.name.lower() for t in stmt.find_all(exp.Table)}
    found = set()
    for node in stmt.find_all(exp.Column):
        name = node.name.lower()
        tables = [written.get(node.table.lower())] if node.table else list(written.values())
        found |= {f"{t}.{name}" for t in tables if t in TABLES and name in TABLES[t].column_names}
    return found


def check(sql: str) -> None:
    try:
        parsed = parse_query(sql, catalogue())
    except UsageError:
        return
    assert set(parsed.fine) <= set(parsed.usage)
    if isinstance(parsed, QueryPlan):
        assert named_columns(sql) <= set(parsed.usage), sql
        for join in parsed.joins:  # a join key is reported on both sides
            for a, b in join.on:
                assert "join_key" in parsed.usage[a.qualified] & parsed.usage[b.qualified]


@given(st.data())
def test_every_column_an_accepted_query_names_is_reported(data):
    check(data.draw(accepted_query(), label="query").sql)


@given(st.data())
def test_every_column_a_near_miss_names_is_reported(data):
    query = data.draw(accepted_query(max_joins=2), label="query")
    mutate = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    check(mutate(query.sql, data.draw))
