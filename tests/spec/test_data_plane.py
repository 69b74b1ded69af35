"""The published snapshot and the DuckDB data plane over it: what it holds, what it refuses,
and that it answers as DuckDB over the source file does."""

from __future__ import annotations

import gc
import shutil
import stat
import threading

import duckdb
import numpy as np
import pytest

from safesetting.engine.compile import compile_plan
from safesetting.engine.parse import parse_query
from safesetting.engine.planes.duckdb import DuckDBPlane, QueryTimeoutError
from safesetting.engine.session import Optouts, Rules, Session
from safesetting.engine.snapshot import (
    SNAPSHOT_TABLES,
    DataUnavailableError,
    check_snapshot,
    publish,
    snapshot_path,
)
from safesetting.errors import SafeSettingError, StateError
from synthetic.load import read_data_version

SQL = "SELECT region, COUNT(*) FROM census WHERE academic_year = 2024 GROUP BY region"
RAW = "SELECT region, COUNT(*) FROM census WHERE academic_year = 2024 GROUP BY region"


@pytest.fixture(scope="module")
def data(npd_small, tmp_path_factory):
    """A private copy of the small NPD (publishing writes beside it)."""
    path = tmp_path_factory.mktemp("plane") / "npd.duckdb"
    shutil.copy(npd_small, path)
    return path


@pytest.fixture(scope="module")
def snapshot(data):
    return publish(data, read_data_version(data).id)


@pytest.fixture(scope="module")
def plane(snapshot):
    p = DuckDBPlane(snapshot)
    yield p
    p.close()


@pytest.fixture(scope="module")
def upns(data):
    con = duckdb.connect(str(data), read_only=True)
    rows = con.execute(
        "SELECT upn FROM pupils JOIN census USING (pupil_id) WHERE academic_year = 2024 "
        "ORDER BY pupil_id LIMIT 300"
    ).fetchall()
    con.close()
    return [r[0] for r in rows]


def test_the_snapshot_holds_only_queryable_columns(snapshot, data):
    con = duckdb.connect(str(snapshot), read_only=True)
    cols = set(con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE table_name = 'pupils'"
    ).fetchall())  # fmt: skip
    text = snapshot.read_bytes()
    con.close()
    assert {c for _t, c in cols} == {"pupil_id", "sex", "la_code"}
    src = duckdb.connect(str(data), read_only=True)
    people = src.execute("SELECT upn, postcode FROM pupils LIMIT 200").fetchall()
    src.close()
    for person in people:  # no UPN or postcode anywhere in the file (surnames name schools)
        assert not any(v.encode() in text for v in person)


def test_the_snapshot_is_read_only_and_published_once(data, snapshot):
    assert not snapshot.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    before = snapshot.stat().st_mtime_ns
    assert publish(data, read_data_version(data).id) == snapshot
    assert snapshot.stat().st_mtime_ns == before


def test_answers_as_duckdb_over_the_source(plane, data):
    compiled = compile_plan(parse_query(SQL), min_year=2010)
    con = duckdb.connect(str(data), read_only=True)
    want = sorted(con.execute(RAW).fetchall())
    con.close()
    assert sorted(plane.run(compiled)) == want


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT region, MEDIAN(sessions_authorised), SUM(sessions_possible), COUNT(*) FROM absence "
        "JOIN census USING (pupil_id, academic_year) GROUP BY region",
        "SELECT QUANTILE_CONT(attainment8, 0.9), SUM(attainment8), AVG(attainment8) FROM ks4",
        "SELECT academic_year, MEDIAN(attainment8) FROM ks4 WHERE academic_year > 2025 "
        "GROUP BY academic_year",  # no rows: no group
        "SELECT MEDIAN(attainment8) FROM ks4 WHERE academic_year > 2025",  # a NULL list
    ],
)
def test_a_quantiles_values_come_as_arrays_and_the_rest_as_fetchall_gives_it(plane, sql):
    """Lists are fetched through Arrow (one float array per group); every other column has
    the value and type ``fetchall`` gives (a HUGEINT sum stays an int)."""
    compiled = compile_plan(parse_query(sql), min_year=2010)
    got = plane.run(compiled)
    cur = plane.con.cursor()
    for table in ("__optout", "__subject"):
        cur.execute(f"CREATE TEMP TABLE {table} AS SELECT 1::BIGINT AS pupil_id WHERE false")
    want = cur.execute(compiled.sql).fetchall()
    cur.close()

    def plain(row):  # a list's order is the engine's, not the data's: compare sorted
        return tuple(
            None if v is None
            else sorted(None if x != x else x for x in v.tolist()) if isinstance(v, np.ndarray)
            else sorted(v) if isinstance(v, list)
            else v
            for v in row
        )  # fmt: skip

    mine, theirs = sorted(map(plain, got), key=repr), sorted(map(plain, want), key=repr)
    assert mine == theirs
    assert [[type(v) for v in r] for r in mine] == [[type(v) for v in r] for r in theirs]
    assert any(isinstance(v, np.ndarray) for r in got for v in r) or all(
        v is None for r in got for v in r[-1:]
    )


