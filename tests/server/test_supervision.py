"""``safesetting serve`` and ``kill -9``: workers do not outlive their supervisor, a killed
worker is replaced, and a restart on the same port always succeeds."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import ROOT, kill_server, populate, start_server, stop_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)"),
]


def parents() -> dict[int, int]:
    """pid -> parent pid of every live (not zombie) process, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                # "pid (comm) state ppid ...": comm may hold spaces and brackets
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] not in "ZX":
                    found[int(entry.name)] = int(fields[1])
    return found


def descendants(pid: int) -> set[int]:
    tree = parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in tree.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    return pids & set(parents())


def wait_for(condition, timeout: float, step: float = 0.1):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def spawned(master: int) -> set[int]:
    """The live uvicorn workers of ``master`` (its multiprocessing spawn children)."""
    found = set()
    for pid in descendants(master):
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
    return found


def workers_of(master: int, n: int) -> set[int]:
    wait_for(lambda: len(spawned(master)) == n, 30)
    found = spawned(master)
    assert len(found) == n, f"expected {n} workers of {master}, found {found}"
    return found


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_workers_exit_when_the_supervisor_is_killed_and_serve_restarts(tmp_path, npd_small):
    """Before, ``kill -9`` of the supervisor left both workers serving, unsupervised, and the
    next ``serve`` on the port failed with EADDRINUSE."""
    setting = populate(tmp_path / "home", npd_small)
    log = tmp_path / "server.log"
    served = start_server(setting.home, workers=2, log=log)
    master = served.process.pid
    restarted = None
    try:
        workers = workers_of(master, 2)
        everything = descendants(master)  # the workers and multiprocessing's resource tracker
        with httpx.Client(base_url=served.url) as http:  # a live keep-alive connection too
            assert http.get("/v1/catalogue").status_code == 200
            os.kill(master, signal.SIGKILL)
            served.process.wait(timeout=10)
        gone = wait_for(lambda: not alive(everything), 8)
        assert gone, f"running after the supervisor's kill -9: {alive(everything)} of {workers}"

        restarted = start_server(setting.home, workers=2, log=log, port=port_of(served.url))
        r = httpx.get(f"{restarted.url}/v1/catalogue", timeout=10)
        assert r.status_code == 200
        assert restarted.process.poll() is None  # the new server answered, not a survivor
    finally:
        kill_server(served)  # the old process group: any survivor
        if restarted is not None:
            stop_server(restarted)


def test_a_killed_worker_is_replaced(tmp_path, npd_small):
    """uvicorn's supervisor notices a worker's ``kill -9`` and starts another in its place."""
    setting = populate(tmp_path / "home", npd_small)
    served = start_server(setting.home, workers=2, log=tmp_path / "server.log")
    master = served.process.pid
    try:
        workers = workers_of(master, 2)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for(lambda: len(spawned(master) - workers) == 1, 30)
        assert replaced, f"no replacement worker: {spawned(master)}"
        assert victim not in spawned(master)
        assert served.process.poll() is None
        for _ in range(10):  # both workers answer (connections go to either)
            r = httpx.get(f"{served.url}/v1/catalogue", timeout=30)
            assert r.status_code == 200
    finally:
        stop_server(served)


def test_one_process_restarts_on_its_port_after_kill_9(tmp_path, npd_small):
    """With ``--workers 1`` there is nothing to orphan; the port is reusable at once
    (SO_REUSEADDR) though the killed server's connections are still in TIME_WAIT."""
    setting = populate(tmp_path / "home", npd_small)
    log = tmp_path / "server.log"
    served = start_server(setting.home, workers=1, log=log)
    restarted = None
    try:
        with httpx.Client(base_url=served.url) as http:
            for _ in range(3):
                assert http.get("/v1/catalogue").status_code == 200
            kill_server(served)
            served.process.wait(timeout=10)
        restarted = start_server(setting.home, workers=1, log=log, port=port_of(served.url))
        assert httpx.get(f"{restarted.url}/v1/catalogue", timeout=10).status_code == 200
    finally:
        kill_server(served)
        if restarted is not None:
            stop_server(restarted)


ORPHAN = textwrap.dedent(
    """
    import os, sys, time
    from safesetting.api import lifeline
    lifeline.set_parent_death_signal = lambda *a: False  # only the portable watch
    lifeline.GRACE = 60  # the SIGTERM alone must end it
    if os.fork():
        time.sleep(0.5)
        os._exit(0)  # the "supervisor" dies
    lifeline.follow_supervisor(os.getppid())
    print(os.getpid(), flush=True)
    time.sleep(30)
    """
)


def test_the_portable_watch_ends_an_orphan_without_prctl():
    """Without PR_SET_PDEATHSIG (not Linux), the thread watching the parent pid ends it."""
    with subprocess.Popen(
        [sys.executable, "-c", ORPHAN],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        orphan = int(proc.stdout.readline())
        proc.stdout.close()
        proc.wait(timeout=10)
    try:
        assert wait_for(lambda: not alive({orphan}), 5), "the orphan outlived its parent"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)


def test_a_worker_started_after_its_supervisor_died_exits_at_once():
    """The race prctl cannot close: the supervisor died before the worker asked."""
    code = "from safesetting.api.lifeline import follow_supervisor; follow_supervisor(1 << 22)"
    proc = subprocess.run(
        [sys.executable, "-c", code + "; print('still here')"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "still here" not in proc.stdout
    assert "supervisor 4194304 is gone before this worker started: exiting" in proc.stderr
