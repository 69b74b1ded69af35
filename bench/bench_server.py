"""HTTP throughput and latency of the safe setting, beside in-process and raw DuckDB baselines.

    python bench/bench_server.py [--pupils 1000000] [--workers 2] [--clients 8]
                                 [--cached 2000] [--fresh 60] [--data DIR]
                                 [--floods-only | --no-floods] [--phase-seconds 10]
                                 [--legit-clients 4] [--legit-rate 2]
                                 [--flood-clients 64] [--flood-sources 1,64]
                                 [--slow-connections 1000,3000] [--trickle-interval 1]

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

Then **floods** (a second table), each for ``--phase-seconds``: ``--legit-clients``
keep-alive clients from ``--legit-source`` (127.0.0.2) alternate the cached query and
``GET /v1/catalogue``, each at ``--legit-rate`` requests a second (within the server's
per-address and per-token rates), and their p50/p99 counts only the answers they wanted
(429s, 503s and anything else are counted apart), with

* no flood;
* a **bad-token flood** per ``--flood-sources`` count: ``--flood-clients`` keep-alive
  connections, spread over that many loopback addresses (127.1.x.y: the server limits rates
  per address), POSTing ``/v1/queries`` with a fresh random bearer token each time, as fast
  as the server answers; the table adds the flood's own answers and how many audit entries
  were written per second (the log's tree size, from the home's control database);
* a **slow-body flood** per ``--slow-connections`` count: that many connections, each from
  an address of its own, sending a POST's headers and then its 4 KiB body a byte per
  ``--trickle-interval`` seconds, and coming back that long after the server answers or
  closes.

The floods run in a process of their own (asyncio, raw sockets) so that they do not hold
the measuring clients' GIL; they share the box's two cores with the server. The loopback
addresses other than 127.0.0.1 need Linux.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

import duckdb
import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import audit  # noqa: E402
from audit.store import entries  # noqa: E402
from safesetting import administration as admin  # noqa: E402
from safesetting.control import init_home, open_control  # noqa: E402
from safesetting.db import make_engine  # noqa: E402
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


#: [limits] for the capacity table (--no-floods): it measures how fast the service answers one
#: token from one address, which the default rate limits would otherwise cut to 10-20 a second.
CAPACITY_LIMITS = {
    "requests_per_second_per_client": "1000000.0",
    "burst_per_client": "1000000",
    "requests_per_second_per_token": "1000000.0",
    "burst_per_token": "1000000",
    "concurrent_queries_per_researcher": "1000",
}


def raise_limits(home: Home) -> None:
    lines = home.policy.read_text().splitlines()
    for i, line in enumerate(lines):
        key = line.split("=")[0].strip()
        if key in CAPACITY_LIMITS:
            lines[i] = f"{key} = {CAPACITY_LIMITS[key]}"
    home.policy.write_text("\n".join(lines) + "\n")


def prepare(data: Path, pupils: int, *, capacity: bool = False) -> tuple[Home, str, str]:
    home = Home.resolve(data)
    init_home(home)  # policy, signing key, control database (only init creates a home)
    if capacity:
        raise_limits(home)
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


def drive(clients: int, total: int, one: Callable[[httpx.Client | None, int], object],
          url: str | None, token: str | None) -> tuple[float, float, float, int]:  # fmt: skip
    """``total`` calls of ``one`` from ``clients`` threads: (req/s, p50 s, p99 s, 429s).

    An answer 429 (the server's rate limits, ``policy.toml [limits]``) is counted apart and
    left out of the latencies.
    """
    ids = count()
    latencies: list[float] = []
    limited = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal limited
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
                answer = one(http, i)
                elapsed = time.perf_counter() - t0
                with lock:
                    if getattr(answer, "status_code", answer) == 429:
                        limited += 1
                    else:
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
    p50, p99 = percentiles(latencies) if latencies else (math.nan, math.nan)
    return total / wall, p50, p99, limited


def post(project: str) -> Callable[[httpx.Client | None, int, str], int]:
    def send(http: httpx.Client | None, _i: int, sql: str) -> int:
        assert http is not None
        r = http.post("/v1/queries", json={"sql": sql, "project": project, "epsilon": EPSILON})
        if r.status_code not in (200, 429):
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
        return r.status_code

    return send


def start_server(home: Home, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    """``serve`` with its defaults; its output (a flood makes a lot) goes to ``log``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "safesetting", "--home", str(home.root), "serve", "--port",
             str(port), "--workers", str(workers), "--log-level", "warning"],
            cwd=ROOT, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT,
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


# --- Floods -------------------------------------------------------------------------------

SLOW_BODY_BYTES = 4096  # declared by each slow-body request (under the 64 KiB limit)


