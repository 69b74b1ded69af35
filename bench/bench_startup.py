"""Start-up time of the ``safesetting`` command, beside the interpreter and ``import duckdb``.

    python bench/bench_startup.py [--runs 10]

Runs each command ``--runs`` times (after one uncounted run) as a user would (the installed
``safesetting`` console script, in a fresh process, from an empty folder with no home, with
the bytecode cache on: ``timing.user_env``) and prints the median wall time:
``python -c pass`` (the floor: the interpreter alone), ``python -c "import duckdb"`` (the
baseline: one heavy import), ``safesetting --help``, ``safesetting query --help`` and a
remote-mode ``safesetting query`` (``SAFESETTING_URL`` set to an unreachable
``http://127.0.0.1:9``, so it fails fast with "cannot reach", exit 1). A second, instrumented
run of each ``safesetting`` command lists the heavy packages it imported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import user_env

HEAVY = (
    "duckdb", "opendp", "sqlalchemy", "sqlglot", "numpy", "pyarrow", "faker", "fastapi",
    "uvicorn", "pydantic", "httpx", "rich",
)  # fmt: skip
UNREACHABLE = "http://127.0.0.1:9"
QUERY = ["query", "SELECT COUNT(*) AS n FROM census", "--project", "p", "--token", "sst_x"]

# Runs the CLI in-process as the console script would, then names the heavy packages loaded.
# argv: the heavy names (comma-separated), then the command's arguments.
PROBE = """
import sys
heavy = set(sys.argv[1].split(","))
sys.argv = ["safesetting", *sys.argv[2:]]
from safesetting.cli import cli
try:
    cli.main(standalone_mode=True)
except SystemExit:
    pass
print("heavy:" + ",".join(sorted({m.split(".")[0] for m in sys.modules} & heavy)), file=sys.stderr)
"""


def script() -> str:
    """The ``safesetting`` console script beside this Python (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name("safesetting")
    found = str(beside) if beside.exists() else shutil.which("safesetting")
    if found is None:
        sys.exit("no `safesetting` command: pip install -e . first")
    return found


def median_run(argv: list[str], env: dict[str, str], cwd: str, runs: int) -> tuple[float, int]:
    """Median wall time of ``argv`` over ``runs`` fresh processes, and its exit code."""
    times, code = [], 0
    subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)  # warms caches
    for _ in range(runs):
        t = time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
        times.append(time.perf_counter() - t)
        code = done.returncode
    return statistics.median(times), code


def heavy_imports(args: list[str], env: dict[str, str], cwd: str) -> str:
    """The heavy packages ``safesetting ARGS`` imports (one instrumented run)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(HEAVY), *args], env=env, cwd=cwd,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = [line for line in done.stderr.splitlines() if line.startswith("heavy:")]
    if not found:
        return "? (the probe failed)"
    return found[-1].removeprefix("heavy:").replace(",", ", ") or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    # As an installed copy's user runs it: no home, no server, bytecode cache on.
    env = {k: v for k, v in user_env().items() if not k.startswith("SAFESETTING_")}
    remote = {**env, "SAFESETTING_URL": UNREACHABLE}
    cmd = script()
    cases: list[tuple[str, list[str], dict[str, str], list[str] | None]] = [
        ("python -c pass (interpreter)", [sys.executable, "-c", "pass"], env, None),
        ('python -c "import duckdb" (baseline)', [sys.executable, "-c", "import duckdb"], env,
         None),
        ("safesetting --help", [cmd, "--help"], env, ["--help"]),
        ("safesetting query --help", [cmd, "query", "--help"], env, ["query", "--help"]),
        (f"safesetting query … (remote, {UNREACHABLE})", [cmd, *QUERY], remote, QUERY),
    ]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="ss-bench-startup-") as cwd:
        for label, argv, case_env, probe_args in cases:
            seconds, code = median_run(argv, case_env, cwd, args.runs)
            loaded = "–" if probe_args is None else heavy_imports(probe_args, case_env, cwd)
            rows.append((label, seconds, code, loaded))
    floor = rows[0][1]
    print(f"\n{os.cpu_count()} CPUs, Python {sys.version.split()[0]}: median of {args.runs} "
          "runs, seconds\n")  # fmt: skip
    head = ("command", "seconds", "minus interpreter", "exit", "heavy packages imported")
    print("| " + " | ".join(head) + " |")
    print("| --- | ---: | ---: | ---: | --- |")
    for label, seconds, code, loaded in rows:
        print(f"| {label} | {seconds:.3f} | {seconds - floor:.3f} | {code} | {loaded} |")


if __name__ == "__main__":
    main()
