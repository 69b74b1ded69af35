"""Timing helpers the benches share: medians of in-process calls and of new processes.

A new process is timed as a user's would run: with Python's bytecode cache on. A shell
that sets ``PYTHONDONTWRITEBYTECODE`` (as some containers do) makes every run compile the
project's modules from source again, about 0.3 s that no installed copy pays; ``user_env``
drops it, and the first run of each command (which writes the cache) is not counted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable


class Failed(Exception):
    """A command that did not succeed: the table shows why instead of a time."""


def user_env(**extra: str) -> dict[str, str]:
    """This environment as an installed copy's user has it (bytecode cache on), plus
    ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}


def median_time(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls of ``fn``."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def process_time(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one new process running ``argv`` (start-up included); ``Failed`` on a
    non-zero exit."""
    t = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, text=True)
    if done.returncode:
        raise Failed(f"exit {done.returncode}: {(done.stderr.strip() or done.stdout)[-200:]}")
    return time.perf_counter() - t


def median_process_time(argv: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    """Median of ``runs`` new processes, after one uncounted run that warms the caches."""
    process_time(argv, env)
    return statistics.median(process_time(argv, env) for _ in range(runs))


def median_or_failure(times: Iterable[float]) -> float | str:
    """The median of the times, or why the first that failed did."""
    try:
        return statistics.median(list(times))
    except Failed as exc:
        return f"failed ({exc})"
