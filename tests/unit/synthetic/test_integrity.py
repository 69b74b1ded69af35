"""Referential integrity and the longitudinal shape of the generated data."""

from __future__ import annotations

import duckdb
import pytest

from synthetic import codes, schema


@pytest.fixture(scope="module")
def con(npd_small):
    c = duckdb.connect(str(npd_small), read_only=True)
    yield c
    c.close()


def count(con, sql):
    return con.execute(sql).fetchall()[0][0]


@pytest.mark.parametrize(
    ("table", "col", "ref"),
    [(t.name, c, r) for t in schema.TABLES.values() for c, r in t.foreign_keys],
)
def test_every_foreign_key_holds(con, table, col, ref):
    ref_table, ref_col = ref.split(".")
    assert count(con, f"SELECT count(*) FROM {table}") > 0
    missing = count(con, f"SELECT count(*) FROM {table} ANTI JOIN {ref_table} r "
                         f"ON {table}.{col} = r.{ref_col}")  # fmt: skip
    assert missing == 0


def test_every_pupil_has_census_rows(con):
    assert count(con, "SELECT count(*) FROM pupils ANTI JOIN census USING (pupil_id)") == 0


def test_all_153_las_and_9_regions_present(con):
    assert count(con, "SELECT count(DISTINCT la_code) FROM census") == 153
    assert count(con, "SELECT count(*) FROM local_authorities") == 153
    assert count(con, "SELECT count(DISTINCT region) FROM census") == 9
    assert count(con, "SELECT count(*) FROM census c JOIN local_authorities l USING (la_code) "
                      "WHERE c.region <> l.region") == 0  # fmt: skip


def test_cohorts_move_one_year_group_a_year(con):
    bad = count(
        con,
        """
        SELECT count(*) FROM (
          SELECT nc_year - lag(nc_year) OVER w AS dn,
            academic_year - lag(academic_year) OVER w AS dy
          FROM census WINDOW w AS (PARTITION BY pupil_id ORDER BY academic_year))
        WHERE dy IS NOT NULL AND (dy <> 1 OR dn <> 1)""",
    )
    assert bad == 0


def test_ks2_only_in_the_year6_census_year(con):
    assert count(con, "SELECT count(*) FROM ks2 LEFT JOIN census c USING (pupil_id, academic_year) "
                      "WHERE c.nc_year IS DISTINCT FROM 6") == 0  # fmt: skip
    # and everyone in Year 6 has a KS2 row
    assert count(con, "SELECT count(*) FROM census c ANTI JOIN ks2 USING (pupil_id, academic_year) "
                      "WHERE c.nc_year = 6") == 0  # fmt: skip


def test_ks4_only_in_the_year11_census_year(con):
    assert count(con, "SELECT count(*) FROM ks4 LEFT JOIN census c USING (pupil_id, academic_year) "
                      "WHERE c.nc_year IS DISTINCT FROM 11") == 0  # fmt: skip
    assert count(con, "SELECT count(*) FROM census c ANTI JOIN ks4 USING (pupil_id, academic_year) "
                      "WHERE c.nc_year = 11") == 0  # fmt: skip


def test_school_changes_at_phase_transfer(con):
    # primary schools for Reception-Year 6, secondary for Years 7-11 (special schools throughout)
    assert count(con, "SELECT count(*) FROM census WHERE phase = 'primary' AND nc_year > 6") == 0
    assert count(con, "SELECT count(*) FROM census WHERE phase = 'secondary' AND nc_year < 7") == 0
    assert count(con, "SELECT count(*) FROM census c JOIN schools s USING (urn) "
                      "WHERE c.phase <> s.phase OR c.la_code <> s.la_code") == 0  # fmt: skip
    changes = count(
        con,
        """
        SELECT count(*) FROM (SELECT pupil_id, count(DISTINCT urn) AS n, min(nc_year) AS lo,
          max(nc_year) AS hi FROM census GROUP BY pupil_id)
        WHERE lo <= 6 AND hi >= 7 AND n = 2""",
    )
    assert changes > 1000
    assert count(con, "SELECT count(*) FROM (SELECT pupil_id FROM census GROUP BY pupil_id, phase "
                      "HAVING count(DISTINCT urn) > 1)") == 0  # fmt: skip


