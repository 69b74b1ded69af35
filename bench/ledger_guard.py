"""What checking the ledger against the log's running ε totals costs per debit.

    git archive <commit before the check> | tar -x -C /tmp/baseline
    python bench/ledger_guard.py [--baseline /tmp/baseline] [--debits 2000] [--prefill 0 10000]

For SQLite and PostgreSQL (on 127.0.0.1:5432, if reachable), with a ledger already holding
N debits: ``--debits`` transactions as the service writes them (``debit``, then the
``query.accepted`` entry), timing the debit call, the append and the whole transaction
(commit included). With ``--baseline``, the same transactions with that checkout's
``debit`` and ``append_entry`` on a database of their own, interleaved one for one with the
current code's so that a busy machine slows both alike. Prints medians in microseconds.
Also: the guard's statement alone, with and without the log's two totals in it.
"""

from __future__ import annotations

import argparse
import importlib.util
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import audit  # noqa: E402
from audit import store as log  # noqa: E402
from policies.decide import ProjectFacts  # noqa: E402
from safesetting.db import make_engine  # noqa: E402
from safesetting.store import ledger, migrate  # noqa: E402
from safesetting.store.registry import insert_project, insert_researcher  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
EPSILON = 1_000  # 0.001 ε per debit: the budget never runs out during the benchmark
CAP = 10**12
Code = tuple[Callable[..., Any], Callable[..., Any]]  # (debit, append_entry)


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _charge(conn: sa.Connection, code: Code, query_id: str) -> tuple[int, int]:
    """One debit and its entry; returns the nanoseconds each took."""
    debit, append = code
    started = time.perf_counter_ns()
    debit(conn, "bench", EPSILON, query_id, dataset_cap_micro=CAP)
    debited = time.perf_counter_ns()
    append(conn, actor="researcher:b", action="query.accepted", project="bench",
           request={"query_id": query_id}, decision="allowed", epsilon_micro=EPSILON)  # fmt: skip
    return debited - started, time.perf_counter_ns() - debited


def _prepare(url: str, code: Code, prefill: int) -> sa.Engine:
    engine = make_engine(url)
    migrate(engine)
    audit.create_schema(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        insert_researcher(conn, "b", organisation="x", role="researcher",
                          accredited_until=date(2099, 1, 1), now=now)  # fmt: skip
        facts = ProjectFacts(
            "bench", "educational_research", "academic", frozenset({"census"}), frozenset(),
            CAP, date(2099, 1, 1), members=frozenset({"b"}),
        )  # fmt: skip
        insert_project(conn, facts, title="bench", now=now)
        for i in range(prefill):
            _charge(conn, code, f"pre-{i}")
    return engine


def _transactions(codes: dict[str, Code], urls: dict[str, str], prefill: int, n: int) -> None:
    engines = {label: _prepare(urls[label], code, prefill) for label, code in codes.items()}
    times: dict[str, list[tuple[int, int, int]]] = {label: [] for label in codes}
    for i in range(n + 100):  # the first 100 fill the statement caches
        for label in codes if i % 2 else reversed(codes):
            started = time.perf_counter_ns()
            with engines[label].begin() as conn:
                call, append = _charge(conn, codes[label], f"q-{i}")
            if i >= 100:
                times[label].append((call, append, time.perf_counter_ns() - started))
    for engine in engines.values():
        engine.dispose()
    for label, rows in times.items():
        medians = [statistics.median(column) / 1000 for column in zip(*rows, strict=True)]
        print(f"  {label:<9} debit {medians[0]:8.0f}  append {medians[1]:7.0f}  "
              f"transaction {medians[2]:8.0f}")  # fmt: skip


def _guard_statement(url: str, prefill: int, n: int) -> None:
    sums_only = sa.select(*ledger._TOTALS.selected_columns[:2])
    engine = _prepare(url, (ledger.debit, log.append_entry), prefill)
    with engine.begin() as conn:
        times: list[tuple[int, int]] = []
        for _ in range(n):
            started = time.perf_counter_ns()
            conn.execute(ledger._TOTALS, {"project": "bench"}).one()
            middle = time.perf_counter_ns()
            conn.execute(sums_only, {"project": "bench"}).one()
            times.append((middle - started, time.perf_counter_ns() - middle))
    engine.dispose()
    with_log, without = (statistics.median(c) / 1000 for c in zip(*times, strict=True))
    print(f"  the guard's statement {with_log:.0f}; without the log's totals {without:.0f}")


@contextmanager
def _databases(backend: str, labels: list[str]) -> Iterator[dict[str, str] | None]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield {label: f"sqlite:///{tmp}/{label}.db" for label in labels}
        return
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    names = {label: f"ss_bench_{secrets.token_hex(4)}" for label in labels}
    try:
        with admin.connect() as conn:
            for name in names.values():
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError:
        yield None
        return
    try:
        yield {label: PG_ADMIN.rsplit("/", 1)[0] + f"/{name}" for label, name in names.items()}
    finally:
        with admin.connect() as conn:
            for name in names.values():
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, help="a checkout from before the check")
    parser.add_argument("--debits", type=int, default=2000)
    parser.add_argument("--prefill", type=int, nargs="+", default=[0, 10_000])
    args = parser.parse_args()
    codes: dict[str, Code] = {"current": (ledger.debit, log.append_entry)}
    if args.baseline:
        old_ledger = _load("baseline_ledger", args.baseline / "safesetting/store/ledger.py")
        old_log = _load("baseline_log", args.baseline / "audit/store.py")
        codes["baseline"] = (old_ledger.debit, old_log.append_entry)
    print("medians in µs")
    for prefill in args.prefill:
        for backend in ("sqlite", "postgresql"):
            print(f"{backend}, a ledger of {prefill} debits:")
            with _databases(backend, [*codes, "guard"]) as urls:
                if urls is None:
                    print("  (server unreachable)")
                    continue
                _transactions(codes, urls, prefill, args.debits)
                _guard_statement(urls["guard"], prefill, args.debits)


if __name__ == "__main__":
    main()
