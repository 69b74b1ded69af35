"""Several uvicorn workers, many clients, and a kill -9: the budget is never overspent, the
ledger and the log always agree, and the log never forks (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

import audit
from safesetting.cli import cli
from safesetting.db import engine_for
from safesetting.store import tables as t
from synthetic.codes import REGION_NAMES
from tests.server.conftest import LOAD_LIMITS, kill_server, populate, start_server, stop_server

pytestmark = pytest.mark.slow

CLIENTS = 20
REQUESTS_PER_CLIENT = 15
EPSILON = "0.1"


def distinct_sql(i: int) -> str:
    """A different plan for every i below 12,960, so nothing is answered from the cache."""
    year, nc_year, region = 2006 + i % 20, i // 20 % 12, REGION_NAMES[i // 240 % 9]
    fsm, language = ("TRUE", "FALSE")[i // 2160 % 2], ("ENG", "OTH", "UNC")[i // 4320 % 3]
    return (
        "SELECT COUNT(*) AS n FROM census WHERE academic_year = "
        f"{year} AND nc_year = {nc_year} AND region = '{region}' AND fsm_eligible = {fsm} "
        f"AND language_group = '{language}'"
    )


def ledger_and_log(home):
    """Debited query ids, query.accepted / query.released ids, released query rows."""
    engine = engine_for(home)
    with engine.connect() as conn:
        debits = dict(conn.execute(sa.select(t.ledger.c.query_id, t.ledger.c.epsilon_micro)).all())
        rows = dict(conn.execute(sa.select(t.queries.c.id, t.queries.c.status)).all())
        accepted = [
            e.request["query_id"] for e in audit.read_entries(conn, action="query.accepted")
        ]
        released = [
            e.request["query_id"] for e in audit.read_entries(conn, action="query.released")
        ]
    return debits, rows, accepted, released


def assert_verify_clean(runner, home):
    result = runner.invoke(cli, ["--home", str(home.root), "audit", "verify"],
                           catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stdout.startswith("OK: ")


def test_bounded_load_on_several_workers(runner, tmp_path, npd_small, db_url):  # noqa: ARG001
    # budget 1: room for exactly 10
    setting = populate(tmp_path / "home", npd_small, budget="1", limits=LOAD_LIMITS)
    served = start_server(setting.home, workers=2, log=tmp_path / "server.log")
    headers = setting.headers("ada")

    def client(c: int) -> list[tuple[int, dict]]:
        answers = []
        with httpx.Client(base_url=served.url, headers=headers, timeout=60) as http:
            for k in range(REQUESTS_PER_CLIENT):
                body = {"sql": distinct_sql(c * REQUESTS_PER_CLIENT + k), "project": "gaps",
                        "epsilon": EPSILON}  # fmt: skip
                r = http.post("/v1/queries", json=body)
                answers.append((r.status_code, r.json()))
        return answers

    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [a for batch in pool.map(client, range(CLIENTS)) for a in batch]
    finally:
        stop_server(served)
    assert len(answers) == CLIENTS * REQUESTS_PER_CLIENT  # every request answered
    statuses = Counter(status for status, _ in answers)
    assert statuses == {200: 10, 409: CLIENTS * REQUESTS_PER_CLIENT - 10}, statuses
    released = {b["query_id"] for s, b in answers if s == 200}
    assert all(b["status"] == "released" for s, b in answers if s == 200)
    assert all(b["result"]["status"] == "denied" for s, b in answers if s == 409)
    debits, rows, accepted, logged = ledger_and_log(setting.home)
    assert sum(debits.values()) == 1_000_000  # exactly the budget, never more
    assert set(debits) == set(accepted) == set(logged) == released
    assert len(accepted) == len(set(accepted)) == 10
    assert {q for q, s in rows.items() if s == "released"} == released
    assert_verify_clean(runner, setting.home)


def test_kill_9_mid_burst_leaves_ledger_and_log_agreeing(runner, tmp_path, npd_small, db_url):  # noqa: ARG001
    # budget 10: room for 100
    setting = populate(tmp_path / "home", npd_small, budget="10", limits=LOAD_LIMITS)
    served = start_server(setting.home, workers=2, log=tmp_path / "server.log")
    headers = setting.headers("ada")
    stop = threading.Event()
    seen: list[dict] = []
    counter = iter(range(1_000_000))
    lock = threading.Lock()

    def burst() -> None:
        with httpx.Client(base_url=served.url, headers=headers, timeout=30) as http:
            while not stop.is_set():
                with lock:
                    i = next(counter)
                body = {"sql": distinct_sql(i), "project": "gaps", "epsilon": EPSILON}
                try:
                    r = http.post("/v1/queries", json=body)
                except httpx.TransportError:
                    return  # the server died under us
                if r.status_code == 200:
                    with lock:
                        seen.append(r.json())

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 30
    while len(seen) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # mid-burst: queries in every state of the query path
    kill_server(served)  # SIGKILL to the supervisor and its workers
    stop.set()
    for th in threads:
        th.join(timeout=60)
    served.process.wait(timeout=30)
    assert len(seen) >= 5

    debits, rows, accepted, logged = ledger_and_log(setting.home)
    # Every debit has its query.accepted entry and vice versa (one transaction) ...
    assert set(debits) == set(accepted)
    # ... nothing was released without one, and every answer a client got is in the log.
    assert set(logged) <= set(accepted)
    assert {b["query_id"] for b in seen} <= set(logged)
    assert {q for q, s in rows.items() if s == "released"} == set(logged)
    assert set(rows) == set(debits)
    unfinished = set(accepted) - set(logged)  # paid for, killed before release: allowed
    print(f"killed with {len(unfinished)} accepted, unreleased of {len(accepted)}")
    assert_verify_clean(runner, setting.home)

    # After a restart the service carries on from the same ledger and log.
    served = start_server(setting.home, workers=2, log=tmp_path / "server.log")
    try:
        body = {"sql": distinct_sql(2_000), "project": "gaps", "epsilon": EPSILON}
        r = httpx.post(f"{served.url}/v1/queries", headers=headers, timeout=60, json=body)
        assert r.status_code == 200, r.text
        budget = httpx.get(f"{served.url}/v1/projects/gaps/budget", headers=headers).json()
    finally:
        stop_server(served)
    debits, *_ = ledger_and_log(setting.home)
    assert round(budget["epsilon_spent"] * 1_000_000) == sum(debits.values())
    assert_verify_clean(runner, setting.home)