def test_opt_outs_are_per_query_even_when_concurrent(plane, data, upns):
    session = Session(data, Rules(), plane=plane)
    ids = [session.pupil_id(u) for u in upns]
    compiled = compile_plan(parse_query("SELECT COUNT(*) FROM census WHERE academic_year = 2024"))
    full = plane.run(compiled)[0][0]
    results: dict[int, int] = {}

    def ask(k: int) -> None:
        results[k] = plane.run(compiled, ids[: k * 100])[0][0]

    threads = [threading.Thread(target=ask, args=(k,)) for k in (0, 1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: full - k * 100 for k in (0, 1, 2, 3)}
    assert plane.run(compiled)[0][0] == full  # nothing left behind
    assert session.optout_ids(Optouts.of(upns[:100])) == tuple(sorted(ids[:100]))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_blob('{db}')",
        "SELECT * FROM read_csv('{db}')",
        "SELECT * FROM read_text('{dir}/npd.duckdb')",
        "SELECT upn FROM snap.pupils",
        "SELECT * FROM '{db}'",
        "COPY census TO '{dir}/out.csv'",
        "COPY census TO '{snapdir}/out.csv'",
        "EXPORT DATABASE '{dir}/export'",
        "ATTACH '{db}' AS again (READ_ONLY)",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "SET lock_configuration = false",
        "SET memory_limit = '20GB'",
    ],
)
def test_file_access_and_configuration_are_refused(plane, data, snapshot, sql):
    text = sql.format(db=data, dir=data.parent, snapdir=snapshot.parent)
    with pytest.raises(duckdb.Error):
        plane.con.cursor().execute(text).fetchall()
    assert not (data.parent / "out.csv").exists()
    assert not (snapshot.parent / "out.csv").exists()


def test_only_the_snapshot_is_attached(plane, data):
    paths = [p for (p,) in plane.con.execute(
        "SELECT path FROM duckdb_databases() WHERE path IS NOT NULL").fetchall()]  # fmt: skip
    assert all(str(data) != p for p in paths)
    assert len(paths) == 1
    assert "snapshots" in paths[0]


def test_a_plane_nobody_holds_closes_and_removes_its_spill_folder(snapshot):
    """An old session's plane (replaced after ``data generate --force``) is not left open."""
    plane = DuckDBPlane(snapshot)
    spill, con = plane.spill, plane.con
    assert spill.is_dir()
    del plane
    gc.collect()
    assert not spill.exists()
    with pytest.raises(duckdb.ConnectionException):
        con.execute("SELECT 1")


def test_long_queries_are_interrupted(plane):
    class Endless:
        sql = "SELECT COUNT(*) FROM range(100000000000) a"

    with pytest.raises(QueryTimeoutError):
        plane.run(Endless, timeout_s=0.2)  # type: ignore[arg-type]


def test_engine_errors_name_only_their_class(plane):
    class Broken:
        sql = "SELECT CAST('secret-value' AS INTEGER) FROM census"

    with pytest.raises(SafeSettingError) as info:
        plane.run(Broken)  # type: ignore[arg-type]
    assert "secret" not in info.value.message


