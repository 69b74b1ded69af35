"""``safesetting serve``: run the safe setting as an HTTP service (uvicorn)."""

from __future__ import annotations

import os
import socket

import click
import uvicorn

from safesetting.cli.common import Context, handle_errors, pass_context


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes. The ledger and the log stay consistent across any number.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    help="uvicorn's log level (access lines name the path, never a body or a token).",
)
@pass_context
@handle_errors
def serve(ctx: Context, host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the home over HTTP: researchers then need only a URL and a token.

    Opens the home once first (policy, control-database migrations, audit tables), then
    starts uvicorn. The JSON API is described at /openapi.json; the public transparency
    page is at /.

    \b
    Example:
      safesetting --home ./safesetting-home serve --port 8000 --workers 2
      # in another shell, with only the URL and a token:
      SAFESETTING_URL=http://127.0.0.1:8000 SAFESETTING_TOKEN=sst_… \\
        safesetting query "SELECT COUNT(*) AS n FROM census" --project gaps
    """
    from safesetting.control import open_control
    from safesetting.server import create_app
    from safesetting.service import check_data, close_abandoned

    control = open_control(ctx.home, actor="service")  # migrations and policy, once
    check_data(ctx.home.database)  # a missing or damaged file stops here, not per query
    if closed := close_abandoned(control):
        click.echo(f"Closed {closed} query(ies) a stopped process left unanswered", err=True)
    click.echo(f"Safe Setting serving {ctx.home.root} at http://{host}:{port}/", err=True)
    if workers == 1:
        uvicorn.run(create_app(ctx.home, control), host=host, port=port, log_level=log_level)
        return
    # Several processes: each worker builds its own app from the environment.
    os.environ["SAFESETTING_HOME"] = str(ctx.home.root)
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "safesetting.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )
    Multiprocess(config, sockets=[listening_socket(config)]).run()


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """uvicorn's shared socket for its workers, declared as TCP.

    ``Config.bind_socket`` creates it with protocol 0, and asyncio sets TCP_NODELAY only on
    connections accepted from a socket whose protocol is IPPROTO_TCP: without it every
    response waits for the client's delayed ACK (Nagle), ~40 ms per request on Linux.
    """
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        sock.set_inheritable(True)
    return sock
