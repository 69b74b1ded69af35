"""The compiled SQL on data that breaks the declared ranges: clamps hold, nothing raises,
opt-outs and retention apply to every pupil table before it is joined."""

from __future__ import annotations

import math

import duckdb
import pytest

from safesetting.engine.compile import OPTOUT_TABLE, compile_plan
from safesetting.engine.noise import gather
from safesetting.engine.parse import parse_query
from synthetic.load import create_table_sql
from synthetic.schema import TABLES


@pytest.fixture
def con():
    """Every table with its keys but without its value CHECKs, so that values outside the
    declared bounds can be put in front of the engine (as a damaged file would)."""
    con = duckdb.connect()
    for table in TABLES.values():
        con.execute(create_table_sql(table, value_checks=False))
    con.execute(f"CREATE TABLE {OPTOUT_TABLE} (pupil_id BIGINT)")
    yield con
    con.close()


def vectors(con, sql, **kw):
    plan = parse_query(sql)
    compiled = compile_plan(plan, **kw)
    return gather(plan, compiled, con.execute(compiled.sql).fetchall()), compiled


def test_integer_values_beyond_their_bounds_are_clamped_where_they_are_read(con):
    con.execute("INSERT INTO ks2 VALUES (1, 2020, 32767, -32768, 100, 'EXS', TRUE),"
                " (2, 2020, 100, 100, 100, 'EXS', FALSE)")  # fmt: skip
    got, _ = vectors(
        con,
        "SELECT SUM(read_score), SUM(maths_score), SUM((read_score + maths_score) * 2),"
        " AVG(read_score - maths_score), MEDIAN(read_score) FROM ks2",
    )
    assert got[(0, "value")] == [120 + 100]  # 32767 read as 120
    assert got[(1, "value")] == [80 + 100]  # -32768 read as 80
    assert got[(2, "value")] == [(120 + 80) * 2 + 400]
    assert got[(3, "value")] == [40 + 0]
    assert sorted(got[(4, "values")][0]) == [100.0, 120.0]


@pytest.mark.parametrize(
    ("value", "read_as"),
    [(math.inf, 90.0), (-math.inf, 0.0), (math.nan, 90.0), (1e300, 90.0), (-1e300, 0.0)],
)
def test_real_values_beyond_their_bounds_never_fail_and_are_clamped(con, value, read_as):
    con.execute("INSERT INTO ks4 VALUES (1, 2020, ?, 5, 5, TRUE, TRUE)", [value])
    got, _ = vectors(
        con,
        "SELECT SUM(attainment8), AVG(attainment8 * 0.5), MEDIAN(CAST(attainment8 AS INTEGER)),"
        " SUM(CASE WHEN basics_grade4 THEN attainment8 END) FROM ks4",
    )
    assert got[(0, "value")] == [round(read_as * 100)]
    assert got[(1, "value")] == [round(read_as * 50)]
    assert got[(2, "values")] == [[read_as]]
    assert got[(3, "value")] == [round(read_as * 100)]


def test_a_pupil_who_opted_out_is_gone_from_every_table_of_a_join(con):
    con.execute("INSERT INTO census (pupil_id, academic_year, la_code, region, urn, phase,"
                " nc_year, ethnicity_minor, ethnicity_major, language_group, fsm_eligible,"
                " ever_fsm_6, sen_provision) VALUES"
                " (1, 2020, '202', 'London', 1, 'primary', 6, 'WBRI', 'WHIT', 'ENG', TRUE,"
                " TRUE, 'N'), (2, 2020, '202', 'London', 1, 'primary', 6, 'WBRI', 'WHIT',"
                " 'ENG', TRUE, TRUE, 'N')")  # fmt: skip
    con.execute("INSERT INTO ks2 VALUES (1, 2020, 100, 100, 100, 'EXS', TRUE),"
                " (2, 2020, 110, 100, 100, 'EXS', TRUE)")  # fmt: skip
    con.execute(f"INSERT INTO {OPTOUT_TABLE} VALUES (1)")
    for sql in (
        "SELECT COUNT(*), SUM(k.read_score) FROM census c JOIN ks2 k USING (pupil_id)",
        "SELECT COUNT(*), SUM(k.read_score) FROM ks2 k JOIN census c USING (pupil_id)",
        "SELECT COUNT(*), SUM(k.read_score) FROM census c JOIN census d USING (pupil_id)"
        " JOIN ks2 k ON k.pupil_id = d.pupil_id",
    ):
        got, compiled = vectors(con, sql)
        assert got == {(0, "value"): [1], (1, "value"): [110]}, sql
        # each pupil table is read through its own opt-out before it is joined
        assert (
            compiled.sql.count(f"IN (SELECT pupil_id FROM {OPTOUT_TABLE})") == sql.count("JOIN") + 1
        )


def test_retention_applies_to_every_pupil_table_of_a_join(con):
    con.execute("INSERT INTO ks2 VALUES (1, 2010, 100, 100, 100, 'EXS', TRUE),"
                " (2, 2020, 110, 100, 100, 'EXS', TRUE)")  # fmt: skip
    con.execute("INSERT INTO ks4 VALUES (1, 2015, 50, 5, 5, TRUE, TRUE),"
                " (2, 2012, 50, 5, 5, TRUE, TRUE)")  # fmt: skip
    got, _ = vectors(con, "SELECT COUNT(*) FROM ks2 JOIN ks4 USING (pupil_id)", min_year=2013)
    assert got == {(0, "value"): [0]}  # pupil 1's KS2 and pupil 2's KS4 are too old
    got, _ = vectors(con, "SELECT COUNT(*) FROM ks2 JOIN ks4 USING (pupil_id)", min_year=2010)
    assert got == {(0, "value"): [2]}


def test_a_cast_column_is_clamped_where_it_is_read_too(con):
    con.execute("INSERT INTO ks2 VALUES (1, 2020, 32767, 100, 100, 'EXS', TRUE)")
    got, _ = vectors(
        con, "SELECT SUM(CAST(read_score AS DOUBLE)), SUM(CAST(rwm_expected AS INTEGER)) FROM ks2"
    )
    assert got[(0, "value")] == [120 * 100]  # in hundredths: 32767 read as 120
    assert got[(1, "value")] == [1]


def test_an_argument_never_reads_a_column_without_bounds():
    from sqlglot import exp

    from safesetting.engine.compile import argument

    with pytest.raises(ValueError, match="no declared bounds"):
        argument(exp.column("region", table="census"), {"census": "census"})
