"""Benchmark ``safesetting data generate``: seconds, rows/s and peak memory, beside baselines.

Each size runs the real CLI in a fresh subprocess (so peak RSS is that run's own, read from
``wait4``). Baselines, measured on the same machine:

* Faker one by one: building pupil rows with Faker calls per row (the naive generator);
* DuckDB insert without constraints: the same generated Arrow tables loaded into tables
  with no keys or checks, i.e. the cost floor of the file writes;
* foreign keys enforced by DuckDB on insert (``enforce_foreign_keys=True``), the design
  not taken.

    python bench/bench_generate.py              # 100k and 1M pupils
    python bench/bench_generate.py --with-5m    # and 5M (needs ~3 GB of disk)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_cli(pupils: int, workdir: Path, seed: int = 1) -> dict[str, object]:
    """One ``data generate`` in a subprocess: wall seconds, peak RSS, rows."""
    home = workdir / f"home-{pupils}"
    cmd = [sys.executable, "-m", "safesetting", "--home", str(home), "data", "generate",
           "--pupils", str(pupils), "--seed", str(seed), "--force", "--json"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = proc.stdout.read() if proc.stdout else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"generation of {pupils} pupils failed")
    summary = json.loads(out)
    rows = sum(summary["rows"].values())
    size = (home / "npd.duckdb").stat().st_size
    return {"pupils": pupils, "seconds": seconds, "rows": rows, "rss_mb": usage.ru_maxrss / 1024,
            "file_mb": size / 1e6, "version": summary["id"]}  # fmt: skip


def faker_one_by_one(sample: int = 20_000) -> float:
    """Rows/s for pupil rows built with one Faker call per field per row."""
    from faker import Faker

    fake = Faker("en_GB")
    fake.seed_instance(1)
    started = time.perf_counter()
    rows = [
        (fake.first_name(), fake.last_name(), fake.postcode(), fake.date_of_birth(None, 4, 16))
        for _ in range(sample)
    ]
    return len(rows) / (time.perf_counter() - started)


def unconstrained_insert(pupils: int, workdir: Path) -> tuple[float, int]:
    """Seconds to load the generated Arrow tables into tables without keys or checks.

    Loads the Arrow tables in a single thread, one after another (no generation overlap)."""
    import duckdb

    from synthetic.generator import Generator, YearRange

    gen = Generator(pupils, 1, YearRange(2012, 2024))
    path = workdir / f"plain-{pupils}.duckdb"
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    loading = 0.0
    rows = 0
    created: set[str] = set()
    batches = [gen.reference_tables(), *gen.chunks()]
    for batch in batches:
        for name, data in batch.items():
            con.register("_incoming", data)
            started = time.perf_counter()
            if name in created:
                con.execute(f"INSERT INTO {name} SELECT * FROM _incoming")
            else:
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM _incoming")
                created.add(name)
            loading += time.perf_counter() - started
            con.unregister("_incoming")
            rows += data.num_rows
    started = time.perf_counter()
    con.execute("CHECKPOINT")
    con.close()
    return loading + time.perf_counter() - started, rows


def foreign_keys_enforced(pupils: int, workdir: Path) -> float:
    from synthetic.load import generate_database

    started = time.perf_counter()
    generate_database(workdir / f"fk-{pupils}.duckdb", pupils, seed=1, force=True,
                      enforce_foreign_keys=True)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-5m", action="store_true", help="also run 5,000,000 pupils")
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated pupil counts")
    parser.add_argument("--fk-size", type=int, default=100_000,
                        help="pupils for the foreign-keys-enforced baseline (0: skip)")  # fmt: skip
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] + ([5_000_000] if args.with_5m else [])
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        work = Path(tmp)
        print("\n| pupils | rows (all tables) | seconds | rows/s | pupils/s | peak RSS | file |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        results = []
        calibration: tuple[int, dict] = (0, {})
        for n in sizes:
            r = run_cli(n, work)
            results.append(r)
            print(f"| {n:,} | {r['rows']:,} | {r['seconds']:.1f} | "
                  f"{r['rows'] / r['seconds']:,.0f} | {n / r['seconds']:,.0f} | "
                  f"{r['rss_mb']:,.0f} MB | {r['file_mb']:,.0f} MB |", flush=True)  # fmt: skip
            if n == sizes[min(1, len(sizes) - 1)]:
                from synthetic.calibration import measure_file

                calibration = (n, measure_file(str(work / f"home-{n}" / "npd.duckdb")))
            (work / f"home-{n}" / "npd.duckdb").unlink()
        n_cal, measured = calibration
        print(f"\nCalibration at {n_cal:,} pupils (seed 1)")
        print("\n| statistic | target | measured | source |")
        print("| --- | ---: | ---: | --- |")
        for t, v in measured.items():
            print(f"| {t.name} | {t.value:g} ± {t.tolerance:g} {t.unit} | {v:.2f} | "
                  f"{t.source}, {t.year} |")  # fmt: skip
        print("\nBaselines")
        print("\n| method | pupils | seconds | rows/s |")
        print("| --- | ---: | ---: | ---: |")
        print(f"| Faker one by one (pupil rows only) | 20,000 | - | {faker_one_by_one():,.0f} |")
        for n in sizes[:2]:
            secs, rows = unconstrained_insert(n, work)
            print(f"| DuckDB insert of the same Arrow data, no keys/checks (load only) | {n:,} "
                  f"| {secs:.1f} | {rows / secs:,.0f} |", flush=True)  # fmt: skip
            (work / f"plain-{n}.duckdb").unlink()
        if args.fk_size:
            secs = foreign_keys_enforced(args.fk_size, work)
            ours = next((r for r in results if r["pupils"] == args.fk_size), None)
            rows = ours["rows"] if ours else 0
            print(f"| generate with foreign keys enforced by DuckDB | {args.fk_size:,} | "
                  f"{secs:.1f} | {rows / secs:,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
