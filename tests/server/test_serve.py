"""``safesetting serve`` details that the other server tests cannot see."""

from __future__ import annotations

import socket

import uvicorn

from safesetting.cli.serve import listening_socket


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