def flood_address(i: int) -> str:
    """The ``i``-th attacker's loopback address (Linux answers on all of 127/8), so that the
    server's per-address limits see as many clients as the flood has addresses."""
    return f"127.1.{i // 250}.{i % 250 + 1}"


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status and whether the server will close, of one response with a Content-Length."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    length = close = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            close = "close" in value
    await reader.readexactly(length)
    return int(head.split()[1]), bool(close)


async def bad_token_client(
    host: str, port: int, source: str, running: list[bool], counts: Counter
) -> None:
    """POST a query with a fresh random token, again and again, on one keep-alive connection
    (a new one whenever the server closes it)."""
    body = json.dumps({"sql": CACHED_SQL, "project": "bench", "epsilon": EPSILON}).encode()
    writer = None
    while running[0]:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
            writer.write(
                f"POST /v1/queries HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
                f"sst_{secrets.token_urlsafe(24)}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            status, close = await read_response(reader)
            counts[str(status)] += 1
            if close:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            counts["error"] += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.05)
    if writer is not None:
        writer.close()


async def slow_body_client(
    host: str, port: int, source: str, running: list[bool], counts: Counter, interval: float
) -> None:
    """Headers at once, then the body a byte per ``interval``; back ``interval`` after the
    server answers or closes."""
    head = (
        f"POST /v1/queries HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {SLOW_BODY_BYTES}\r\n\r\n"
    ).encode()
    while running[0]:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        except OSError:
            counts["connect failed"] += 1
            await asyncio.sleep(interval)
            continue
        answer = asyncio.ensure_future(read_response(reader))
        try:
            writer.write(head)
            while not answer.done() and running[0]:
                await asyncio.wait({answer}, timeout=interval)
                if not answer.done():
                    writer.write(b" ")
                    await writer.drain()
            if answer.done():
                counts[str(answer.result()[0])] += 1
            else:
                counts["held open at the end"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            counts["closed, no answer"] += 1
        finally:
            answer.cancel()
            writer.close()
        await asyncio.sleep(interval)


def run_flood(kind: str, url: str, n: int, sources: int, interval: float,
              ready, stop, out) -> None:  # noqa: ANN001  # fmt: skip
    """The flood process: ``n`` clients of ``kind`` from ``sources`` addresses, from
    ``ready`` (set here once they are all started) until ``stop``; sends its Counter and
    its duration."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 256)), hard))
    host, port = url.removeprefix("http://").rsplit(":", 1)

    async def flood() -> tuple[Counter, float]:
        counts: Counter = Counter()
        running = [True]

        async def one(i: int) -> None:
            await asyncio.sleep(i / n)  # ramp up over a second: no SYN storm
            source = flood_address(i % sources)
            if kind == "bad-token":
                await bad_token_client(host, int(port), source, running, counts)
            else:
                await slow_body_client(host, int(port), source, running, counts, interval)

        clients = asyncio.gather(*(one(i) for i in range(n)))
        await asyncio.sleep(1 + interval)  # all started, the slow ones a byte in
        ready.set()
        counts.clear()  # count from here
        start = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        running[0] = False
        seconds = time.monotonic() - start
        await clients
        return counts, seconds

    counts, seconds = asyncio.run(flood())
    out.send((dict(counts), seconds))


def numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def log_counts(home: Home) -> tuple[int, int]:
    """Entries in the audit log, and its ``auth.failed`` entries, from the control database."""
    engine = make_engine(home.db_url)
    try:
        with engine.connect() as conn:
            failed = sa.select(sa.func.count()).where(entries.c.action == "auth.failed")
            return audit.tree_head(conn).size, conn.execute(failed).scalar_one()
    finally:
        engine.dispose()


def legit_traffic(url: str, token: str, project: str, args: argparse.Namespace) -> dict[str, Any]:
    """``--legit-clients`` keep-alive clients from ``--legit-source``, each alternating the
    cached query and the catalogue at ``--legit-rate`` requests a second."""
    latencies: dict[str, list[float]] = {"cached": [], "catalogue": []}
    statuses: Counter = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + args.phase_seconds
    body = {"sql": CACHED_SQL, "project": project, "epsilon": EPSILON}

    def client() -> None:
        transport = httpx.HTTPTransport(local_address=args.legit_source)
        next_at = time.monotonic()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=60, transport=transport) as http:  # fmt: skip
            for i in count():
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at, time.monotonic()) + 1 / args.legit_rate
                if time.monotonic() >= stop_at:
                    return
                kind = ("cached", "catalogue")[i % 2]
                t0 = time.perf_counter()
                try:
                    if kind == "cached":
                        r = http.post("/v1/queries", json=body)
                        good = r.status_code == 200 and r.json()["status"] == "cached"
                    else:
                        r = http.get("/v1/catalogue")
                        good = r.status_code == 200
                    outcome = "ok" if good else str(r.status_code)
                except httpx.TransportError as exc:
                    outcome = type(exc).__name__
                elapsed = time.perf_counter() - t0
                with lock:
                    statuses[outcome] += 1
                    if outcome == "ok":
                        latencies[kind].append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(args.legit_clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {"statuses": statuses, "latencies": latencies}


def flood_phase(
    label: str, kind: str | None, n: int, sources: int, args: argparse.Namespace, url: str,
    token: str, project: str, home: Home,
) -> dict[str, Any]:  # fmt: skip
    """Legitimate traffic for ``--phase-seconds``, beside a flood of ``kind`` (or none)."""
    flood = None
    if kind is not None:
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe(duplex=False)
        ready, stop = ctx.Event(), ctx.Event()
        flood = ctx.Process(target=run_flood, args=(kind, url, n, sources,
                                                    args.trickle_interval, ready, stop,
                                                    theirs))  # fmt: skip
    (size0, failed0), t0 = log_counts(home), time.monotonic()  # the flood's first entries too
    if flood is not None:
        flood.start()
        if not ready.wait(timeout=120):
            raise SystemExit(f"the {kind} flood did not start")
    legit = legit_traffic(url, token, project, args)
    counts: dict[str, int] = {}
    seconds = 0.0
    if flood is not None:
        stop.set()
        counts, seconds = ours.recv()
        flood.join()
    (size1, failed1), t1 = log_counts(home), time.monotonic()
    if flood is not None:
        time.sleep(1)  # the server sees the flood's connections close
    return {"label": label, "kind": kind, "n": n, "legit": legit, "flood": counts,
            "flood_seconds": seconds, "audit_per_s": (size1 - size0) / (t1 - t0),
            "failed_per_s": (failed1 - failed0) / (t1 - t0)}  # fmt: skip


def print_flood_table(phases: list[dict[str, Any]], args: argparse.Namespace) -> None:
    def ms(values: list[float]) -> str:
        if not values:
            return "–"
        p50, p99 = percentiles(values)
        return f"{p50 * 1000:.0f} / {p99 * 1000:.0f}"

    def other(statuses: Counter) -> str:
        rest = {k: v for k, v in statuses.items() if k not in ("ok", "429", "503")}
        return ", ".join(f"{k}: {v}" for k, v in sorted(rest.items())) or "0"

    print(f"\nLegitimate traffic: {args.legit_clients} keep-alive clients alternating the "
          f"cached query and GET /v1/catalogue, {args.phase_seconds:g} s a phase\n")  # fmt: skip
    print(
        "| phase | legit answered | 429 | 503 | other | cached p50 / p99 ms "
        "| catalogue p50 / p99 ms | flood answers (per s) | audit entries / s "
        "| of which auth.failed |"
    )
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: |")
    for phase in phases:
        legit = phase["legit"]
        statuses, latencies = legit["statuses"], legit["latencies"]
        flood = phase["flood"]
        seconds = phase["flood_seconds"]
        answers = ", ".join(
            f"{k}: {v}" if k.startswith("held") else f"{k}: {v} ({v / seconds:.0f}/s)"
            for k, v in sorted(flood.items(), key=lambda kv: -kv[1])
        )
        print(f"| {phase['label']} | {statuses['ok']} | {statuses['429']} | {statuses['503']} "
              f"| {other(statuses)} | {ms(latencies['cached'])} | {ms(latencies['catalogue'])} "
              f"| {answers or '–'} | {phase['audit_per_s']:.1f} "
              f"| {phase['failed_per_s']:.1f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pupils", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--cached", type=int, default=2000, help="cached requests")
    parser.add_argument("--fresh", type=int, default=60, help="fresh requests per run")
    parser.add_argument("--data", type=Path, help="home folder to keep and reuse")
    floods = parser.add_mutually_exclusive_group()
    floods.add_argument("--floods-only", action="store_true", help="only the flood table")
    floods.add_argument(
        "--no-floods",
        action="store_true",
        help="only the first table, with [limits] raised (it measures capacity, not limits)",
    )
    parser.add_argument("--phase-seconds", type=float, default=10, help="length of a phase")
    parser.add_argument("--legit-clients", type=int, default=4, help="legitimate clients")
    parser.add_argument(
        "--legit-rate",
        type=float,
        default=2.0,
        help="requests a second from each legitimate client",
    )
    parser.add_argument(
        "--legit-source",
        default="127.0.0.2",
        help="legitimate clients' address (floods come from 127.1.x.y)",
    )
    parser.add_argument(
        "--flood-sources",
        default="1,64",
        help="bad-token flood addresses, one phase each (comma-separated)",
    )
    parser.add_argument("--flood-clients", type=int, default=64, help="bad-token flood connections")
    parser.add_argument(
        "--slow-connections",
        default="1000,3000",
        help="slow-body flood sizes, one phase each (comma-separated)",
    )
    parser.add_argument(
        "--trickle-interval",
        type=float,
        default=1.0,
        help="seconds between two bytes of a slow body",
    )
    args = parser.parse_args()

    tmp = None if args.data else Path(tempfile.mkdtemp(prefix="ss-bench-"))
    home, token, project = prepare(args.data or tmp, args.pupils, capacity=args.no_floods)
    send = post(project)
    rows: list[tuple[str, float, float, float, int]] = []
    phases: list[dict[str, Any]] = []

    if not args.floods_only:
        # Baselines: raw DuckDB and the service in-process.
        con = duckdb.connect(str(home.database), read_only=True)
        raw = drive(1, 200, lambda _h, _i: con.execute(RAW_SQL).fetchall(), None, None)
        rows.append(("raw DuckDB GROUP BY (floor)", *raw))
        con.close()
        service = QueryService(open_control(home, actor="service"))
        service.submit(
            service.login(token), CACHED_SQL, project, EPSILON
        )  # released once; then cached
        cached_in_process = drive(
            1,
            300,
            lambda _h, _i: service.submit(service.login(token), CACHED_SQL, project, EPSILON),
            None,
            None,
        )
        rows.append(("in-process QueryService, cached", *cached_in_process))
        offset = 1_000_000
        rows.append(("in-process QueryService, fresh",
                     *drive(1, args.fresh, lambda _h, i: service.submit(
                         token, fresh_sql(offset + i), project, EPSILON), None, None)))  # fmt: skip

    log = home.root / "bench-server.log"
    proc, url = start_server(home, args.workers, log)
    try:
        label = f"HTTP, {args.workers} workers"
        if not args.floods_only:
            # The HTTP stack's own ceiling here: a trivial endpoint, same clients.
            ceiling = drive(
                args.clients, args.cached, lambda h, _i: h.get("/v1/audit/public-key"), url, token
            )
            rows.append((f"{label}, trivial GET (stack ceiling)", *ceiling))
            cached = drive(
                args.clients, args.cached, lambda h, i: send(h, i, CACHED_SQL), url, token
            )
            rows.append((f"{label}, cached, {args.clients} clients", *cached))
            fresh1 = drive(1, args.fresh, lambda h, i: send(h, i, fresh_sql(i)), url, token)
            rows.append((f"{label}, fresh, 1 client", *fresh1))
            offset = 2_000_000
            fresh4 = drive(
                4, args.fresh, lambda h, i: send(h, i, fresh_sql(offset + i)), url, token
            )
            rows.append((f"{label}, fresh, 4 clients", *fresh4))
        if not args.no_floods:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                              timeout=60) as http:  # fmt: skip
                send(http, 0, CACHED_SQL)  # released (or cached) before the phases ask it
            common = (args, url, token, project, home)
            phases.append(flood_phase("no flood", None, 0, 0, *common))
            n = args.flood_clients
            for sources in numbers(args.flood_sources):
                label = f"bad-token flood, {n} connections from {sources} address(es)"
                phases.append(flood_phase(label, "bad-token", n, sources, *common))
            for n in numbers(args.slow_connections):
                label = f"slow-body flood, {n:,} connections, one address each"
                phases.append(flood_phase(label, "slow-body", n, n, *common))
    except BaseException:
        print(f"server log ({log}), last lines:\n{log.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)
        warnings = log.read_text().count("Exceeded concurrency limit")
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{args.pupils:,} pupils, {args.workers} workers, {os.cpu_count()} cores, "
          "control database: "
          f"{os.environ.get('SAFESETTING_DB_URL', 'SQLite (home)').split('@')[-1]}\n")  # fmt: skip
    if rows:
        print(f"| {'what':<44} | {'req/s':>8} | {'p50 ms':>8} | {'p99 ms':>8} | {'429s':>6} |")
        print(f"| {'-' * 44} | {'-' * 8}:| {'-' * 8}:| {'-' * 8}:| {'-' * 6}:|")
        for what, rate, p50, p99, limited in rows:
            print(f"| {what:<44} | {rate:8.1f} | {p50 * 1000:8.1f} | {p99 * 1000:8.1f} "
                  f"| {limited:6} |")  # fmt: skip
        if any(row[4] for row in rows):
            print("(429s: the server's rate limits, policy.toml [limits]; latencies leave them "
                  "out, req/s counts them)")  # fmt: skip
    if phases:
        print_flood_table(phases, args)
        print(f"\n(the server logged {warnings:,} 'Exceeded concurrency limit' warnings)")


if __name__ == "__main__":
    main()
