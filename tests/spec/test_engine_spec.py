"""Plan → bounded SQL → true aggregates, checked against raw DuckDB on the synthetic NPD.

The engine session prepares each query and its data plane runs it over the published
snapshot. Noise is off this path on purpose: these tests look at the engine's true
aggregates, which in the product never leave ``Session.answer``.
"""

from __future__ import annotations

import re

import duckdb
import pytest

from safesetting.engine.compile import compile_plan
from safesetting.engine.parse import Catalogue, parse_query
from safesetting.engine.planes.duckdb import DuckDBPlane
from safesetting.engine.session import Optouts, Session
from synthetic.schema import TABLES


@pytest.fixture(scope="module")
def raw(npd_small):
    con = duckdb.connect(str(npd_small), read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="module")
def catalogue(raw):
    urns = tuple(r[0] for r in raw.execute("SELECT urn FROM schools ORDER BY urn").fetchall())
    return Catalogue(ref_domains={"schools.urn": urns})


_sessions: dict[str, Session] = {}


def true_rows(db, sql, catalogue, optouts=(), min_year=None):
    session = _sessions.get(str(db)) or _sessions.setdefault(str(db), Session(db))
    prepared = session.prepare(sql)
    assert not hasattr(prepared, "reasons"), prepared
    assert set(session.catalogue.ref_domains["schools.urn"]) == set(
        catalogue.ref_domains["schools.urn"]
    )
    prepared = session.prepare_plan(prepared.plan, min_year=min_year)
    ids = session.optout_ids(Optouts.of(optouts))
    return prepared.compiled, sorted(session.plane().run(prepared.compiled, ids), key=repr)


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


def test_only_pupils_over_the_bound_lose_rows_and_they_keep_exactly_the_bound(
    npd_small, raw, catalogue
):
    """Pupils with at most ``bound`` rows keep all of them (the window is skipped for them);
    each pupil with more keeps exactly ``bound``, so per group the released count is the
    light pupils' exact count plus between 0 and the heavy pupils' rows there."""
    sql = "SELECT reason, COUNT(*) FROM exclusions GROUP BY reason"
    compiled, got = true_rows(npd_small, sql, catalogue)
    bound = compiled.bound.rows
    counts = raw.execute(
        "SELECT reason, SUM(CASE WHEN n <= ? THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN n > ? THEN 1 ELSE 0 END) FROM exclusions JOIN "
        "(SELECT pupil_id, COUNT(*) n FROM exclusions GROUP BY pupil_id) USING (pupil_id) "
        "GROUP BY reason",
        [bound, bound],
    ).fetchall()
    heavy_pupils = raw.execute(
        "SELECT COUNT(*) FROM (SELECT pupil_id FROM exclusions GROUP BY pupil_id "
        "HAVING COUNT(*) > ?)",
        [bound],
    ).fetchone()[0]
    assert heavy_pupils > 0  # the case is exercised
    released = dict(got)
    kept_heavy = 0
    for reason, light, heavy in counts:
        assert light <= released[reason] <= light + heavy
        kept_heavy += released[reason] - light
    assert kept_heavy == heavy_pupils * bound


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


def test_a_pupil_with_ten_thousand_rows_moves_counts_by_at_most_the_bound(
    npd_small, catalogue, tmp_path
):
    """Add one new pupil with 10,000 exclusion rows to a copy of the data without its
    constraints (nothing stops them there): truncation keeps the released counts' L1 change
    within the declared bound."""
    sql = "SELECT reason, COUNT(*), SUM(sessions) FROM exclusions GROUP BY reason"
    plan = parse_query(sql, catalogue)
    compiled = compile_plan(plan, salt="attack")
    loose = tmp_path / "loose.duckdb"
    con = duckdb.connect(str(loose))
    con.execute(f"ATTACH '{npd_small}' AS src (READ_ONLY)")
    for name in TABLES:
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM src.{name}")
    con.close()
    plane = DuckDBPlane(loose)
    before = {r[0]: r[1:] for r in plane.run(compiled)}
    plane.close()
    con = duckdb.connect(str(loose))
    con.execute(
        "INSERT INTO exclusions (pupil_id, academic_year, reason, sessions) "
        "SELECT 999999999, 2020, 'PD', 90 FROM range(10000)"
    )
    con.close()
    plane = DuckDBPlane(loose)
    after = {r[0]: r[1:] for r in plane.run(compiled)}
    plane.close()
    count_change = sum(abs(after[k][0] - before.get(k, (0, 0))[0]) for k in after)
    sum_change = sum(abs(after[k][1] - before.get(k, (0, 0))[1]) for k in after)
    assert count_change == compiled.bound.rows == 20
    assert sum_change <= compiled.bound.rows * 90


def test_rows_without_a_pupil_id_never_drop_other_pupils_rows(npd_small, catalogue, tmp_path):
    """Defence in depth for the truncation's light/heavy split: were rows with a NULL
    pupil_id ever to reach it (the snapshot declares pupil_id NOT NULL and each pass's range
    filter drops NULLs, both removed here), ``NOT IN`` a list holding NULL would drop every
    light pupil's rows. The heavy list never holds NULL, so the answer does not move."""
    sql = "SELECT reason, COUNT(*) FROM exclusions GROUP BY reason"
    compiled = compile_plan(parse_query(sql, catalogue), salt="attack")
    no_range = re.sub(r' AND "pupil_id" BETWEEN CAST\([^)]*\) AND CAST\([^)]*\)', "",
                      compiled.sql)  # fmt: skip
    assert no_range != compiled.sql
    loose = duckdb.connect(str(tmp_path / "loose.duckdb"))
    loose.execute(f"ATTACH '{npd_small}' AS src (READ_ONLY)")
    loose.execute("CREATE TABLE exclusions AS SELECT * FROM src.exclusions")
    loose.execute("CREATE TEMP TABLE __optout AS SELECT 1::BIGINT AS pupil_id WHERE false")
    before = sorted(loose.execute(no_range).fetchall())
    loose.execute(
        "INSERT INTO exclusions (pupil_id, academic_year, reason, sessions) "
        "SELECT NULL, 2020, 'PD', 4 FROM range(50)"
    )
    assert sorted(loose.execute(no_range).fetchall()) == before
    loose.close()


def test_data_that_would_break_an_untruncated_bound_is_never_served(npd_tiny, tmp_path):
    """The data file carries no key indexes (their verification is recorded when it is
    generated); a second census row for a pupil and year, added by hand afterwards, stops
    the snapshot's publication, so no query ever reads it."""
    import shutil

    from safesetting.engine.snapshot import DataUnavailableError
    from safesetting.errors import StateError

    path = tmp_path / "npd.duckdb"
    shutil.copy(npd_tiny, path)
    con = duckdb.connect(str(path))
    pupil, year = con.execute("SELECT pupil_id, academic_year FROM census LIMIT 1").fetchone()
    con.execute(
        "INSERT INTO census SELECT * FROM census WHERE pupil_id = ? AND academic_year = ?",
        [pupil, year],
    )
    con.close()
    session = Session(path)
    with pytest.raises((StateError, DataUnavailableError), match="not unique"):
        session.plane()
