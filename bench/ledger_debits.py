"""Ledger debits per second, one transaction each, from 1 and 4 processes (SQLite, PostgreSQL).
Each debit is followed by its ``query.accepted`` entry, as the service writes them (the
debit checks the ledger against the log's running ε totals).

    python bench/ledger_debits.py [--debits 400]

Prints a table: backend, processes, debits, seconds, debits/s, and checks that the ledger
holds exactly what succeeded. PostgreSQL rows need the server on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import audit  # noqa: E402
from policies.decide import ProjectFacts  # noqa: E402
from safesetting.db import make_engine  # noqa: E402
from safesetting.store import debit, migrate, project_spent  # noqa: E402
from safesetting.store.registry import insert_project, insert_researcher  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
EPSILON = 1_000  # 0.001 ε per debit: the budget never runs out during the benchmark


def _worker(url: str, n: int, tag: str) -> tuple[float, float, int]:
    engine = make_engine(url)
    with engine.connect():
        pass  # connect before the clock starts
    started = time.time()
    for i in range(n):
        with engine.begin() as conn:
            debit(conn, "bench", EPSILON, f"{tag}-{i}", dataset_cap_micro=10**12)
            audit.append_entry(
                conn, actor="researcher:b", action="query.accepted", project="bench",
                request={"query_id": f"{tag}-{i}"}, decision="allowed", epsilon_micro=EPSILON,
            )  # fmt: skip
    finished = time.time()
    engine.dispose()
    return started, finished, n


def _prepare(url: str) -> None:
    engine = make_engine(url)
    migrate(engine)
    audit.create_schema(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        insert_researcher(conn, "b", organisation="x", role="researcher",
                          accredited_until=date(2099, 1, 1), now=now)  # fmt: skip
        facts = ProjectFacts(
            "bench", "educational_research", "academic", frozenset({"census"}), frozenset(),
            10**12, date(2099, 1, 1), members=frozenset({"b"}),
        )  # fmt: skip
        insert_project(conn, facts, title="bench", now=now)


def _run(url: str, processes: int, total: int) -> tuple[float, int]:
    _prepare(url)
    per = total // processes
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = list(pool.map(_worker, [url] * processes, [per] * processes,
                             [str(p) for p in range(processes)]))  # fmt: skip
    # From the first worker's first debit to the last worker's last: process start-up excluded.
    elapsed = max(r[1] for r in runs) - min(r[0] for r in runs)
    done = sum(r[2] for r in runs)
    with make_engine(url).connect() as conn:
        assert project_spent(conn, "bench") == done * EPSILON
    return elapsed, done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--debits", type=int, default=400)
    args = parser.parse_args()
    print(f"{'backend':<11} {'procs':>5} {'debits':>7} {'seconds':>8} {'debits/s':>9}")
    for processes in (1, 4):
        with tempfile.TemporaryDirectory() as tmp:
            secs, n = _run(f"sqlite:///{tmp}/control.db", processes, args.debits)
            print(f"{'sqlite':<11} {processes:>5} {n:>7} {secs:>8.2f} {n / secs:>9.0f}")
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        name = f"ss_bench_{secrets.token_hex(4)}"
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.OperationalError:
            print(f"{'postgresql':<11} {processes:>5}   (server unreachable)")
            continue
        try:
            url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
            secs, n = _run(url, processes, args.debits)
            make_engine(url).dispose()
            print(f"{'postgresql':<11} {processes:>5} {n:>7} {secs:>8.2f} {n / secs:>9.0f}")
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
