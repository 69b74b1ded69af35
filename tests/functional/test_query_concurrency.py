"""Concurrent queries from separate processes can never overspend, on SQLite and PostgreSQL,
and every debit has its audit entry."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

import audit
from safesetting.administration import add_researcher, approve_project
from safesetting.control import init_home, open_control
from safesetting.home import Home
from safesetting.store import tables as t
from tests.server.conftest import LOAD_LIMITS, set_limits

WORKERS = 6
EPSILON = "0.25"  # a budget of 1 pays for exactly four


def _submit(home: str, db_url: str | None, token: str, year: int) -> str:
    if db_url:
        os.environ["SAFESETTING_DB_URL"] = db_url
    from safesetting.service import QueryService

    service = QueryService(open_control(Home(Path(home)), actor="service"))
    sql = (
        "SELECT sex, COUNT(*) FROM pupils JOIN ks2 USING (pupil_id)"
        f" WHERE academic_year = {year} GROUP BY sex"
    )
    result = service.submit(service.login(token), sql, "race", EPSILON)
    return result.status + ":" + ",".join(r.code for r in result.reasons)


@pytest.fixture(params=["sqlite", "postgres"])
def setting(request, tmp_path, npd_small, monkeypatch):
    db_url = None
    if request.param == "postgres":
        db_url = request.getfixturevalue("pg_url")()
        monkeypatch.setenv("SAFESETTING_DB_URL", db_url)
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(npd_small, home / "npd.duckdb")
    init_home(Home(home))
    set_limits(Home(home), LOAD_LIMITS)  # six at once from one researcher, on purpose
    control = open_control(Home(home), actor="admin:test")
    token = add_researcher(
        control, "ada", organisation="UCL", role="researcher", accredited_until="2031-01-01"
    ).token
    approve_project(
        control, "race", title="Race", org_type="academic", purpose="educational_research",
        tables=["pupils", "ks2"], budget_epsilon="1", expires="2031-01-01", members=["ada"],
    )  # fmt: skip
    return home, db_url, token, control


@pytest.mark.slow
def test_parallel_processes_never_overspend(setting):
    home, db_url, token, control = setting
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WORKERS) as pool:
        outcomes = pool.starmap(
            _submit, [(str(home), db_url, token, 2013 + i) for i in range(WORKERS)]
        )
    released = [o for o in outcomes if o.startswith("released")]
    denied = [o for o in outcomes if o.startswith("denied")]
    assert len(released) == 4, outcomes
    assert len(denied) == 2
    assert all("budget_exhausted" in o for o in denied)
    with control.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.sum(t.ledger.c.epsilon_micro))).scalar()
        entries = audit.read_entries(conn)
    assert total == 1_000_000
    accepted = {e.request["query_id"] for e in entries if e.action == "query.accepted"}
    done = {e.request["query_id"] for e in entries if e.action == "query.released"}
    with control.engine.connect() as conn:
        debited = set(conn.execute(sa.select(t.ledger.c.query_id)).scalars())
    assert accepted == debited == done
    key = audit.load_or_create_key(home / "checkpoint.key")
    assert audit.verify_log(control.engine, public_key=str(key.verifier)).ok
