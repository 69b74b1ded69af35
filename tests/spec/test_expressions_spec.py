"""The engine's SQL means what the researcher wrote: every accepted expression, filter,
grouping and join form, compared with raw DuckDB running the researcher's own FROM, JOIN
and WHERE text on the same data.

The reference widens columns (``BIGINT``/``DOUBLE``) and writes real literals as ``DOUBLE``,
which is what the engine computes in so that nothing can overflow; on data within the
declared bounds the values are otherwise the researcher's. Noise is off this path: these are
the vectors ``release()`` would be given. Queries the engine truncates (a pupil with more
rows than the bound) are skipped here: truncation changes the answer on purpose.
"""

from __future__ import annotations

import math
from collections import Counter

import duckdb
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.property.neighbours import (
    accepted_query,
    compiled_of,
    database,
    dataset,
    plan_of,
    vectors,
)


def _units(value: float, resolution: float) -> int:
    x = value / resolution if resolution != 1.0 else value
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)  # ROUND: half away from 0


def reference(con, query, plan) -> dict:
    """The same vectors as ``gather()``, from raw DuckDB and Python arithmetic."""
    index = {g: i for i, g in enumerate(plan.groups())}
    n = len(index)
    out: dict = {}
    keys = ", ".join(query.keys) + ", " if query.keys else ""
    for a, (written, expr) in enumerate(query.aggregates):
        agg = plan.aggregates[a]
        kind = "quantile" if written == "median" else written
        select = {"count": "1", "count_distinct": expr, "count_col": expr}.get(kind, expr)
        rows = con.execute(f"SELECT {keys}{select}{query.from_where}").fetchall()
        k = len(query.keys)
        value: list = [0] * n if kind != "quantile" else [[] for _ in range(n)]
        count = [0] * n
        distinct: list[set] = [set() for _ in range(n)]
        for row in rows:
            i = index.get(tuple(row[:k]))
            v = row[k]
            if i is None or v is None:
                continue
            if kind == "count" or kind == "count_col":
                value[i] += 1
            elif kind == "count_distinct":
                distinct[i].add(v)
            elif kind == "quantile":
                value[i].append(min(max(float(v), agg.lower), agg.upper))
            else:
                value[i] += _units(min(max(v, agg.lower), agg.upper), agg.resolution)
                count[i] += 1
        if kind == "count_distinct":
            value = [len(s) for s in distinct]
        out[(a, "values" if kind == "quantile" else "value")] = value
        if kind == "avg":
            out[(a, "count")] = count
    return out


@given(st.data())
def test_the_engine_answers_the_question_as_written(data):
    query = data.draw(accepted_query(), label="query")
    plan = plan_of(query.sql)
    compiled = compiled_of(plan)
    assume(not compiled.bound.truncate)
    ds = data.draw(dataset(max_pupils=8), label="data")
    with database(ds) as path:
        got = vectors(path, plan, compiled, [])
        con = duckdb.connect(str(path), read_only=True)
        try:
            want = reference(con, query, plan)
        finally:
            con.close()
    for part, expected in want.items():
        if part[1] == "values":
            for g, (x, y) in enumerate(zip(got[part], expected, strict=True)):
                assert sorted(x) == pytest.approx(sorted(y)), (part, g)
        else:
            assert got[part] == expected, part


@pytest.mark.parametrize(
    ("ours", "raw"),
    [
        # brackets are kept: (a + b) * 2, not a + b * 2
        ("SELECT SUM((read_score + maths_score) * 2) FROM ks2",
         "SELECT SUM((read_score + maths_score) * 2) FROM ks2"),
        ("SELECT SUM(2 * (read_score - maths_score)) FROM ks2",
         "SELECT SUM(2 * (read_score - maths_score)) FROM ks2"),
        ("SELECT SUM(-(read_score - 100)) FROM ks2", "SELECT SUM(-(read_score - 100)) FROM ks2"),
        # grouping of AND, OR and NOT
        ("SELECT COUNT(*) FROM census WHERE NOT (fsm_eligible AND nc_year = 6) OR nc_year = 1",
         "SELECT COUNT(*) FROM census WHERE NOT (fsm_eligible AND nc_year = 6) OR nc_year = 1"),
        ("SELECT COUNT(*) FROM census WHERE fsm_eligible AND (nc_year = 6 OR nc_year = 1)",
         "SELECT COUNT(*) FROM census WHERE fsm_eligible AND (nc_year = 6 OR nc_year = 1)"),
        ("SELECT COUNT(*) FROM census WHERE nc_year BETWEEN 9 AND 2",
         "SELECT COUNT(*) FROM census WHERE nc_year BETWEEN 9 AND 2"),
        ("SELECT COUNT(*) FROM census WHERE nc_year NOT BETWEEN 2 AND 9",
         "SELECT COUNT(*) FROM census WHERE nc_year NOT BETWEEN 2 AND 9"),
        # CASE without ELSE is NULL, which COUNT and AVG skip
        ("SELECT COUNT(*), SUM(CASE WHEN fsm_eligible THEN 1 END) FROM census",
         "SELECT COUNT(*), SUM(CASE WHEN fsm_eligible THEN 1 END) FROM census"),
        # a table joined to itself: one pupil's own rows in two years
        ("SELECT a.fsm_eligible, COUNT(*) FROM census a JOIN census b USING (pupil_id)"
         " WHERE a.academic_year = 2020 AND b.academic_year = 2023 AND b.fsm_eligible"
         " GROUP BY a.fsm_eligible",
         "SELECT a.fsm_eligible, COUNT(*) FROM census a JOIN census b USING (pupil_id)"
         " WHERE a.academic_year = 2020 AND b.academic_year = 2023 AND b.fsm_eligible"
         " GROUP BY a.fsm_eligible"),
    ],
)  # fmt: skip
def test_forms_the_review_found_mistranslated(npd_small, ours, raw):
    from tests.spec.test_engine_spec import true_rows  # noqa: PLC0415

    plan = plan_of(ours)
    from safesetting.engine.parse import Catalogue  # noqa: PLC0415

    con = duckdb.connect(str(npd_small), read_only=True)
    try:
        urns = tuple(r[0] for r in con.execute("SELECT urn FROM schools").fetchall())
        compiled, got = true_rows(npd_small, ours, Catalogue(ref_domains={"schools.urn": urns}))
        want = sorted(con.execute(raw).fetchall(), key=repr)
    finally:
        con.close()
    assert not compiled.bound.truncate
    assert Counter(map(tuple, got)) == Counter(map(tuple, want)), plan.normalised()
