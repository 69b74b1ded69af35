"""Measure a generated database against the calibration targets (true values, in SQL).

This reads exact aggregates from the data, so it is for the generator's own tests, the
benchmark and the README only; nothing on a research path may call it.
"""

# SQL here is assembled from names in the schema declaration and constants, never from input.
# ruff: noqa: S608
from __future__ import annotations

import duckdb

from synthetic import targets


def _pct(condition: str) -> str:
    return f"100.0 * avg(CAST({condition} AS INTEGER))"


MEASURES: dict[targets.Target, str] = {
    targets.FSM_NATIONAL: "SELECT " + _pct("fsm_eligible") + " FROM census",
    targets.FSM_NORTH_EAST: "SELECT " + _pct("fsm_eligible") + " FROM census "
    "WHERE region = 'North East'",
    targets.FSM_SOUTH_EAST: "SELECT " + _pct("fsm_eligible") + " FROM census "
    "WHERE region = 'South East'",
    targets.SEN_SUPPORT: "SELECT " + _pct("sen_provision = 'K'") + " FROM census",
    targets.EHC_PLAN: "SELECT " + _pct("sen_provision = 'E'") + " FROM census",
    targets.EHC_BOYS_SHARE: "SELECT " + _pct("p.sex = 'M'") + " FROM census c "
    "JOIN pupils p USING (pupil_id) WHERE c.sen_provision = 'E'",
    targets.EAL: "SELECT " + _pct("language_group = 'OTH'") + " FROM census",
    targets.WHITE_BRITISH: "SELECT " + _pct("ethnicity_minor = 'WBRI'") + " FROM census",
    targets.KS2_RWM: "SELECT " + _pct("rwm_expected") + " FROM ks2",
    targets.KS2_RWM_DISADVANTAGED: "SELECT " + _pct("rwm_expected") + " FROM ks2 "
    "JOIN census USING (pupil_id, academic_year) WHERE ever_fsm_6",
    targets.KS2_RWM_OTHERS: "SELECT " + _pct("rwm_expected") + " FROM ks2 "
    "JOIN census USING (pupil_id, academic_year) WHERE NOT ever_fsm_6",
    targets.A8_MEAN: "SELECT avg(attainment8) FROM ks4",
    targets.A8_DISADVANTAGE_GAP: "SELECT avg(attainment8) FILTER (NOT ever_fsm_6) "
    "- avg(attainment8) FILTER (ever_fsm_6) FROM ks4 JOIN census USING (pupil_id, academic_year)",
    targets.ABSENCE_RATE: "SELECT 100.0 * sum(sessions_authorised + sessions_unauthorised) "
    "/ sum(sessions_possible) FROM absence",
    targets.PERSISTENT_ABSENCE: "SELECT " + _pct("persistent_absentee") + " FROM absence",
    targets.SUSPENSION_RATE: "SELECT 100.0 * (SELECT count(*) FROM exclusions "
    "WHERE category = 'suspension') / (SELECT count(*) FROM census)",
    targets.PERMANENT_RATE: "SELECT 100.0 * (SELECT count(*) FROM exclusions "
    "WHERE category = 'permanent') / (SELECT count(*) FROM census)",
}
assert set(MEASURES) == set(targets.ALL)


def measure(con: duckdb.DuckDBPyConnection) -> dict[targets.Target, float]:
    """Every target's measured value, in the target's unit."""
    return {t: float(con.execute(sql).fetchall()[0][0]) for t, sql in MEASURES.items()}


def measure_file(path: str) -> dict[targets.Target, float]:
    con = duckdb.connect(path, read_only=True)
    try:
        return measure(con)
    finally:
        con.close()
