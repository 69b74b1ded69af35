"""The server's shared sandbox: one locked in-memory copy for every query, the same true
aggregates as a per-query copy, opt-outs per query (never leaking between queries), no
names or postcodes held, and the same refusals of file access."""

from __future__ import annotations

import threading

import duckdb
import pytest

from safesetting.engine.compile import compile_plan, needed_columns
from safesetting.engine.execute import Sandbox, shared_sandbox
from safesetting.engine.parse import parse_query
from safesetting.errors import SafeSettingError

SQL = "SELECT region, COUNT(*) FROM census WHERE academic_year = 2024 GROUP BY region"


@pytest.fixture(scope="module")
def box(npd_small):
    return shared_sandbox(npd_small)


@pytest.fixture(scope="module")
def upns(npd_small):
    con = duckdb.connect(str(npd_small), read_only=True)
    rows = con.execute(
        "SELECT upn FROM pupils JOIN census USING (pupil_id) WHERE academic_year = 2024 LIMIT 300"
    ).fetchall()
    con.close()
    return [r[0] for r in rows]


def test_same_answers_as_a_per_query_copy(box, npd_small, upns):
    plan = parse_query(SQL)
    compiled = compile_plan(plan, min_year=2010)
    own = Sandbox(npd_small, needed_columns(plan), upns[:10], row_filters=compiled.pushdown)
    try:
        want = sorted(own.run(compiled.sql))
    finally:
        own.close()
    assert sorted(box.run(compiled.sql, optout_upns=upns[:10])) == want


def test_opt_outs_are_per_query_even_when_concurrent(box, upns):
    compiled = compile_plan(parse_query("SELECT COUNT(*) FROM census WHERE academic_year = 2024"))
    full = box.run(compiled.sql, optout_upns=[])[0][0]
    results: dict[int, int] = {}

    def ask(k: int) -> None:
        results[k] = box.run(compiled.sql, optout_upns=upns[: k * 100])[0][0]

    threads = [threading.Thread(target=ask, args=(k,)) for k in (0, 1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: full - k * 100 for k in (0, 1, 2, 3)}
    assert box.run(compiled.sql, optout_upns=[])[0][0] == full  # nothing left behind


def test_holds_no_names_postcodes_or_dates_of_birth(box):
    cols = {c for (c,) in box.con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = 'pupils'"
    ).fetchall()}  # fmt: skip
    assert cols == {"pupil_id", "sex", "la_code"}


def test_a_query_must_say_its_opt_outs(box):
    with pytest.raises(ValueError, match="opt-outs"):
        box.run(SQL)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_blob('{db}')",
        "SELECT * FROM read_csv('{db}')",
        "COPY census TO '{dir}/out.csv'",
        "ATTACH '{db}' AS again (READ_ONLY)",
        "SET enable_external_access = true",
        "INSTALL httpfs",
    ],
)
def test_file_access_is_refused(box, npd_small, sql):
    with pytest.raises(SafeSettingError):
        box.run(sql.format(db=npd_small, dir=npd_small.parent), optout_upns=[])
    assert not (npd_small.parent / "out.csv").exists()


def test_the_same_file_reuses_one_copy(box, npd_small):
    assert shared_sandbox(npd_small) is box
