"""National scale, measured: 20 million pupils over 2006-2025, beside raw DuckDB on the same files.

Generates the synthetic NPD with ``safesetting data generate`` in a child process (its wall
time and peak RSS, read from ``wait4``; the command writes the data file and publishes the
query snapshot), or reuses a home generated before (``--data DIR``: the figures of the run
that generated it are kept in DIR/bench_scale.json). Then, for four typical questions, it
times

* raw DuckDB on the snapshot, in this process (a warm connection: the floor);
* a raw DuckDB one-liner in a new Python process;
* a fresh ``safesetting query`` in a new process (local mode: policy, budget debit, audit
  entries, the engine on the snapshot, OpenDP noise);
* a fresh query through a running ``safesetting serve --workers 2`` over HTTP (a distinct
  epsilon each time, so nothing comes from the release cache), after a warm-up query per
  worker;

and reads each server worker's memory (VmRSS now and VmHWM, its peak, from /proc) after
the queries. Medians of ``--runs``; the aims of the "Engine v2" issue are checked beside.
The file system cache is warm for every process after the first (the figures of a service
that has been running).

    python bench/bench_scale.py                                # 20M pupils into /tmp/scale/home
    python bench/bench_scale.py --pupils 1000000 --data /tmp/scale/h1m
    python bench/bench_scale.py --data /tmp/scale/home         # reuse the 20M data
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from itertools import count
from pathlib import Path

import duckdb
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import (  # noqa: E402
    Failed,
    median_or_failure,
    median_process_time,
    median_time,
    process_time,
    user_env,
)

from safesetting import administration as admin  # noqa: E402
from safesetting.control import init_home, open_control  # noqa: E402
from safesetting.engine.snapshot import publish  # noqa: E402
from safesetting.home import Home  # noqa: E402
from synthetic.load import read_data_version  # noqa: E402

YEAR = 2024
QUESTIONS = [
    (
        f"count by LA, {YEAR}",
        f"SELECT la_code, COUNT(*) AS n FROM census WHERE academic_year = {YEAR} GROUP BY la_code",
        f"SELECT la_code, COUNT(*) FROM census WHERE academic_year = {YEAR} GROUP BY la_code",
    ),
    (
        f"FSM Attainment 8 gap by region, {YEAR} (join)",
        "SELECT region, ever_fsm_6, AVG(attainment8) AS a8 FROM census JOIN ks4 USING "
        f"(pupil_id, academic_year) WHERE census.academic_year = {YEAR} "
        "GROUP BY region, ever_fsm_6",
        "SELECT region, ever_fsm_6, AVG(attainment8) FROM census JOIN ks4 USING "
        f"(pupil_id, academic_year) WHERE census.academic_year = {YEAR} "
        "GROUP BY region, ever_fsm_6",
    ),
    (
        f"median Attainment 8, {YEAR}",
        f"SELECT MEDIAN(attainment8) AS a8 FROM ks4 WHERE academic_year = {YEAR}",
        f"SELECT MEDIAN(attainment8) FROM ks4 WHERE academic_year = {YEAR}",
    ),
    (
        "exclusions by reason, all years (truncated)",
        "SELECT reason, COUNT(*) AS n FROM exclusions GROUP BY reason",
        "SELECT reason, COUNT(*) FROM exclusions GROUP BY reason",
    ),
]
RECORD = "bench_scale.json"  # the generation's figures, kept beside the data
FUTURE = "2099-01-01"
#: [limits] raised for the bench home: it times queries one after another from one token,
#: which the default per-token rates would slow down with 429s (bench/bench_server.py too).
LIMITS = {
    "requests_per_second_per_client": "1000000.0",
    "burst_per_client": "1000000",
    "requests_per_second_per_token": "1000000.0",
    "burst_per_token": "1000000",
}
_EPSILONS = count(1)


def epsilon() -> str:
    """A distinct ε for every fresh query (the release cache keys on it): 0.010001, …"""
    return f"{0.01 + next(_EPSILONS) / 1e6:.6f}"


def generate(data: Path, pupils: int, years: str, seed: int) -> dict[str, object]:
    """``data generate`` in a child process: its JSON summary, wall time and peak RSS, and
    its RSS while writing the data file and while publishing the snapshot (sampled from
    /proc twice a second; the data file appears, renamed into place, between the two)."""
    cmd = [sys.executable, "-m", "safesetting", "--home", str(data), "data", "generate",
           "--pupils", str(pupils), "--years", years, "--seed", str(seed), "--json"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"generating {pupils:,} pupils, {years}, into {data} …", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    peak = {"data file": 0.0, "snapshot": 0.0}
    written: list[float] = []

    def sample() -> None:
        while proc.poll() is None:
            phase = "snapshot" if (data / "npd.duckdb").exists() else "data file"
            if phase == "snapshot" and not written:
                written.append(time.perf_counter())
            try:
                peak[phase] = max(peak[phase], memory_mb(proc.pid).get("VmRSS", 0.0))
            except OSError:
                return
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read() if proc.stdout else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    ended = time.perf_counter()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"generation failed (exit {os.waitstatus_to_exitcode(status)})")
    summary = json.loads(out)
    record = {
        "pupils": pupils,
        "years": years,
        "version": summary["id"],
        "rows": sum(summary["rows"].values()),
        "data_file_seconds": summary["seconds"],
        "snapshot_seconds": round(ended - written[0], 1) if written else None,
        "command_seconds": round(ended - started, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "data_file_peak_rss_mb": round(peak["data file"]),
        "snapshot_peak_rss_mb": round(peak["snapshot"]),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
    }
    (data / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def bench_home(data: Path) -> tuple[Home, str]:
    """A fresh home beside nothing of ``data`` but a link to its data file (so the snapshot
    published beside that file is the one read), with a researcher and a project."""
    root = Path(tempfile.mkdtemp(prefix="ss-bench-scale-"))
    os.symlink((data / "npd.duckdb").resolve(), root / "npd.duckdb")
    home = Home(root)
    init_home(home)
    lines = home.policy.read_text().splitlines()
    for i, line in enumerate(lines):
        key = line.split("=")[0].strip()
        if key in LIMITS:
            lines[i] = f"{key} = {LIMITS[key]}"
    home.policy.write_text("\n".join(lines) + "\n")
    control = open_control(home, actor="bench")
    token = admin.add_researcher(
        control, "bench", organisation="Bench", role="researcher", accredited_until=FUTURE
    ).token
    admin.approve_project(
        control, "bench", title="Scale benchmark", org_type="academic",
        purpose="educational_research", tables=["census", "ks4", "exclusions"],
        budget_epsilon="10", expires=FUTURE, members=["bench"],
    )  # fmt: skip
    assert token is not None
    return home, token


def start_server(home: Home, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
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
    for _ in range(1200):
        try:
            if httpx.get(f"{url}/v1/audit/checkpoint", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start: see {log}")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def workers_of(server: subprocess.Popen) -> list[int]:
    """The server's worker processes (uvicorn's children but its multiprocessing helper)."""
    pids = []
    for pid in descendants(server.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"resource_tracker" not in cmdline:
            pids.append(pid)
    return pids


def ask(http: httpx.Client, sql: str) -> float:
    t = time.perf_counter()
    r = http.post("/v1/queries", json={"sql": sql, "project": "bench", "epsilon": epsilon()})
    elapsed = time.perf_counter() - t
    if r.status_code != 200 or r.json().get("status") != "released":
        raise Failed(f"HTTP {r.status_code}: {r.text[-200:]}")
    return elapsed


def mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=20_000_000)
    parser.add_argument("--years", default="2006-2025")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--data", type=Path, default=Path("/tmp/scale/home"),
        help="home to generate into, or to reuse if it holds npd.duckdb",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    data = args.data.resolve()
    db = data / "npd.duckdb"
    if db.exists():
        print(f"reusing {db}", file=sys.stderr)
        record = json.loads((data / RECORD).read_text()) if (data / RECORD).exists() else {}
    else:
        record = generate(data, args.pupils, args.years, args.seed)
    version = read_data_version(db)
    snapshot = publish(db, version.id)  # published by `data generate`; here for old homes
    rows = sum(version.rows.values())
    pupils, years = version.pupils, f"{version.first_year}-{version.last_year}"

    home, token = bench_home(data)
    env = user_env(SAFESETTING_TOKEN=token, PYTHONPATH=str(ROOT))
    env.pop("SAFESETTING_URL", None)
    cli = [sys.executable, "-m", "safesetting", "--home", str(home.root), "query"]
    raw = duckdb.connect(str(snapshot), read_only=True)
    raw.execute("SET enable_progress_bar = false")
    one_liner = [sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1], "
                 "read_only=True).execute(sys.argv[2]).fetchall()", str(snapshot)]  # fmt: skip

    log = Path(tempfile.mkdtemp(prefix="ss-bench-scale-log-")) / "serve.log"
    server, url = start_server(home, args.workers, log)
    results = []
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=600) as http:  # fmt: skip
            # every worker opens the snapshot on its first query: keep that out of the medians
            warm_up = [ask(http, QUESTIONS[0][1]) for _ in range(2 * args.workers)]
            for label, ours, theirs in QUESTIONS:
                raw.execute(theirs).fetchall()  # the snapshot's pages in the file cache
                raw_s = median_time(lambda q=theirs: raw.execute(q).fetchall(), args.runs)
                raw_proc = median_process_time([*one_liner, theirs], args.runs, user_env())
                with contextlib.suppress(Failed):  # writes the bytecode cache; not counted
                    process_time([*cli, ours, "--project", "bench", "--json"], env)
                cli_s = median_or_failure(
                    process_time(
                        [*cli, ours, "--project", "bench", "--epsilon", epsilon(), "--json"], env
                    )  # fmt: skip
                    for _ in range(args.runs)
                )
                server_s = median_or_failure(ask(http, ours) for _ in range(args.runs))
                results.append((label, raw_s, raw_proc, cli_s, server_s))
                print(f"  {label}: done", file=sys.stderr, flush=True)
        memory = {pid: memory_mb(pid) for pid in workers_of(server)}
        supervisor = memory_mb(server.pid)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        raw.close()
    report(args, record, version.id, pupils, years, rows, db, snapshot, results, warm_up,
           memory, supervisor)  # fmt: skip
    shutil.rmtree(home.root, ignore_errors=True)


def report(args, record, version, pupils, years, rows, db, snapshot, results, warm_up, memory,
           supervisor) -> None:  # noqa: ANN001  # fmt: skip
    cpus = os.cpu_count()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"\n{version}: {pupils:,} pupils, {years}, {rows:,} rows; {cpus} CPUs, "
          f"{ram:.0f} GiB RAM; medians of {args.runs} runs\n")  # fmt: skip
    print("| generation | figure | aim |")
    print("| --- | ---: | --- |")
    if record:
        ok = record["command_seconds"] <= 900 and record["peak_rss_mb"] < 8192
        print(f"| `data generate` (data file, then snapshot) | {record['command_seconds']:,.0f} s "
              f"| ≤ 900 s and < 8 GB: {'met' if ok else 'missed'} |")  # fmt: skip
        print(f"| of which the data file | {record['data_file_seconds']:,.0f} s | |")
        if record.get("snapshot_seconds") is not None:
            print(f"| of which publishing the snapshot | {record['snapshot_seconds']:,.0f} s | |")
        print(f"| peak RSS | {record['peak_rss_mb']:,} MB | |")
        if record.get("data_file_peak_rss_mb"):
            print(f"| peak RSS writing the data file (sampled) | "
                  f"{record['data_file_peak_rss_mb']:,} MB | |")  # fmt: skip
            print(f"| peak RSS publishing the snapshot (sampled) | "
                  f"{record['snapshot_peak_rss_mb']:,} MB | |")  # fmt: skip
        print(f"| CPU time (user + system) | {record['cpu_seconds']:,.0f} s | |")
    else:
        print("| `data generate` | – (reused data without a record) | |")
    print(f"| data file | {mb(db):,.0f} MB | |")
    print(f"| snapshot | {mb(snapshot):,.0f} MB | |")
    print("\n| question | raw DuckDB | raw DuckDB, new process | `safesetting query`, new "
          "process | ratio (aim ≤ 3×) | server, fresh | aim: 1.5 × raw + 50 ms |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, raw_s, raw_proc, cli_s, server_s in results:
        aim = 1.5 * raw_s + 0.05
        if isinstance(cli_s, str):
            cli = f"{cli_s} | missed"
        else:
            verdict = "met" if cli_s <= 3 * raw_proc else "missed"
            cli = f"{cli_s * 1000:,.0f} ms | {cli_s / raw_proc:.1f}× {verdict}"
        if isinstance(server_s, str):
            server = f"{server_s} | {aim * 1000:,.0f} ms missed"
        else:
            verdict = "met" if server_s <= aim else "missed"
            server = f"{server_s * 1000:,.0f} ms | {aim * 1000:,.0f} ms {verdict}"
        print(
            f"| {label} | {raw_s * 1000:,.0f} ms | {raw_proc * 1000:,.0f} ms | {cli} | {server} |"
        )
    print(f"\nServer warm-up (each worker's first queries open the snapshot): "
          f"{', '.join(f'{w * 1000:,.0f}' for w in warm_up)} ms")  # fmt: skip
    print("\n| server process | RSS after the queries | peak RSS (VmHWM) | aim |")
    print("| --- | ---: | ---: | --- |")
    print(f"| supervisor | {supervisor['VmRSS']:,.0f} MB | {supervisor['VmHWM']:,.0f} MB | |")
    for i, (_pid, m) in enumerate(sorted(memory.items()), 1):
        verdict = "met" if m["VmHWM"] <= 2048 else "missed"
        print(f"| worker {i} | {m['VmRSS']:,.0f} MB | {m['VmHWM']:,.0f} MB | ≤ 2 GB: {verdict} |")


if __name__ == "__main__":
    main()
