"""``safesetting serve`` details that the other server tests cannot see."""

from __future__ import annotations

import os
import socket
from typing import ClassVar

import pytest
import uvicorn
import uvicorn.supervisors
from click.testing import CliRunner

from safesetting.api.lifeline import SUPERVISOR_ENV
from safesetting.api.limits import BODY_TIMEOUT_ENV, BodyLimitMiddleware
from safesetting.api.protocol import TimedConfig, TimedH11Protocol
from safesetting.cli import cli
from safesetting.cli.serve import listening_socket
from safesetting.server import app_from_env
from tests.server.conftest import populate


def test_worker_socket_is_tcp_so_connections_get_nodelay():
    """asyncio sets TCP_NODELAY only on connections accepted from an IPPROTO_TCP socket;
    uvicorn's own shared socket has protocol 0 (then every response waits ~40 ms)."""
    sock = listening_socket(uvicorn.Config("x:y", host="127.0.0.1", port=0))
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.get_inheritable()
        sock.listen(1)
        with socket.create_connection(sock.getsockname()):
            conn, _ = sock.accept()
            with conn:
                assert conn.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


class Captured:
    """Stands in for uvicorn's server and supervisor: keeps the Config, serves nothing."""

    configs: ClassVar[list[uvicorn.Config]] = []

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket] | None = None):
        self.config = config
        self.started = True
        for sock in sockets or []:
            sock.close()
        Captured.configs.append(config)

    def run(self) -> None:
        pass


def body_timeout_of(app) -> float:  # noqa: ANN001
    (limit,) = [m for m in app.user_middleware if m.cls is BodyLimitMiddleware]
    return limit.kwargs["body_timeout"]


@pytest.fixture
def capture(monkeypatch, tmp_path, npd_small):
    """``serve`` with uvicorn's Server and Multiprocess captured; its environment restored."""
    for name in ("SAFESETTING_HOME", BODY_TIMEOUT_ENV, SUPERVISOR_ENV):
        monkeypatch.setenv(name, "unset")  # so that monkeypatch restores what serve sets
    monkeypatch.delenv("SAFESETTING_DB_URL", raising=False)
    monkeypatch.setattr(uvicorn, "Server", Captured)
    monkeypatch.setattr(uvicorn.supervisors, "Multiprocess", Captured)
    Captured.configs = []
    home = populate(tmp_path / "home", npd_small).home

    def serve(*args: str) -> uvicorn.Config:
        result = CliRunner().invoke(
            cli, ["--home", str(home.root), "serve", "--port", "0", *args],
            catch_exceptions=False,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return Captured.configs[-1]

    return serve


def test_serve_defaults_bound_every_slow_client(capture):
    config = capture()
    assert isinstance(config, TimedConfig)
    assert config.http is TimedH11Protocol
    assert config.header_timeout == 10
    assert config.timeout_keep_alive == 5
    assert config.limit_concurrency == 1000
    assert body_timeout_of(config.app) == 10


def test_one_process_and_several_workers_get_the_same_limits(capture, monkeypatch):
    limits = ["--header-timeout", "3", "--body-timeout", "4", "--timeout-keep-alive", "2",
              "--limit-concurrency", "50"]  # fmt: skip
    one = capture(*limits)
    several = capture(*limits, "--workers", "2")
    for config in (one, several):
        assert isinstance(config, TimedConfig)
        assert config.http is TimedH11Protocol
        assert config.header_timeout == 3
        assert config.timeout_keep_alive == 2
        assert config.limit_concurrency == 50
    assert several.factory
    assert several.workers == 2
    assert body_timeout_of(one.app) == 4
    # Each worker builds its app from the environment serve leaves it, and follows serve.
    assert os.environ[SUPERVISOR_ENV] == str(os.getpid())
    monkeypatch.delenv(SUPERVISOR_ENV)  # this test process has no supervisor to follow
    assert body_timeout_of(app_from_env()) == 4
