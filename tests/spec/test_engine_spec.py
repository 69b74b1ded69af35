"""Plan → bounded SQL → true aggregates, checked against raw DuckDB on the synthetic NPD.

Noise is off this path on purpose: these tests look at the engine's true aggregates, which
in the product never leave ``release()``.
"""

from __future__ import annotations

import duckdb
import pytest

from safesetting.engine.compile import compile_plan, needed_columns
from safesetting.engine.execute import Sandbox
from safesetting.engine.parse import Catalogue, parse_query
from safesetting.engine.plan import QueryPlan


@pytest.fixture(scope="module")
def raw(npd_small):
    con = duckdb.connect(str(npd_small), read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="module")
def catalogue(raw):
    urns = tuple(r[0] for r in raw.execute("SELECT urn FROM schools ORDER BY urn").fetchall())
    return Catalogue(ref_domains={"schools.urn": urns})


def true_rows(db, sql, catalogue, optouts=(), min_year=None):
    plan = parse_query(sql, catalogue)
    assert isinstance(plan, QueryPlan), plan
    compiled = compile_plan(plan, min_year=min_year, salt="spec")
    box = Sandbox(db, needed_columns(plan), optout_upns=optouts, row_filters=compiled.pushdown)
    try:
        return compiled, sorted(box.run(compiled.sql), key=repr)
    finally:
        box.close()


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (
            "SELECT region, COUNT(*) FROM census WHERE academic_year = 2023 GROUP BY region",
            "SELECT region, COUNT(*) FROM census WHERE academic_year = 2023 GROUP BY region",
        ),
        (
            "SELECT ever_fsm_6, SUM(CAST(rwm_expected AS INTEGER)), COUNT(*)"
            " FROM census JOIN ks2 USING (pupil_id, academic_year) GROUP BY ever_fsm_6",
            "SELECT ever_fsm_6, SUM(rwm_expected::INT), COUNT(*) FROM census"
            " JOIN ks2 USING (pupil_id, academic_year) GROUP BY ever_fsm_6",
        ),
        (
            "SELECT sen_provision, COUNT(DISTINCT pupil_id) FROM census"
            " WHERE nc_year BETWEEN 1 AND 6 AND NOT fsm_eligible GROUP BY 1",
            "SELECT sen_provision, COUNT(DISTINCT pupil_id) FROM census"
            " WHERE nc_year BETWEEN 1 AND 6 AND NOT fsm_eligible GROUP BY 1",
        ),
        (
            "SELECT s.school_type, COUNT(*) FROM census c JOIN schools s ON c.urn = s.urn"
            " WHERE c.academic_year = 2020 AND c.la_code IN ('202', '330') GROUP BY s.school_type",
            "SELECT s.school_type, COUNT(*) FROM census c JOIN schools s ON c.urn = s.urn"
            " WHERE c.academic_year = 2020 AND c.la_code IN ('202', '330') GROUP BY 1",
        ),
    ],
)
def test_true_aggregates_match_raw_duckdb(npd_small, raw, catalogue, ours, theirs):
    compiled, got = true_rows(npd_small, ours, catalogue)
    assert not compiled.bound.truncate
    want = sorted(raw.execute(theirs).fetchall(), key=repr)
    assert got == want


def test_real_values_are_clamped_and_counted_in_hundredths(npd_small, raw, catalogue):
    _, got = true_rows(npd_small, "SELECT SUM(attainment8) FROM ks4", catalogue)
    want = raw.execute(
        "SELECT SUM(CAST(ROUND(LEAST(GREATEST(attainment8, 0), 90) * 100) AS BIGINT)) FROM ks4"
    )
    assert got == want.fetchall()


def test_truncation_keeps_each_pupil_within_the_bound(npd_small, raw, catalogue):
    compiled, got = true_rows(npd_small, "SELECT COUNT(*) FROM exclusions", catalogue)
    assert compiled.bound.truncate
    per_pupil = raw.execute(
        f"SELECT SUM(LEAST(n, {compiled.bound.rows})) FROM "
        "(SELECT pupil_id, COUNT(*) n FROM exclusions GROUP BY pupil_id)"
    ).fetchone()[0]
    assert got == [(per_pupil,)]


def test_opted_out_pupils_are_excluded(npd_small, raw, catalogue):
    upns = [
        r[0] for r in raw.execute("SELECT upn FROM pupils ORDER BY pupil_id LIMIT 50").fetchall()
    ]
    sql = "SELECT COUNT(*) FROM census WHERE academic_year = 2024"
    _, before = true_rows(npd_small, sql, catalogue)
    _, after = true_rows(npd_small, sql, catalogue, optouts=upns)
    gone = raw.execute(
        "SELECT COUNT(*) FROM census JOIN pupils USING (pupil_id)"
        " WHERE academic_year = 2024 AND upn IN (SELECT unnest(?::VARCHAR[]))",
        [upns],
    ).fetchone()[0]
    assert before[0][0] - after[0][0] == gone


def test_retention_drops_old_years(npd_small, raw, catalogue):
    sql = "SELECT academic_year, COUNT(*) FROM census GROUP BY academic_year"
    _, got = true_rows(npd_small, sql, catalogue, min_year=2020)
    assert min(year for year, _ in got) == 2020


def test_a_pupil_with_ten_thousand_rows_moves_counts_by_at_most_the_bound(npd_small, catalogue):
    """Add one new pupil with 10,000 exclusion rows inside the sandbox (where no constraint
    stops it): truncation keeps the released counts' L1 change within the declared bound."""
    sql = "SELECT reason, COUNT(*), SUM(sessions) FROM exclusions GROUP BY reason"
    plan = parse_query(sql, catalogue)
    compiled = compile_plan(plan, salt="attack")
    box = Sandbox(npd_small, needed_columns(plan))
    try:
        before = {r[0]: r[1:] for r in box.run(compiled.sql)}
        box.con.execute(
            "INSERT INTO exclusions (pupil_id, academic_year, reason, sessions) "
            "SELECT 999999999, 2020, 'PD', 90 FROM range(10000)"
        )
        after = {r[0]: r[1:] for r in box.run(compiled.sql)}
    finally:
        box.close()
    count_change = sum(abs(after[k][0] - before.get(k, (0, 0))[0]) for k in after)
    sum_change = sum(abs(after[k][1] - before.get(k, (0, 0))[1]) for k in after)
    assert count_change == compiled.bound.rows == 20
    assert sum_change <= compiled.bound.rows * 90


def test_the_database_refuses_what_would_break_an_untruncated_bound(npd_tiny):
    con = duckdb.connect(str(npd_tiny))
    pupil, year = con.execute("SELECT pupil_id, academic_year FROM census LIMIT 1").fetchone()
    with pytest.raises(duckdb.ConstraintException):
        con.execute(
            "INSERT INTO census SELECT * REPLACE (academic_year AS academic_year) FROM census "
            "WHERE pupil_id = ? AND academic_year = ?",
            [pupil, year],
        )
    con.close()
