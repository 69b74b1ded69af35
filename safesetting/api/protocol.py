"""uvicorn's HTTP/1.1 protocol with the timeouts it lacks (``Config(http=TimedH11Protocol)``).

uvicorn bounds only the idle time *between* requests (``timeout_keep_alive``, armed when a
response completes). A connection that is opened and never sends a full set of headers —
one byte at a time, or nothing at all — is held for ever, as is one that keeps trickling a
request body the server has already answered. Here:

* **headers**: a request's headers must be complete within ``header_timeout`` seconds of
  the connection opening or of the request's first byte; otherwise the connection is closed
  (no response: the client has not yet said what it wants);
* **an unread body after the response** (a GET with a body, a 413 refused by its declared
  size): the keep-alive timer is left running while the rest is read and dropped, so the
  connection closes ``timeout_keep_alive`` seconds after the response however the client
  trickles.

The request body itself is bounded by ``BodyLimitMiddleware`` (``api/limits.py``), which
answers 408.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0  # seconds for a request's headers to arrive

log = logging.getLogger("safesetting.server")


class TimedConfig(uvicorn.Config):
    """uvicorn's ``Config`` plus ``header_timeout`` (it travels to every worker with it)."""

    def __init__(self, app: Any, *, header_timeout: float = HEADER_TIMEOUT, **kwargs: Any) -> None:
        kwargs.setdefault("http", TimedH11Protocol)
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout


class TimedH11Protocol(H11Protocol):
    """``H11Protocol`` with a header timeout and no trickling after the response."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout: float = getattr(config, "header_timeout", HEADER_TIMEOUT)
        self.header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # a new request starts (or goes on) with these bytes
        if self._discarding_body():
            # The response is sent; what is left of this body is only read to be dropped.
            # uvicorn would cancel the keep-alive timer on every byte: keep it running.
            self.conn.receive_data(data)
            self.handle_events()
        else:
            super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()  # the headers are in

    def _discarding_body(self) -> bool:
        return (
            self.cycle is not None
            and self.cycle.response_complete
            and self.conn.their_state is h11.SEND_BODY
        )

    def _arm_header_timer(self) -> None:
        if self.header_timer is None and not self.transport.is_closing():
            self.header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_too_slow(self) -> None:
        self.header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.debug("closing a connection whose headers took over %s s", self.header_timeout)
            self.transport.close()
