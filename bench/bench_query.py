"""Benchmark the query path on a 1M-pupil synthetic NPD, beside raw DuckDB and SmartNoise SQL.

For each question: raw DuckDB on the published snapshot (no privacy at all: the floor), the
Safe Setting engine session alone (prepare → answer: plan, bounded SQL on the data plane,
OpenDP), the full service (policy, budget debit and audit entries committed, a fresh
release), the service answering from its release cache, a one-shot process of each (a raw
DuckDB one-liner in a new Python process beside a fresh ``safesetting query``), and — where
it can express the question — SmartNoise SQL (pandas reader, its own virtual environment,
because it pins an older OpenDP).

    python bench/bench_query.py                        # generates 1M pupils into a temp home
    python bench/bench_query.py --home DIR             # reuse a home that has npd.duckdb
    python bench/bench_query.py --snsql /tmp/snsql/bin/python   # add SmartNoise SQL
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
from timing import median_process_time, median_time, process_time, user_env  # noqa: E402

from safesetting.administration import add_researcher, approve_project  # noqa: E402
from safesetting.control import init_home, open_control  # noqa: E402
from safesetting.engine.session import Optouts, Session  # noqa: E402
from safesetting.home import Home  # noqa: E402
from safesetting.service import QueryService  # noqa: E402
from synthetic.load import generate_database  # noqa: E402

QUESTIONS = [
    (
        "count by LA, one year",
        "SELECT la_code, COUNT(*) AS n FROM census WHERE academic_year = 2023 GROUP BY la_code",
        "SELECT la_code, COUNT(*) FROM census WHERE academic_year = 2023 GROUP BY la_code",
    ),
    (
        "mean Attainment 8 by basics",
        "SELECT basics_grade4, AVG(attainment8) AS a8 FROM ks4 GROUP BY basics_grade4",
        "SELECT basics_grade4, AVG(attainment8) FROM ks4 GROUP BY basics_grade4",
    ),
    (
        "FSM gap by region (join)",
        "SELECT region, ever_fsm_6, COUNT(*) AS n, AVG(CAST(rwm_expected AS INTEGER)) AS rwm"
        " FROM census JOIN ks2 USING (pupil_id, academic_year) WHERE academic_year = 2023"
        " GROUP BY region, ever_fsm_6",
        "SELECT region, ever_fsm_6, COUNT(*), AVG(rwm_expected::INT) FROM census"
        " JOIN ks2 USING (pupil_id, academic_year) WHERE academic_year = 2023"
        " GROUP BY region, ever_fsm_6",
    ),
    (
        "median Attainment 8 by disadvantage",
        "SELECT ever_fsm_6, MEDIAN(attainment8) AS a8 FROM census"
        " JOIN ks4 USING (pupil_id, academic_year) WHERE academic_year = 2023 GROUP BY ever_fsm_6",
        "SELECT ever_fsm_6, MEDIAN(attainment8) FROM census"
        " JOIN ks4 USING (pupil_id, academic_year) WHERE academic_year = 2023 GROUP BY ever_fsm_6",
    ),
    (
        "exclusions by reason (truncated)",
        "SELECT reason, COUNT(*) AS n FROM exclusions GROUP BY reason",
        "SELECT reason, COUNT(*) FROM exclusions GROUP BY reason",
    ),
]


def engine_only(session: Session, sql: str) -> None:
    prepared = session.prepare(sql)
    session.answer(prepared, 1_000_000, Optouts())  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a home with npd.duckdb (default: generate)")
    parser.add_argument("--pupils", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--snsql", help="a Python with smartnoise-sql installed")
    args = parser.parse_args()
    tmp = None
    if args.home is None:
        tmp = tempfile.TemporaryDirectory(prefix="ss-bench-")
        args.home = Path(tmp.name)
        print(f"generating {args.pupils:,} pupils …", file=sys.stderr)
        generate_database(args.home / "npd.duckdb", args.pupils, seed=1)
    bench_home = Path(tempfile.mkdtemp(prefix="ss-bench-home-"))
    db = args.home / "npd.duckdb"
    os.symlink(db.resolve(), bench_home / "npd.duckdb")
    home = Home(bench_home)
    init_home(home)
    control = open_control(home, actor="bench")
    token = add_researcher(
        control, "bench", organisation="Bench", role="researcher", accredited_until="2099-01-01"
    ).token
    approve_project(
        control, "bench", title="Benchmark", org_type="academic", purpose="educational_research",
        tables=["census", "ks2", "ks4", "exclusions"], budget_epsilon="10", expires="2099-01-01",
        members=["bench"],
    )  # fmt: skip
    service = QueryService(control)
    caller = service.login(token)  # authenticated once, as a server request is
    t = time.perf_counter()
    session = service.session()
    snapshot = session.plane().snapshot  # type: ignore[attr-defined]
    print(f"snapshot published and opened in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    raw = duckdb.connect(str(snapshot), read_only=True)
    cli = str(Path(sys.executable).with_name("safesetting"))
    env = user_env(SAFESETTING_TOKEN=token)
    peer = {}
    if args.snsql:
        out = subprocess.run(
            [args.snsql, str(ROOT / "bench" / "peer_smartnoise.py"), str(db)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        peer = json.loads(out.stdout)
    rows = []
    for label, ours, theirs in QUESTIONS:
        raw_s = median_time(lambda q=theirs: raw.execute(q).fetchall(), args.runs)
        engine_s = median_time(lambda q=ours: engine_only(session, q), args.runs)
        raw_process = median_process_time(
            [sys.executable, "-c", "import duckdb, sys; "
             "duckdb.connect(sys.argv[1], read_only=True).execute(sys.argv[2]).fetchall()",
             str(snapshot), theirs], args.runs, user_env())  # fmt: skip
        fresh = []
        for i in range(args.runs):
            # A distinct ε makes each run a fresh release (not a cache hit).
            eps = f"0.{i + 1:02d}"
            t = time.perf_counter()
            result = service.submit(caller, ours, "bench", eps)
            fresh.append(time.perf_counter() - t)
            assert result.status == "released", result.reasons
        cli_fresh = []
        warm = [cli, "--home", str(bench_home), "query", ours, "--project", "bench", "--json"]
        process_time(warm, env)  # writes the bytecode cache; not counted
        for i in range(args.runs):
            eps = f"0.{i + 1:02d}1"  # fresh each time
            argv = [cli, "--home", str(bench_home), "query", ours, "--project", "bench",
                    "--epsilon", eps, "--json"]  # fmt: skip
            cli_fresh.append(process_time(argv, env))
        cached_s = median_time(lambda q=ours: service.submit(caller, q, "bench", "0.01"), args.runs)
        sn = peer.get(label)
        rows.append(
            (label, raw_s, engine_s, statistics.median(fresh), cached_s, raw_process,
             statistics.median(cli_fresh),
             sn["query_s"] if sn else None, sn["load_s"] if sn else None)
        )  # fmt: skip
    print(f"\n{session.version}: median of {args.runs} runs, seconds (2-core machine)\n")
    head = ("question", "raw DuckDB", "engine session", "service fresh", "service cached",
            "raw DuckDB, new process", "`safesetting query`, new process",
            "SmartNoise SQL", "(its load)")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("| --- " * len(head) + "|")
    for label, *vals in rows:
        cells = ["–" if v is None else f"{v:.3f}" for v in vals]
        print(f"| {label} | " + " | ".join(cells) + " |")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
