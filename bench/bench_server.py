"""HTTP throughput and latency of the safe setting, beside in-process and raw DuckDB baselines.

    python bench/bench_server.py [--pupils 1000000] [--workers 2] [--clients 8]
                                 [--cached 2000] [--fresh 60] [--data DIR]

Generates the synthetic NPD once (1M pupils: ~30 s) into ``--data`` (default: a temporary
folder, removed afterwards; pass a folder to keep and reuse it), registers a researcher and
a project, starts ``safesetting serve --workers N`` on a free loopback port and measures:

* **cached**: the same query again and again from ``--clients`` concurrent keep-alive
  clients (authenticate, parse, decide, cache hit, audit entry + signed checkpoint);
* **fresh**: a different query each time (so a debit, a sandbox over the needed columns,
  the true aggregates, OpenDP noise, two audit entries), sequentially and from 4 clients;
* a trivial GET (the public key) from the same clients: the HTTP stack's own ceiling;
* the same two in-process through ``QueryService.submit`` (no HTTP), and the bare GROUP BY
  on raw DuckDB (no policy, no sandbox, no noise, no audit) as the floor.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path

import duckdb
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from safesetting import administration as admin  # noqa: E402
from safesetting.control import open_control  # noqa: E402
from safesetting.home import Home  # noqa: E402
from safesetting.service import QueryService  # noqa: E402
from synthetic.codes import REGION_NAMES  # noqa: E402
from synthetic.load import generate_database  # noqa: E402

CACHED_SQL = "SELECT region, COUNT(*) AS n FROM census WHERE academic_year = 2023 GROUP BY region"
RAW_SQL = CACHED_SQL.replace("AS n", "")
FUTURE = "2031-01-31"
EPSILON = "0.001"  # fresh queries are many: keep each one cheap


RUN = secrets.randbelow(10**9) * 10**4  # the release cache spans runs and projects


def fresh_sql(i: int) -> str:
    """A different plan every time, in this run and (almost surely) any other, so nothing
    comes from the cache: one of ~2 million pairs of non-empty subsets of year groups and
    regions (every value in a filter must be a public one)."""
    k = RUN + i
    years = [str(y) for y in range(12) if (k % 4095 + 1) >> y & 1]
    regions = [f"'{r}'" for b, r in enumerate(REGION_NAMES) if ((k // 4095) % 511 + 1) >> b & 1]
    return (
        "SELECT region, COUNT(*) AS n FROM census WHERE academic_year = 2023 "
        f"AND nc_year IN ({', '.join(years)}) AND region IN ({', '.join(regions)}) GROUP BY region"
    )


def prepare(data: Path, pupils: int) -> tuple[Home, str, str]:
    home = Home.resolve(data)
    home.ensure()
    if not home.database.exists():
        t0 = time.perf_counter()
        generate_database(home.database, pupils, seed=0, years="2012-2024")
        print(f"generated {pupils:,} pupils in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    control = open_control(home)
    rid = f"bench{os.getpid()}"
    token = admin.add_researcher(
        control, rid, organisation="Bench", role="researcher", accredited_until=FUTURE
    ).token
    admin.approve_project(
        control, rid, title="Benchmark", org_type="academic", purpose="educational_research",
        tables=["census"], budget_epsilon="10", expires=FUTURE, members=[rid],
    )  # fmt: skip
    assert token is not None
    return home, token, rid


def percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return statistics.median(ordered), p99


def drive(clients: int, total: int, one: Callable[[httpx.Client | None, int], None],
          url: str | None, token: str | None) -> tuple[float, float, float]:  # fmt: skip
    """``total`` calls of ``one`` from ``clients`` threads: (req/s, p50 s, p99 s)."""
    ids = count()
    latencies: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        http = (
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
            if url
            else None
        )
        try:
            while True:
                with lock:
                    i = next(ids)
                if i >= total:
                    return
                t0 = time.perf_counter()
                one(http, i)
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
        finally:
            if http is not None:
                http.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    return total / wall, p50, p99


def post(project: str) -> Callable[[httpx.Client | None, int, str], None]:
    def send(http: httpx.Client | None, _i: int, sql: str) -> None:
        assert http is not None
        r = http.post("/v1/queries", json={"sql": sql, "project": project, "epsilon": EPSILON})
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")

    return send


def start_server(home: Home, workers: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "safesetting", "--home", str(home.root), "serve", "--port",
         str(port), "--workers", str(workers), "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/v1/audit/checkpoint", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pupils", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--cached", type=int, default=2000, help="cached requests")
    parser.add_argument("--fresh", type=int, default=60, help="fresh requests per run")
    parser.add_argument("--data", type=Path, help="home folder to keep and reuse")
    args = parser.parse_args()

    tmp = None if args.data else Path(tempfile.mkdtemp(prefix="ss-bench-"))
    home, token, project = prepare(args.data or tmp, args.pupils)
    send = post(project)
    rows: list[tuple[str, float, float, float]] = []

    # Baselines: raw DuckDB and the service in-process.
    con = duckdb.connect(str(home.database), read_only=True)
    raw = drive(1, 200, lambda _h, _i: con.execute(RAW_SQL).fetchall(), None, None)
    rows.append(("raw DuckDB GROUP BY (floor)", *raw))
    con.close()
    service = QueryService(open_control(home, actor="service"))
    service.submit(token, CACHED_SQL, project, EPSILON)  # released once; the rest are cached
    rows.append(("in-process QueryService, cached",
                 *drive(1, 300, lambda _h, _i: service.submit(token, CACHED_SQL, project, EPSILON),
                        None, None)))  # fmt: skip
    offset = 1_000_000
    rows.append(("in-process QueryService, fresh",
                 *drive(1, args.fresh, lambda _h, i: service.submit(
                     token, fresh_sql(offset + i), project, EPSILON), None, None)))  # fmt: skip

    proc, url = start_server(home, args.workers)
    try:
        label = f"HTTP, {args.workers} workers"
        # The HTTP stack's own ceiling here: a trivial endpoint, same clients.
        ceiling = drive(
            args.clients, args.cached, lambda h, _i: h.get("/v1/audit/public-key"), url, token
        )
        rows.append((f"{label}, trivial GET (stack ceiling)", *ceiling))
        cached = drive(args.clients, args.cached, lambda h, i: send(h, i, CACHED_SQL), url, token)
        rows.append((f"{label}, cached, {args.clients} clients", *cached))
        fresh1 = drive(1, args.fresh, lambda h, i: send(h, i, fresh_sql(i)), url, token)
        rows.append((f"{label}, fresh, 1 client", *fresh1))
        offset = 2_000_000
        fresh4 = drive(4, args.fresh, lambda h, i: send(h, i, fresh_sql(offset + i)), url, token)
        rows.append((f"{label}, fresh, 4 clients", *fresh4))
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{args.pupils:,} pupils, {os.cpu_count()} cores, control database: "
          f"{os.environ.get('SAFESETTING_DB_URL', 'SQLite (home)').split('@')[-1]}\n")  # fmt: skip
    print(f"| {'what':<44} | {'req/s':>8} | {'p50 ms':>8} | {'p99 ms':>8} |")
    print(f"| {'-' * 44} | {'-' * 8}:| {'-' * 8}:| {'-' * 8}:|")
    for what, rate, p50, p99 in rows:
        print(f"| {what:<44} | {rate:8.1f} | {p50 * 1000:8.1f} | {p99 * 1000:8.1f} |")


if __name__ == "__main__":
    main()
