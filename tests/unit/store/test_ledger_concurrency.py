"""Parallel processes debiting one project never overspend: exactly floor(budget / ε) succeed.

Runs on SQLite (BEGIN IMMEDIATE) and on PostgreSQL (row locks); every worker is a separate
process with its own engine, released at the same instant. Each debit is appended to the log
as the service does, so a false alarm of the ledger-against-log check would fail a worker.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from safesetting.db import make_engine
from safesetting.errors import BudgetExhaustedError
from safesetting.store import dataset_spent, project_spent
from safesetting.store.registry import insert_project
from tests.unit.store.test_ledger import charge
from tests.unit.store.test_registry import NOW, add_ada, facts

WORKERS = 4
ATTEMPTS = 8


def _spend(url: str, project: str, epsilon: int, cap: int, start_at: float) -> int:
    engine = make_engine(url)
    while time.time() < start_at:
        time.sleep(0.001)
    succeeded = 0
    for attempt in range(ATTEMPTS):
        try:
            with engine.begin() as conn:
                charge(conn, project, epsilon, f"{os.getpid()}-{attempt}", cap)
            succeeded += 1
        except BudgetExhaustedError:
            pass
    engine.dispose()
    return succeeded


def _race(url: str, jobs: list[tuple[str, int]], cap: int) -> list[int]:
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 1.5  # time for every process to start and connect
    with ProcessPoolExecutor(len(jobs), mp_context=context) as pool:
        futures = [pool.submit(_spend, url, p, eps, cap, start_at) for p, eps in jobs]
        return [f.result(timeout=120) for f in futures]


@pytest.mark.parametrize(("budget", "epsilon"), [(1_000_000, 300_000), (1_000_000, 100_000)])
def test_parallel_debits_never_overspend(engine, budget, epsilon):
    with engine.begin() as conn:
        add_ada(conn)
        insert_project(conn, facts(budget_micro=budget), title="T", now=NOW)
    results = _race(str(engine.url.render_as_string(hide_password=False)),
                    [("p1", epsilon)] * WORKERS, cap=100_000_000)  # fmt: skip
    assert sum(results) == budget // epsilon
    with engine.connect() as conn:
        assert project_spent(conn, "p1") == (budget // epsilon) * epsilon <= budget


def test_parallel_projects_never_pass_the_dataset_cap(engine):
    with engine.begin() as conn:
        add_ada(conn)
        for pid in ("p1", "p2"):
            insert_project(conn, facts(id=pid, budget_micro=5_000_000), title="T", now=NOW)
    cap = 2_000_000
    jobs = [("p1", 300_000), ("p2", 300_000)] * (WORKERS // 2)
    results = _race(engine.url.render_as_string(hide_password=False), jobs, cap=cap)
    assert sum(results) == cap // 300_000
    with engine.connect() as conn:
        assert dataset_spent(conn) == (cap // 300_000) * 300_000
