"""Loading: keys and checks enforced by DuckDB, data version, atomic replacement."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from synthetic import GENERATOR_VERSION, load, schema
from synthetic.integrity import key_unique
from synthetic.load import (
    GenerationError,
    content_digest,
    create_table_sql,
    generate_database,
    read_data_version,
)


def test_declared_columns_types_and_constraints_exist(npd_small):
    con = duckdb.connect(str(npd_small), read_only=True)
    for table in schema.TABLES.values():
        cols = dict(con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
            [table.name]).fetchall())  # fmt: skip
        assert cols == {c.name: c.dtype for c in table.columns}
        kinds = {k for (k,) in con.execute(
            "SELECT constraint_type FROM duckdb_constraints() WHERE table_name = ?",
            [table.name]).fetchall()}  # fmt: skip
        assert "NOT NULL" in kinds
        # keys: verified by the loader and recorded on the table, not DuckDB indexes
        assert "PRIMARY KEY" not in kinds
        assert "UNIQUE" not in kinds
    assert load.missing_constraints(con) == []
    con.close()


# Rows that break a CHECK or NOT NULL: DuckDB refuses them in any generated file.
BREAKING_WRITES = [
    ("UPDATE census SET sen_provision = 'X' WHERE rowid = 0", "SEN outside its domain"),
    ("UPDATE ks2 SET read_score = 121 WHERE rowid = 0", "score above 120"),
    (
        "INSERT INTO exclusions SELECT pupil_id, academic_year, 7, category, reason, sessions "
        "FROM exclusions LIMIT 1",
        "seventh exclusion in a year",
    ),
    (
        "UPDATE absence SET sessions_authorised = sessions_possible + 1 WHERE rowid = 0",
        "more absence than sessions",
    ),
    ("UPDATE census SET pupil_id = NULL WHERE rowid = 0", "census row without a pupil"),
]
# Rows that break a key: refused by DuckDB only with key_indexes=True; otherwise the file is
# never written after generation, and a key broken by hand is found by ``key_unique``.
BREAKING_KEYS = [
    ("INSERT INTO census SELECT * FROM census LIMIT 1", "census",
     ("pupil_id", "academic_year"), "duplicate (pupil_id, academic_year)"),
    ("INSERT INTO absence SELECT * FROM absence LIMIT 1", "absence",
     ("pupil_id", "academic_year"), "duplicate absence row"),
    (
        "INSERT INTO ks2 SELECT pupil_id, academic_year + 1, read_score, maths_score, gps_score,"
        " writing_ta, rwm_expected FROM ks2 LIMIT 1",
        "ks2", ("pupil_id",), "second KS2 row for a pupil",
    ),
    (
        "INSERT INTO pupils SELECT pupil_id + 10000000, upn, forename, surname, date_of_birth, "
        "sex, postcode, la_code FROM pupils LIMIT 1",
        "pupils", ("upn",), "duplicate UPN",
    ),
    (
        "INSERT INTO exclusions SELECT * FROM exclusions LIMIT 1", "exclusions",
        ("pupil_id", "academic_year", "exclusion_seq"), "duplicate exclusion",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "what"), BREAKING_WRITES, ids=[w for _, w in BREAKING_WRITES])
def test_database_refuses_rows_that_break_the_declared_bounds(npd_tiny, sql, what):
    con = duckdb.connect(str(npd_tiny))
    with pytest.raises(duckdb.ConstraintException):
        con.execute(sql)
    con.close()


@pytest.fixture(scope="module")
def npd_indexed(tmp_path_factory):
    path = tmp_path_factory.mktemp("indexed") / "npd.duckdb"
    generate_database(path, 3_000, seed=1, years="2016-2020", key_indexes=True)
    return path


@pytest.mark.parametrize(
    ("sql", "table", "key", "what"), BREAKING_KEYS, ids=[w[-1] for w in BREAKING_KEYS]
)
def test_a_broken_key_is_found(npd_tiny, npd_indexed, tmp_path, sql, table, key, what):
    con = duckdb.connect(str(npd_tiny))
    assert key_unique(con, table, key)
    con.execute(sql)  # no index: DuckDB takes it
    assert not key_unique(con, table, key)
    con.close()
    copy = tmp_path / "indexed.duckdb"
    shutil.copy(npd_indexed, copy)
    con = duckdb.connect(str(copy))
    assert load.missing_constraints(con) == []
    with pytest.raises(duckdb.ConstraintException):
        con.execute(sql)
    con.close()


def test_key_indexes_give_the_same_data(npd_tiny, npd_indexed):
    assert read_data_version(npd_indexed).digest == read_data_version(npd_tiny).digest


def test_foreign_keys_can_be_enforced_by_duckdb_too():
    sql = create_table_sql(schema.table("census"), foreign_keys=True)
    assert "FOREIGN KEY (pupil_id) REFERENCES pupils (pupil_id)" in sql
    assert "FOREIGN KEY" not in create_table_sql(schema.table("census"))


def test_enforced_foreign_keys_refuse_an_orphan(tmp_path):
    path = tmp_path / "fk.duckdb"
    generate_database(path, 500, seed=2, years="2020-2021", enforce_foreign_keys=True)
    con = duckdb.connect(str(path))
    with pytest.raises(duckdb.ConstraintException):
        con.execute(
            "INSERT INTO ks4 SELECT pupil_id + 10000000, academic_year, attainment8, "
            "english_grade, maths_grade, basics_grade4, basics_grade5 FROM ks4 LIMIT 1"
        )
    con.close()


def test_verify_references_catches_an_orphan(npd_tiny):
    con = duckdb.connect(str(npd_tiny))
    con.execute("UPDATE census SET urn = 1 WHERE rowid = 0")
    with pytest.raises(RuntimeError, match=r"census\.urn"):
        load.verify_references(con)
    con.close()


def test_data_version_round_trip(npd_tiny):
    v = read_data_version(npd_tiny)
    assert (v.seed, v.pupils, v.first_year, v.last_year) == (1, 3000, 2016, 2020)
    assert v.generator_version == GENERATOR_VERSION
    assert v.id.startswith(f"npd-g{GENERATOR_VERSION}-")
    assert len(v.id) <= 24
    assert v.rows["pupils"] == 3000
    assert set(v.rows) == set(schema.TABLES)
    con = duckdb.connect(str(npd_tiny), read_only=True)
    assert content_digest(con)[0] == v.digest
    con.close()


def test_digest_changes_when_one_value_changes(npd_tiny, tmp_path):
    copy = tmp_path / "copy.duckdb"
    shutil.copy(npd_tiny, copy)
    con = duckdb.connect(str(copy))
    before, _ = content_digest(con)
    con.execute(
        "UPDATE absence SET sessions_unauthorised = sessions_unauthorised + 1 "
        "WHERE rowid = (SELECT min(rowid) FROM absence WHERE sessions_authorised > 0)"
    )
    con.execute(
        "UPDATE absence SET sessions_authorised = sessions_authorised - 1 "
        "WHERE rowid = (SELECT min(rowid) FROM absence WHERE sessions_authorised > 0)"
    )
    after, _ = content_digest(con)
    con.close()
    assert before != after


def test_same_seed_same_data_different_seed_different(tmp_path):
    a = generate_database(tmp_path / "a.duckdb", 4000, seed=5, years="2015-2022")
    b = generate_database(tmp_path / "b.duckdb", 4000, seed=5, years="2015-2022")
    c = generate_database(tmp_path / "c.duckdb", 4000, seed=6, years="2015-2022")
    assert a.digest == b.digest
    assert a.id == b.id
    assert c.digest != a.digest
    assert a.rows == b.rows


def test_determinism_across_chunks(tmp_path, monkeypatch):
    # several chunks: per-chunk seeds and UPN serials carried across chunks stay reproducible
    monkeypatch.setattr("synthetic.generator.CHUNK_PUPILS", 700)
    a = generate_database(tmp_path / "a.duckdb", 3000, seed=9, years="2018-2020")
    b = generate_database(tmp_path / "b.duckdb", 3000, seed=9, years="2018-2020")
    assert a.digest == b.digest
    con = duckdb.connect(str(tmp_path / "a.duckdb"), read_only=True)
    assert con.execute("SELECT count(DISTINCT upn), max(pupil_id) FROM pupils").fetchall()[0] == (
        3000,
        3000,
    )
    con.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pupils": 0}, "at least 1"),
        ({"pupils": -3}, "at least 1"),
        ({"pupils": "100"}, "whole number"),
        ({"pupils": True}, "whole number"),
        ({"seed": -1}, "seed"),
        ({"years": "2024-2012"}, "ends before it starts"),
        ({"years": "2000-2010"}, "within"),
        ({"years": "twenty"}, "look like"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(tmp_path, kwargs, message):
    args = {"pupils": 100, "seed": 0, "years": "2012-2024", **kwargs}
    with pytest.raises(GenerationError, match=message):
        generate_database(tmp_path / "x.duckdb", **args)
    assert list(tmp_path.iterdir()) == []


def test_existing_database_refused_unless_forced(npd_tiny):
    before = read_data_version(npd_tiny)
    with pytest.raises(GenerationError, match="already exists"):
        generate_database(npd_tiny, 100, seed=2, years="2016-2020")
    assert read_data_version(npd_tiny) == before
    after = generate_database(npd_tiny, 100, seed=2, years="2016-2020", force=True)
    assert read_data_version(npd_tiny) == after != before


@pytest.mark.parametrize("when", [1, 3])
def test_interrupted_run_leaves_previous_database_intact(npd_tiny, when):
    before = read_data_version(npd_tiny)
    size = npd_tiny.stat().st_size

    def interrupt(what, done, total):
        if done == when:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_database(npd_tiny, 2000, seed=3, years="2016-2020", force=True,
                          progress=interrupt)  # fmt: skip
    assert read_data_version(npd_tiny) == before
    assert npd_tiny.stat().st_size == size
    # no temporary left beside it (the rest of the folder is the home the fixture made)
    assert [p.name for p in npd_tiny.parent.iterdir() if p.name.startswith(".npd.duckdb")] == []


def test_unwritable_place_is_a_generation_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(GenerationError, match="cannot create"):
        generate_database(blocker / "home" / "npd.duckdb", 100)


def test_write_failure_is_a_generation_error_and_cleans_up(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise duckdb.IOException("IO Error: could not write: No space left on device")

    monkeypatch.setattr(load, "content_digest", full_disk)
    with pytest.raises(GenerationError, match="No space left"):
        generate_database(tmp_path / "npd.duckdb", 200)
    assert list(tmp_path.iterdir()) == []


def test_single_year_and_widest_range(tmp_path):
    one = generate_database(tmp_path / "one.duckdb", 1200, seed=4, years="2020")
    assert (one.first_year, one.last_year) == (2020, 2020)
    assert one.rows["census"] == 1200  # every pupil is in school in a one-year window
    con = duckdb.connect(str(tmp_path / "one.duckdb"), read_only=True)
    assert con.execute("SELECT DISTINCT academic_year FROM census").fetchall() == [(2020,)]
    con.close()
    wide = generate_database(tmp_path / "wide.duckdb", 1200, seed=4, years="2006-2025")
    assert wide.rows["census"] > 1200


def test_a_folder_in_the_way_is_refused(tmp_path):
    (tmp_path / "npd.duckdb").mkdir()
    with pytest.raises(GenerationError, match="not a file"):
        generate_database(tmp_path / "npd.duckdb", 100, force=True)