def test_a_snapshot_with_an_identifier_or_without_a_check_is_refused(snapshot, tmp_path):
    forged = tmp_path / "forged.duckdb"
    shutil.copy(snapshot, forged)
    forged.chmod(0o644)
    con = duckdb.connect(str(forged))
    con.execute("ALTER TABLE pupils ADD COLUMN upn VARCHAR")
    con.close()
    with pytest.raises(StateError, match=r"holds pupils\.upn"):
        check_snapshot(forged)
    con = duckdb.connect(str(forged))
    con.execute("CREATE OR REPLACE TABLE ks4 AS SELECT * FROM ks4")  # constraints dropped
    con.close()
    with pytest.raises(StateError, match="lacks ks4"):
        check_snapshot(forged)


def test_duplicate_keys_stop_the_publication(npd_small, tmp_path):
    path = tmp_path / "npd.duckdb"
    con = duckdb.connect(str(path))
    con.execute(f"ATTACH '{npd_small}' AS src (READ_ONLY)")
    for name in SNAPSHOT_TABLES:  # the same data without keys, one census row twice
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM src.{name}")
    con.execute("INSERT INTO census SELECT * FROM census LIMIT 1")
    con.execute("CREATE TABLE dataset_metadata AS SELECT * FROM src.dataset_metadata")
    con.close()
    with pytest.raises(StateError, match=r"census \(pupil_id, academic_year\) is not unique"):
        publish(path, "v-test")
    assert not snapshot_path(path, "v-test").exists()


def test_data_replaced_since_its_version_was_read_is_never_published_under_it(npd_small, tmp_path):
    """A first query that read version A while ``data generate --force`` wrote B must not
    file B's rows under A's name (A's snapshot was removed by then)."""
    path = tmp_path / "npd.duckdb"
    shutil.copy(npd_small, path)
    with pytest.raises(DataUnavailableError, match="changed while its snapshot was written"):
        publish(path, "npd-g2-000000000000")
    assert not snapshot_path(path, "npd-g2-000000000000").exists()
    assert [p.name for p in (tmp_path / "snapshots").glob("*.duckdb*")] == []


def test_an_unwritable_place_is_a_clear_error(npd_small, tmp_path):
    path = tmp_path / "npd.duckdb"
    shutil.copy(npd_small, path)
    (tmp_path / "snapshots").write_text("not a folder")
    with pytest.raises((DataUnavailableError, StateError, OSError)):
        publish(path, "v-test")


def test_a_missing_data_file_is_a_clear_state_error(tmp_path):
    with pytest.raises(StateError, match="data generate"):
        Session(tmp_path / "npd.duckdb")


SLICED = [
    "SELECT reason, COUNT(*), SUM(sessions), AVG(sessions), COUNT(DISTINCT pupil_id), "
    "MEDIAN(sessions) FROM exclusions GROUP BY reason",
    "SELECT census.region, COUNT(*), QUANTILE_CONT(exclusions.sessions, 0.9) FROM exclusions "
    "JOIN census USING (pupil_id, academic_year) GROUP BY census.region",
    "SELECT COUNT(*) FROM census WHERE nc_year BETWEEN 1 AND 6",  # not truncated: one pass
]


@pytest.mark.parametrize("sql", SLICED)
def test_a_truncated_query_in_passes_over_pupil_ranges_gives_the_same_answer(
    data, monkeypatch, sql
):
    """At national scale a truncated query runs in passes of SLICE_PUPILS pupils; since
    truncation is per pupil and each pupil is in one pass, the combined parts are exact."""
    from safesetting.engine import session as session_module

    whole = Session(data, Rules())
    prepared = whole.prepare(sql)
    want = whole.truth(prepared, Optouts())
    monkeypatch.setattr(session_module, "SLICE_PUPILS", 7_000)  # 80,000 pupils: 12 passes
    sliced = Session(data, Rules())
    got = sliced.truth(sliced.prepare(sql), Optouts())
    assert got.rows == want.rows
    if prepared.compiled.sliced:
        calls = []
        real = DuckDBPlane.run

        def spy(self, compiled, *args, **kwargs):
            calls.append(compiled.sql)
            return real(self, compiled, *args, **kwargs)

        monkeypatch.setattr(DuckDBPlane, "run", spy)
        sliced.truth(sliced.prepare(sql), Optouts())
        assert len(calls) == 12
        assert "CAST(7001 AS BIGINT) AND CAST(14000 AS BIGINT)" in calls[1]
