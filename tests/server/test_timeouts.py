"""Slow clients against a real ``safesetting serve``: headers, bodies and idle connections
each have a deadline, and a worker sheds connections beyond its limit with a 503.

Raw sockets, so that the client can stall exactly where an attacker would. The server runs
with one-second timeouts, once with one process (``uvicorn.Server``) and once with two
workers (uvicorn's ``Multiprocess``, whose workers build the app from the environment).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.server.conftest import Served, populate, start_server, stop_server

pytestmark = pytest.mark.slow

TIMEOUT = 1.0  # header, body and keep-alive timeouts of the server under test
LIMIT = 4  # --limit-concurrency
CLOSED_WITHIN = 5.0  # generous: the box may be busy; before, these connections never closed


@pytest.fixture(scope="module", params=[1, 2], ids=["one-process", "two-workers"])
def served(request, tmp_path_factory, npd_small) -> Iterator[tuple[Served, int]]:
    home = tmp_path_factory.mktemp("timeouts") / "home"
    setting = populate(home, npd_small)
    args = ["--header-timeout", str(TIMEOUT), "--body-timeout", str(TIMEOUT),
            "--timeout-keep-alive", str(TIMEOUT), "--limit-concurrency", str(LIMIT)]  # fmt: skip
    server = start_server(
        setting.home, workers=request.param, log=home.parent / "server.log", args=args
    )
    try:
        yield server, request.param
    finally:
        stop_server(server)


def connect(served: Served) -> socket.socket:
    host, port = served.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=CLOSED_WITHIN + 5)
    return sock


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took.

    Raises ``TimeoutError`` if the server holds the connection open for too long.
    """
    start = time.monotonic()
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return received, time.monotonic() - start
        received += chunk


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length (all this server sends)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def get(path: str = "/v1/catalogue") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: safesetting\r\n\r\n".encode()


def test_a_connection_that_sends_nothing_is_closed(served):
    server, _ = served
    with connect(server) as sock:
        received, took = read_until_closed(sock)
    assert received == b""
    assert took < CLOSED_WITHIN


def test_half_the_headers_then_a_stall_is_disconnected(served):
    """Before, a client could hold the connection for ever, a header byte at a time."""
    server, _ = served
    with connect(server) as sock:
        sock.sendall(b"GET /v1/catalogue HTTP/1.1\r\nHost: safe")
        start = time.monotonic()
        try:
            for byte in b"setting\r\nX-Slow: ":  # a trickle does not restart the clock
                sock.sendall(bytes([byte]))
                time.sleep(TIMEOUT / 10)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed under the trickle
        received, _ = read_until_closed(sock)
    assert received == b""  # no response: the request never started
    assert time.monotonic() - start < CLOSED_WITHIN


def test_headers_and_half_a_body_get_408_with_the_envelope(served):
    server, _ = served
    body = json.dumps({"sql": "SELECT COUNT(*) AS n FROM census", "project": "gaps",
                       "epsilon": "0.1"}).encode()  # fmt: skip
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/queries HTTP/1.1\r\nHost: safesetting\r\nContent-Type: application/json"
            b"\r\nAuthorization: Bearer sst_nobody\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        start = time.monotonic()
        status, headers, content = read_response(sock)
        took = time.monotonic() - start
        rest, _ = read_until_closed(sock)  # and then the connection is closed
    assert status == 408
    assert TIMEOUT * 0.8 < took < CLOSED_WITHIN
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    envelope = json.loads(content)
    assert envelope["error"]["kind"] == "timeout"
    assert envelope["error"]["message"] == "request body not received within 1 s"
    assert envelope["reasons"] == []
    assert rest == b""


def test_an_idle_keep_alive_connection_is_closed(served):
    server, _ = served
    with connect(server) as sock:
        sock.sendall(get())
        status, headers, _ = read_response(sock)
        assert status == 200
        assert "close" not in headers.get("connection", "")  # kept alive ...
        received, took = read_until_closed(sock)  # ... for the keep-alive timeout only
    assert received == b""
    assert took < TIMEOUT + 2  # the default was 5 s


def test_a_body_trickled_after_the_response_does_not_hold_the_connection(served):
    """A GET's body is not read by the app; uvicorn used to cancel the keep-alive timer on
    every byte that followed the response, so a trickle held the connection for ever."""
    server, _ = served
    with connect(server) as sock:
        sock.sendall(get().replace(b"\r\n\r\n", b"\r\nContent-Length: 1000\r\n\r\n"))
        status, _, _ = read_response(sock)
        assert status == 200
        start = time.monotonic()
        sock.settimeout(0.1)
        closed = False
        while not closed and time.monotonic() - start < CLOSED_WITHIN:
            try:
                sock.sendall(b"x")
                closed = sock.recv(1) == b""
            except TimeoutError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed = True
    assert closed, "the trickle held the connection"
    assert time.monotonic() - start < TIMEOUT + 2


def test_slow_but_honest_clients_are_served(served):
    """Headers and bodies in pieces, pauses under each timeout, two requests on one
    connection: the deadlines do not cut them short."""
    server, _ = served
    body = b'{"sql": "SELECT COUNT(*) AS n FROM census", "project": "gaps", "epsilon": "0.1"}'
    with connect(server) as sock:
        for part in (b"GET /v1/cata", b"logue HTTP/1.1\r\nHo", b"st: safesetting\r\n\r\n"):
            sock.sendall(part)
            time.sleep(TIMEOUT / 4)
        assert read_response(sock)[0] == 200
        time.sleep(TIMEOUT / 2)  # idle, under the keep-alive timeout
        sock.sendall(
            b"POST /v1/queries HTTP/1.1\r\nHost: safesetting\r\nContent-Type: application/json"
            + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        for i in range(0, len(body), len(body) // 3 + 1):
            time.sleep(TIMEOUT / 5)
            sock.sendall(body[i : i + len(body) // 3 + 1])
        status, _, content = read_response(sock)
    assert status == 401, content  # read in full and answered (no token), not a 408
    assert json.loads(content)["error"]["kind"] == "unauthenticated"


# One process only: with several workers, which one accepts a connection is the kernel's
# choice, so no number of idle connections is sure to fill a given worker.
@pytest.mark.parametrize("served", [1], ids=["one-process"], indirect=True)
def test_connections_over_the_limit_are_answered_503(served):
    server, _workers = served
    idle = [connect(server) for _ in range(LIMIT - 1)]
    try:
        with connect(server) as sock:
            sock.sendall(get())
            status, _, _ = read_response(sock)
        assert status == 503
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    with connect(server) as sock:
        sock.sendall(get())
        assert read_response(sock)[0] == 200
