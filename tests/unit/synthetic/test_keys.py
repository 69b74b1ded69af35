"""Keys without DuckDB indexes: verified per chunk while generating, recorded on each table,
required by ``missing_constraints``; a generator that broke one would stop generation."""

from __future__ import annotations

import shutil

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from synthetic import generator, integrity, keys, load, schema
from synthetic.integrity import IntegrityError, key_unique, stored_in_key_order
from synthetic.load import generate_database, missing_constraints, read_data_version


def copy_of(path, tmp_path):
    copy = tmp_path / "copy.duckdb"
    shutil.copy(path, copy)
    return copy


def test_every_key_is_recorded_as_verified(npd_small):
    con = duckdb.connect(str(npd_small), read_only=True)
    attested = keys.attested_keys(con)
    con.close()
    wanted = {
        (t.name, kind, ", ".join(cols))
        for t in schema.TABLES.values()
        for kind, cols in keys.key_constraints(t)
    }
    assert attested == wanted


def test_private_tables_are_stored_in_key_order(npd_small):
    """What lets the snapshot verify its keys in one streaming pass (``key_unique``)."""
    con = duckdb.connect(str(npd_small), read_only=True)
    for table in schema.TABLES.values():
        for _kind, key in keys.key_constraints(table):
            if table.private and key[0] == "pupil_id":
                assert stored_in_key_order(con, table.name, key), (table.name, key)
    con.close()


def test_a_table_replaced_by_hand_lacks_its_keys(npd_tiny):
    con = duckdb.connect(str(npd_tiny))
    con.execute("CREATE TABLE plain AS SELECT * FROM exclusions")
    con.execute("DROP TABLE exclusions")
    con.execute("ALTER TABLE plain RENAME TO exclusions")
    missing = missing_constraints(con)
    con.close()
    assert missing[0] == "exclusions: PRIMARY KEY (pupil_id, academic_year, exclusion_seq)"
    assert "exclusions: CHECK (exclusion_seq BETWEEN 1 AND 6)" in missing


@pytest.mark.parametrize(
    "comment",
    [
        None,
        "keys verified at generation: UNIQUE (pupil_id)",  # the primary key left out
        "keys checked: PRIMARY KEY (pupil_id, academic_year); UNIQUE (pupil_id)",
    ],
)
def test_a_table_whose_keys_are_not_recorded_is_refused(npd_tiny, comment):
    con = duckdb.connect(str(npd_tiny))
    value = f"'{comment}'" if comment else "NULL"
    con.execute(f"COMMENT ON TABLE ks4 IS {value}")
    missing = missing_constraints(con)
    con.close()
    assert missing[0] == "ks4: PRIMARY KEY (pupil_id, academic_year)"


def test_key_unique_on_any_order(tmp_path):
    con = duckdb.connect(str(tmp_path / "k.duckdb"))
    con.execute("CREATE TABLE t (a BIGINT, b SMALLINT)")
    con.execute("INSERT INTO t VALUES (1, 1), (1, 2), (2, 1)")
    assert stored_in_key_order(con, "t", ("a", "b"))
    assert key_unique(con, "t", ("a", "b"))
    assert not key_unique(con, "t", ("a",))
    con.execute("INSERT INTO t VALUES (0, 5)")  # unique, but out of order: GROUP BY decides
    assert not stored_in_key_order(con, "t", ("a", "b"))
    assert key_unique(con, "t", ("a", "b"))
    con.execute("INSERT INTO t VALUES (1, 2)")
    assert not key_unique(con, "t", ("a", "b"))
    con.execute("CREATE TABLE s (k VARCHAR)")
    con.execute("INSERT INTO s VALUES ('a'), ('b')")
    assert key_unique(con, "s", ("k",))
    con.execute("INSERT INTO s VALUES ('a')")
    assert not key_unique(con, "s", ("k",))
    # batch boundaries: a repeat across two batches is caught too
    con.execute("CREATE TABLE big AS SELECT range AS a FROM range(3000000)")
    assert stored_in_key_order(con, "big", ("a",))
    con.execute(f"INSERT INTO big VALUES ({integrity.STREAM_BATCH_ROWS})")
    assert not key_unique(con, "big", ("a",))
    con.close()


def _break(monkeypatch, damage):
    """Make every chunk the generator emits pass through ``damage`` (chunk index, tables)."""
    real = generator.Generator.chunks

    def chunks(self):
        for k, tables in enumerate(real(self)):
            yield damage(k, dict(tables))

    monkeypatch.setattr(generator.Generator, "chunks", chunks)


