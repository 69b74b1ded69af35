"""A generated dataset lands within the stated tolerance of every published target."""

from __future__ import annotations

import duckdb
import pytest

from synthetic import targets
from synthetic.calibration import MEASURES, measure_file


@pytest.fixture(scope="module")
def measured(npd_small):
    return measure_file(str(npd_small))


@pytest.fixture(scope="module")
def con(npd_small):
    c = duckdb.connect(str(npd_small), read_only=True)
    yield c
    c.close()


def one(con, sql):
    return con.execute(sql).fetchall()[0][0]


@pytest.mark.parametrize("target", targets.ALL, ids=lambda t: t.name)
def test_target_within_tolerance(measured, target):
    value = measured[target]
    assert target.within(value), (
        f"{target.name}: {value:.2f} vs {target.value} ± {target.tolerance}"
    )


def test_every_target_has_a_source_and_a_measure():
    for t in targets.ALL:
        assert t.source
        assert t.year
        assert t.tolerance > 0
    assert set(MEASURES) == set(targets.ALL)


def test_ks2_girls_above_boys(con):
    girls, boys = (
        one(con, f"SELECT avg(rwm_expected::INT) FROM ks2 JOIN pupils USING (pupil_id) "
                 f"WHERE sex = '{s}'")
        for s in ("F", "M")
    )  # fmt: skip
    assert girls > boys + 0.03


def test_absence_higher_for_fsm_and_sen(con):
    q = (
        "SELECT {g}, sum(sessions_authorised + sessions_unauthorised) / sum(sessions_possible), "
        "avg(persistent_absentee::INT) FROM absence JOIN census USING (pupil_id, academic_year) "
        "GROUP BY 1"
    )
    fsm = dict((k, (r, p)) for k, r, p in con.execute(q.format(g="fsm_eligible")).fetchall())
    assert fsm[True][0] > 1.3 * fsm[False][0]
    assert fsm[True][1] > 1.5 * fsm[False][1]
    sen = dict((k, (r, p)) for k, r, p in con.execute(q.format(g="sen_provision")).fetchall())
    assert sen["K"][1] > sen["N"][1]
    assert sen["E"][1] > sen["N"][1]


def test_eal_higher_in_london(con):
    london = one(con, "SELECT avg((language_group='OTH')::INT) FROM census WHERE region='London'")
    rest = one(con, "SELECT avg((language_group='OTH')::INT) FROM census WHERE region<>'London'")
    assert london > 2 * rest


def test_fsm_spread_across_las(con):
    rates = [r for (r,) in con.execute(
        "SELECT avg(fsm_eligible::INT) FROM census GROUP BY la_code HAVING count(*) > 2000"
    ).fetchall()]  # fmt: skip
    assert len(rates) > 100
    assert max(rates) - min(rates) > 0.15


def test_suspensions_concentrated_in_secondary(con):
    per_phase = dict(con.execute(
        "SELECT nc_year >= 7, count(e.pupil_id) / count(DISTINCT (c.pupil_id, c.academic_year)) "
        "FROM census c LEFT JOIN exclusions e USING (pupil_id, academic_year) GROUP BY 1"
    ).fetchall())  # fmt: skip
    assert per_phase[True] > 4 * per_phase[False]
