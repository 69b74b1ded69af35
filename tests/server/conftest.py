"""Server fixtures: a populated home (SQLite or PostgreSQL), an in-process client, a real
uvicorn on a free port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio.from_thread
import httpx
import pytest

from safesetting import administration as admin
from safesetting.control import init_home, open_control
from safesetting.db import dispose_engines
from safesetting.home import Home
from safesetting.server import create_app

ROOT = Path(__file__).resolve().parents[2]
FUTURE = "2031-01-31"
SQL = (
    "SELECT region, COUNT(*) AS n FROM census WHERE academic_year = 2019 GROUP BY region"
)  # fmt: skip


class InProcessTransport(httpx.BaseTransport):
    """A synchronous httpx transport that runs the ASGI app in-process (through a portal
    thread with its own event loop), so sync code such as ``HttpBackend`` can drive it."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self._asgi = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self._cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._cm.__enter__()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def send() -> httpx.Response:
            inner = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self._asgi.handle_async_request(inner)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return self._portal.call(send)

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


@dataclass
class Setting:
    """A populated home and the tokens of its people."""

    home: Home
    tokens: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


#: [limits] for load tests, which are about the ledger under many concurrent clients from
#: one address and one token, not about the limits (tests/server/test_limits.py is).
LOAD_LIMITS = {
    "requests_per_second_per_client": "1000000.0",
    "burst_per_client": "1000000",
    "requests_per_second_per_token": "1000000.0",
    "burst_per_token": "1000000",
    "concurrent_queries_per_researcher": "1000",
}


def set_limits(home: Home, limits: dict[str, str]) -> None:
    """Rewrite ``[limits]`` keys of the home's policy.toml (before the home is opened)."""
    lines = home.policy.read_text().splitlines()
    for i, line in enumerate(lines):
        key = line.split("=")[0].strip()
        if key in limits:
            lines[i] = f"{key} = {limits[key]}"
    home.policy.write_text("\n".join(lines) + "\n")


def populate(
    home_dir: Path, npd: Path, *, budget: str = "1", limits: dict[str, str] | None = None
) -> Setting:
    """Researchers ada and bob (projects gaps and other), an auditor, an admin."""
    home_dir.mkdir(parents=True, exist_ok=True)
    (home_dir / "npd.duckdb").symlink_to(npd)
    home = Home.resolve(home_dir)
    init_home(home)
    if limits:
        set_limits(home, limits)
    control = open_control(home)
    tokens = {}
    for rid, role in (("ada", "researcher"), ("bob", "researcher"), ("aud", "auditor"),
                      ("root", "admin")):  # fmt: skip
        issued = admin.add_researcher(
            control, rid, organisation="UCL", role=role, accredited_until=FUTURE
        )
        tokens[rid] = issued.token
    for pid, member in (("gaps", "ada"), ("other", "bob")):
        admin.approve_project(
            control, pid, title="Attainment gaps", org_type="academic",
            purpose="educational_research", tables=["census", "ks2"], budget_epsilon=budget,
            expires=FUTURE, members=[member],
        )  # fmt: skip
    return Setting(home, tokens)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, monkeypatch) -> Iterator[str | None]:
    """Each API test runs on the SQLite control database and on PostgreSQL."""
    if request.param == "sqlite":
        monkeypatch.delenv("SAFESETTING_DB_URL", raising=False)
        yield None
        return
    url = request.getfixturevalue("pg_url")()
    monkeypatch.setenv("SAFESETTING_DB_URL", url)
    yield url
    dispose_engines(url)  # close the cached engine's pool before the database goes


@pytest.fixture
def setting(tmp_path, npd_small, db_url) -> Setting:  # noqa: ARG001 - db_url sets the env
    return populate(tmp_path / "home", npd_small)


@pytest.fixture
def client(setting) -> Iterator[httpx.Client]:
    transport = InProcessTransport(create_app(setting.home))
    with httpx.Client(transport=transport, base_url="http://safesetting.test") as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    url: str
    process: subprocess.Popen
    log: Path


def start_server(
    home: Home,
    *,
    workers: int = 1,
    log: Path,
    timeout: float = 60,
    port: int | None = None,
    args: Sequence[str] = (),
) -> Served:
    """``safesetting serve [args]`` in a subprocess; returns once it answers."""
    port = port or free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "safesetting", "--home", str(home.root), "serve",
             "--port", str(port), "--workers", str(workers), "--log-level", "warning", *args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: workers die with it
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/audit/checkpoint", timeout=1).status_code == 200:
                return Served(url, process, log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


def kill_server(served: Served, sig: int = signal.SIGKILL) -> None:
    """Signal the server's whole process group (the supervisor and its workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(served.process.pid, sig)


def stop_server(served: Served) -> None:
    if served.process.poll() is None:
        kill_server(served, signal.SIGTERM)
        try:
            served.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            kill_server(served)
            served.process.wait()
    kill_server(served)  # any worker left behind
