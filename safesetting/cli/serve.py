"""``safesetting serve``: run the safe setting as an HTTP service (uvicorn)."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from typing import Any

import click
import uvicorn

from safesetting.api.lifeline import SUPERVISOR_ENV
from safesetting.api.limits import BODY_TIMEOUT, BODY_TIMEOUT_ENV
from safesetting.api.protocol import HEADER_TIMEOUT, TimedConfig
from safesetting.cli.common import Context, handle_errors, pass_context

#: Open connections (idle ones too) beyond which a worker answers every new request 503 at
#: once (uvicorn's limit). It bounds what a flood can make one worker hold — a body is
#: buffered until complete, up to 64 KiB, so at most ~64 MB of partial bodies — and keeps a
#: worker under the common 1,024 open-file limit, while staying far above honest use (8
#: request threads: a thousand waiting requests is already seconds of work). The price: past
#: ~1,000 flood connections per worker, honest requests get a quick 503 until the header and
#: body timeouts reap the flood's connections (bench/bench_server.py, slow-body flood).
LIMIT_CONCURRENCY = 1000
KEEP_ALIVE = 5.0
SECONDS = click.FloatRange(min=0, min_open=True)


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
@click.option(
    "--header-timeout",
    type=SECONDS,
    default=HEADER_TIMEOUT,
    show_default=True,
    help="Seconds for a request's headers to arrive (from the connection or the request's "
    "first byte); then the connection is closed.",
)
@click.option(
    "--body-timeout",
    type=SECONDS,
    default=BODY_TIMEOUT,
    show_default=True,
    help="Seconds for a whole request body to arrive after its headers; then 408 and the "
    "connection is closed.",
)
@click.option(
    "--timeout-keep-alive",
    type=SECONDS,
    default=KEEP_ALIVE,
    show_default=True,
    help="Seconds an idle keep-alive connection stays open between requests.",
)
@click.option(
    "--limit-concurrency",
    type=click.IntRange(1),
    default=LIMIT_CONCURRENCY,
    show_default=True,
    help="Open connections per worker beyond which requests are answered 503 at once "
    "(a flood is shed, not queued).",
)
@click.option(
    "--service-role",
    metavar="NAME",
    default=None,
    help="PostgreSQL only: the role the workers connect as (created or updated at each start; "
    "default <database>_service).",
)
@pass_context
@handle_errors
def serve(
    ctx: Context,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    service_role: str | None,
    header_timeout: float,
    body_timeout: float,
    timeout_keep_alive: float,
    limit_concurrency: int,
) -> None:
    """Serve the home over HTTP: researchers then need only a URL and a token.

    Opens the home once first (policy, control-database migrations, audit tables), then
    starts uvicorn. The JSON API is described at /openapi.json; the public transparency
    page is at /.

    Slow clients cannot hold connections for ever: headers, bodies and idle keep-alive
    connections each have a timeout, and each worker sheds load with 503s beyond
    --limit-concurrency open connections. With several workers, each one stops when the
    supervising process does, even after a kill -9, so a restart finds the port free.

    On PostgreSQL, SAFESETTING_DB_URL names the tables' owner: serve migrates as the owner,
    then creates or updates the application role (--service-role; its password in
    HOME/service-db.secret, mode 0600) and the workers connect as that role, which may add
    to the ledger and the audit log but never change or delete them, nor alter the schema.

    \b
    Example:
      safesetting --home ./safesetting-home serve --port 8000 --workers 2
      # in another shell, with only the URL and a token:
      SAFESETTING_URL=http://127.0.0.1:8000 SAFESETTING_TOKEN=sst_… \\
        safesetting query "SELECT COUNT(*) AS n FROM census" --project gaps
    """
    from safesetting.control import open_service_control
    from safesetting.server import create_app
    from safesetting.service import check_data, close_abandoned

    # Migrations and policy, once, as the owner; on PostgreSQL then as the application role.
    control = open_service_control(ctx.home, role=service_role)
    if control.engine.dialect.name == "postgresql":
        click.echo(f"Workers connect to PostgreSQL as role {control.engine.url.username}", err=True)
    check_data(ctx.home.database)  # a missing or damaged file stops here, not per query
    if closed := close_abandoned(control):
        click.echo(f"Closed {closed} query(ies) a stopped process left unanswered", err=True)
    click.echo(f"Safe Setting serving {ctx.home.root} at http://{host}:{port}/", err=True)
    settings: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "header_timeout": header_timeout,
        "timeout_keep_alive": timeout_keep_alive,
        "limit_concurrency": limit_concurrency,
    }
    if workers == 1:
        app = create_app(ctx.home, control, body_timeout=body_timeout)
        server = uvicorn.Server(TimedConfig(app, **settings))
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: a clean stop, as uvicorn.run
            server.run()
        if not server.started:
            sys.exit(3)  # uvicorn's STARTUP_FAILURE: the port is taken, say
        return
    # Several processes: each worker builds its own app from the environment and stops when
    # this process, its supervisor, stops (safesetting.api.lifeline).
    os.environ["SAFESETTING_HOME"] = str(ctx.home.root)
    os.environ[BODY_TIMEOUT_ENV] = repr(body_timeout)
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    from uvicorn.supervisors import Multiprocess

    config = TimedConfig(
        "safesetting.server:app_from_env", factory=True, workers=workers, **settings
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
