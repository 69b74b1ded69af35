"""Request-size and request-time limits, enforced before any parsing (a pure ASGI
middleware)."""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from safesetting.api.errors import BodyTooLargeError, RequestTimeoutError, error_response

MAX_BODY_BYTES = 64 * 1024  # a query request is a few hundred bytes; SQL is capped lower
BODY_TIMEOUT = 10.0  # seconds for a whole request body to arrive once its headers are in
BODY_TIMEOUT_ENV = "SAFESETTING_BODY_TIMEOUT"  # how serve tells its workers (app_from_env)


class BodyLimitMiddleware:
    """Refuse (413, the usual envelope) any request body over ``max_bytes``, and (408, the
    envelope, then the connection is closed) any body not complete ``body_timeout`` seconds
    after its headers: a client trickling a body a byte at a time holds a connection, and
    its memory, for that long at most.

    The body is read here, up to the limit, whether or not the client sent a
    Content-Length (chunked bodies are counted as they arrive), then replayed to the app.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, body_timeout: float = BODY_TIMEOUT
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_large = BodyTooLargeError(f"request body over {self.max_bytes} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await error_response(too_large)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        with anyio.move_on_after(self.body_timeout) as deadline:
            while size <= self.max_bytes:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        if deadline.cancelled_caught:
            late = RequestTimeoutError(f"request body not received within {self.body_timeout:g} s")
            # Close the connection too: the rest of the body may still be on its way.
            await error_response(late, headers={"Connection": "close"})(scope, receive, send)
            return
        if size > self.max_bytes:
            await error_response(too_large)(scope, receive, send)
            return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
