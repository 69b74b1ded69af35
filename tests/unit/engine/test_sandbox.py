"""The sandbox refuses file access and configuration changes even if such SQL reached it."""

from __future__ import annotations

import duckdb
import pytest

from safesetting.engine.execute import QueryTimeoutError, Sandbox
from safesetting.errors import SafeSettingError, StateError


@pytest.fixture
def tiny_db(tmp_path):
    path = tmp_path / "npd.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE pupils (pupil_id BIGINT PRIMARY KEY, upn VARCHAR)")
    con.execute("INSERT INTO pupils VALUES (1, 'A00000000001X'), (2, 'B00000000002Y')")
    con.execute("CREATE TABLE census (pupil_id BIGINT, academic_year SMALLINT)")
    con.execute("INSERT INTO census VALUES (1, 2023), (2, 2023), (2, 2024)")
    con.close()
    (tmp_path / "secret.csv").write_text("a,b\n1,2\n")
    return path


@pytest.fixture
def sandbox(tiny_db):
    box = Sandbox(tiny_db, {"census": ["pupil_id", "academic_year"]}, optout_upns=["B00000000002Y"])
    yield box
    box.close()


def test_runs_generated_sql_and_applies_optouts(sandbox):
    assert sandbox.run("SELECT COUNT(*) FROM census") == [(3,)]
    assert sandbox.run("SELECT COUNT(*) FROM __optout") == [(1,)]


def test_only_the_tables_asked_for_are_copied(sandbox):
    with pytest.raises(SafeSettingError):
        sandbox.run("SELECT COUNT(*) FROM pupils")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('{dir}/secret.csv')",
        "SELECT * FROM read_blob('{db}')",
        "SELECT * FROM read_text('{db}')",
        "SELECT * FROM '{dir}/secret.csv'",
        "COPY census TO '{dir}/out.csv'",
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
def test_file_access_and_configuration_are_refused(sandbox, tiny_db, sql):
    sql = sql.format(dir=tiny_db.parent, db=tiny_db)
    with pytest.raises(SafeSettingError) as info:
        sandbox.run(sql)
    # The message names only the error class: nothing from the data or the file leaks.
    assert str(tiny_db.parent) not in info.value.message
    assert not (tiny_db.parent / "out.csv").exists()


def test_the_database_file_is_not_attached(sandbox, tiny_db):
    paths = sandbox.run("SELECT path FROM duckdb_databases() WHERE path IS NOT NULL")
    assert all(str(tiny_db) not in str(p) for (p,) in paths)


def test_long_queries_are_interrupted(sandbox):
    with pytest.raises(QueryTimeoutError):
        sandbox.run("SELECT COUNT(*) FROM range(100000000000) a", timeout_s=0.2)


def test_missing_database_is_a_clear_state_error(tmp_path):
    with pytest.raises(StateError, match="data generate"):
        Sandbox(tmp_path / "npd.duckdb", ["census"])