def _repeat_row(data: pa.Table, i: int = 0) -> pa.Table:
    return pa.concat_tables([data.slice(0, i + 1), data.slice(i)])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda k, t: {**t, "census": _repeat_row(t["census"], 5)}, "census: PRIMARY KEY"),
        (lambda k, t: {**t, "exclusions": _repeat_row(t["exclusions"])}, "exclusions: PRIMARY"),
        (lambda k, t: {**t, "ks2": t["ks2"].take(np.arange(t["ks2"].num_rows)[::-1])}, "ks2"),
        (lambda k, t: {**t, "pupils": _repeat_row(t["pupils"])}, "pupils: PRIMARY KEY"),
    ],
    ids=["census row twice", "exclusion twice", "ks2 out of order", "pupil twice"],
)
def test_a_chunk_with_a_repeated_key_stops_generation(tmp_path, monkeypatch, damage, message):
    _break(monkeypatch, damage)
    target = tmp_path / "npd.duckdb"
    with pytest.raises(IntegrityError, match=message):
        generate_database(target, 2_000, seed=3, years="2018-2020")
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left


def test_chunks_that_overlap_stop_generation(tmp_path, monkeypatch):
    """Keys unique within each chunk but repeated across chunks (the same ids twice)."""
    monkeypatch.setattr(generator, "CHUNK_PUPILS", 700)
    seen: list[dict[str, pa.Table]] = []

    def replay_the_first(k, t):
        seen.append(t)
        return seen[0] if k == 2 else t

    _break(monkeypatch, replay_the_first)
    with pytest.raises(IntegrityError, match="does not start above the previous one"):
        generate_database(tmp_path / "npd.duckdb", 2_000, seed=3, years="2018-2020")
    assert list(tmp_path.iterdir()) == []


def test_a_row_without_its_reference_stops_generation(tmp_path, monkeypatch):
    def orphan(_k, t):
        urn = t["census"].column("urn").to_numpy().copy()
        urn[0] = 1  # no school has URN 1
        census = t["census"].set_column(4, "urn", pa.array(urn, pa.int32()))
        return {**t, "census": census}

    _break(monkeypatch, orphan)
    with pytest.raises(IntegrityError, match=r"census\.urn: a row without a schools\.urn"):
        generate_database(tmp_path / "npd.duckdb", 2_000, seed=3, years="2018-2020")


def test_a_duplicate_upn_stops_generation(tmp_path, monkeypatch):
    """UPNs are not in key order: they are verified by a GROUP BY once all are loaded."""

    def same_upn(_k, t):
        pupils = t["pupils"]
        upn = pupils.column("upn").to_pylist()
        upn[1] = upn[0]
        return {**t, "pupils": pupils.set_column(1, "upn", pa.array(upn))}

    _break(monkeypatch, same_upn)
    with pytest.raises(IntegrityError, match=r"pupils: \(upn\) is not unique"):
        generate_database(tmp_path / "npd.duckdb", 2_000, seed=3, years="2018-2020")
    assert list(tmp_path.iterdir()) == []


def test_loading_on_two_cursors_gives_the_data_one_cursor_gives(tmp_path, monkeypatch):
    """The lanes change how the rows are written, not which rows (nor their order)."""
    monkeypatch.setattr(generator, "CHUNK_PUPILS", 700)
    two = generate_database(tmp_path / "two.duckdb", 3_000, seed=9, years="2018-2020")
    monkeypatch.setattr(load, "LANES", (schema.PRIVATE_TABLES,))
    one = generate_database(tmp_path / "one.duckdb", 3_000, seed=9, years="2018-2020")
    assert two.digest == one.digest
    cons = [duckdb.connect(str(tmp_path / f), read_only=True) for f in ("one.duckdb", "two.duckdb")]
    for name in schema.PRIVATE_TABLES:
        a, b = (c.execute(f"SELECT * FROM {name}").fetchall() for c in cons)  # noqa: S608
        assert a == b, name
    for c in cons:
        c.close()


def test_an_error_while_loading_leaves_nothing(tmp_path, monkeypatch):
    real = load.insert_arrow

    def failing(con, name, data):
        if name == "absence":
            raise duckdb.ConstraintException("Constraint Error: boom")
        real(con, name, data)

    monkeypatch.setattr(load, "insert_arrow", failing)
    with pytest.raises(duckdb.ConstraintException, match="boom"):
        generate_database(tmp_path / "npd.duckdb", 2_000, seed=3, years="2018-2020")
    assert list(tmp_path.iterdir()) == []


def test_a_file_with_recorded_keys_is_served(npd_tiny):
    """The engine's gate (``missing_constraints``) takes recorded keys as in force."""
    con = duckdb.connect(str(npd_tiny), read_only=True)
    assert missing_constraints(con) == []
    assert read_data_version(npd_tiny).pupils == 3_000
    con.close()


def test_what_a_killed_run_left_is_removed_spill_folder_included(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max: no such process
    left = [tmp_path / f".npd.duckdb.tmp-{dead}-1", tmp_path / f".npd.duckdb.tmp-{dead}-1.wal"]
    for path in left:
        path.write_bytes(b"x")
    spill = tmp_path / f".npd.duckdb.tmp-{dead}-1.tmp"
    spill.mkdir()
    (spill / "duckdb_temp_storage-0.tmp").write_bytes(b"x")
    removed = load.remove_stale_temporaries(tmp_path / "npd.duckdb")
    assert sorted(removed) == sorted([*left, spill])
    assert list(tmp_path.iterdir()) == []