def test_nationality_only_in_2017_and_2018(con):
    years = {y for (y,) in con.execute(
        "SELECT DISTINCT academic_year FROM census "
        "WHERE nationality IS NOT NULL OR country_of_birth IS NOT NULL").fetchall()}  # fmt: skip
    assert years == set(codes.NATIONALITY_YEARS)
    assert count(con, "SELECT count(*) FROM census WHERE academic_year IN (2017, 2018) "
                      "AND (nationality IS NULL OR country_of_birth IS NULL)") == 0  # fmt: skip


def test_ever_fsm_6_follows_fsm_history(con):
    assert count(con, "SELECT count(*) FROM census WHERE fsm_eligible AND NOT ever_fsm_6") == 0
    # where the whole 6-year window is inside the data, ever_fsm_6 = FSM in any of those years
    bad = count(
        con,
        """
        SELECT count(*) FROM (
          SELECT ever_fsm_6, nc_year, academic_year,
            bool_or(fsm_eligible) OVER w AS any6, count(*) OVER w AS n
          FROM census WINDOW w AS (PARTITION BY pupil_id ORDER BY academic_year
                                   ROWS BETWEEN 5 PRECEDING AND CURRENT ROW))
        WHERE (n = 6 OR n = nc_year + 1) AND ever_fsm_6 <> any6""",
    )
    assert bad == 0
    assert count(con, "SELECT count(*) FROM census WHERE ever_fsm_6 AND NOT fsm_eligible") > 0


def test_sen_need_only_with_sen(con):
    assert count(con, "SELECT count(*) FROM census WHERE (sen_provision = 'N') "
                      "<> (sen_primary_need IS NULL)") == 0  # fmt: skip


def test_exclusions_are_bounded_and_numbered(con):
    most = count(con, "SELECT max(n) FROM (SELECT count(*) AS n FROM exclusions "
                      "GROUP BY pupil_id, academic_year)")  # fmt: skip
    assert most <= schema.MAX_EXCLUSIONS_PER_YEAR
    gaps = count(con, "SELECT count(*) FROM (SELECT count(*) AS n, max(exclusion_seq) AS m "
                      "FROM exclusions GROUP BY pupil_id, academic_year) WHERE n <> m")  # fmt: skip
    assert gaps == 0
    # a permanent exclusion is the last of its year
    assert (
        count(
            con,
            """SELECT count(*) FROM exclusions e JOIN (SELECT pupil_id, academic_year,
        max(exclusion_seq) AS m FROM exclusions GROUP BY ALL) USING (pupil_id, academic_year)
        WHERE e.category = 'permanent' AND e.exclusion_seq <> m""",
        )
        == 0
    )


def test_absence_sessions_consistent(con):
    assert (
        count(
            con,
            "SELECT count(*) FROM absence WHERE persistent_absentee <> "
            "((sessions_authorised + sessions_unauthorised) * 10 >= sessions_possible)",
        )
        == 0
    )
    in_reception = "SELECT count(*) FROM absence JOIN census c USING (pupil_id, academic_year) "
    assert count(con, in_reception + "WHERE c.nc_year = 0") == 0


def test_dates_of_birth_match_year_group(con):
    # a pupil in NC year y on 1 September is aged y + 4 (born September..August)
    ages = con.execute("""SELECT min(age - nc_year), max(age - nc_year) FROM (SELECT c.nc_year,
        (make_date(c.academic_year - 1, 9, 1) - p.date_of_birth) / 365.25 AS age
        FROM census c JOIN pupils p USING (pupil_id))""").fetchall()[0]
    assert ages[0] >= 4.0
    assert ages[1] < 5.01
