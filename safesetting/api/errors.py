"""The one place an HTTP error body is built (STYLE.md: one envelope, one mapping).

Every non-2xx response has the shape of :class:`safesetting.errors.ErrorEnvelope`::

    {"error": {"kind": "...", "message": "..."}, "reasons": [{"code", "message"}, ...],
     "incident": "..."            # only for 500s: the id to quote to the operators
     "result": {QueryResult}}     # only for a refused query (403 / 409)

The status comes from :func:`safesetting.errors.envelope_for`, the same mapping that gives
the CLI its exit codes. A refused query is still a result: the full ``QueryResult`` JSON
(status ``denied``, reasons, audit entry) rides along under ``result`` so that clients print
exactly what local mode prints. Unexpected exceptions are logged here with their traceback
and answered with an incident id only: their text could hold anything.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from safesetting.errors import (
    BudgetExhaustedError,
    NotFoundError,
    PolicyDeniedError,
    RateLimitedError,
    SafeSettingError,
    UsageError,
    envelope_for,
)
from safesetting.incidents import record_incident
from safesetting.results import QueryResult

log = logging.getLogger("safesetting.server")


class MethodNotAllowedError(UsageError):
    http_status = 405
    kind = "method_not_allowed"


class BadRequestError(UsageError):
    """A request no reading of which is safe (say, two Authorization headers)."""

    http_status = 400
    kind = "bad_request"


class BodyTooLargeError(UsageError):
    """A request body over the server's limit (refused before it is parsed)."""

    http_status = 413
    kind = "too_large"


class RequestTimeoutError(UsageError):
    """A request body that did not arrive in time (the connection is then closed)."""

    http_status = 408
    kind = "timeout"


def error_response(
    exc: BaseException,
    *,
    result: QueryResult | None = None,
    headers: dict[str, str] | None = None,
    home: Path | None = None,
) -> JSONResponse:
    """The JSON response for ``exc``: envelope, status from ``envelope_for``, nothing else.

    Unknown exceptions get a fresh incident id; the traceback goes to ``home``'s
    ``incidents.log`` (when the app serves a home) and the server log, keyed by that id.
    """
    incident = None
    if not isinstance(exc, SafeSettingError):
        incident = uuid.uuid4().hex[:12]
        log.error("incident %s: unhandled %s", incident, type(exc).__name__, exc_info=exc)
        if home is not None:
            with contextlib.suppress(OSError):
                record_incident(home, incident, "HTTP request", exc)
    envelope, _code, status = envelope_for(exc, incident)
    body = envelope.to_json()
    if result is not None:
        body["result"] = result.to_json()
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="safesetting"'}
    if (retry_after := getattr(exc, "retry_after", None)) is not None:
        headers = {**(headers or {}), "Retry-After": str(retry_after)}
    return JSONResponse(body, status_code=status, headers=headers)


def served_home(request: Request) -> Path | None:
    """The home folder the app serves, if it serves one (for the incident log)."""
    state = getattr(request.app.state, "safesetting", None)
    return state.control.home.root if state is not None else None


def refusal(result: QueryResult, budget_only: bool) -> JSONResponse:
    """A refused query: 409 if only the budget stood in the way, 429 (with Retry-After) if
    only the researcher's queries already running did, else 403; the body carries it."""
    message = f"query {result.query_id} was refused"
    exc: SafeSettingError
    if result.reasons and all(r.code == "too_many_queries" for r in result.reasons):
        exc = RateLimitedError(message, list(result.reasons), retry_after=1)
    else:
        cls = BudgetExhaustedError if budget_only else PolicyDeniedError
        exc = cls(message, list(result.reasons))
    return error_response(exc, result=result)


def _short(part: object, limit: int = 40) -> str:
    text = str(part)
    return text if len(text) <= limit else text[:limit] + "…"


def _validation_message(exc: RequestValidationError) -> str:
    """Where and what, never the offending input (it could be anything the caller sent)."""
    parts = []
    for err in exc.errors()[:5]:
        # A location can hold the caller's own field or parameter name: 40 characters of it.
        where = ".".join(_short(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = len(exc.errors()) - 5
    return "invalid request: " + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


async def _on_safesetting_error(_request: Request, exc: Exception) -> Response:
    return error_response(exc)


async def _on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(UsageError(_validation_message(exc)))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response(NotFoundError("no such endpoint"))
    if exc.status_code == 405:
        return error_response(MethodNotAllowedError("method not allowed on this endpoint"))
    if exc.status_code == 413:
        return error_response(BodyTooLargeError("request body too large"))
    if 400 <= exc.status_code < 500:
        return error_response(UsageError("bad request"))
    return error_response(RuntimeError(f"HTTP {exc.status_code}"), home=served_home(request))


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Coroutine[Any, Any, Response]]] = {
    SafeSettingError: _on_safesetting_error,
    RequestValidationError: _on_validation_error,
    StarletteHTTPException: _on_http_error,
}


class EnvelopeRoute(APIRoute):
    """A route whose unexpected exceptions become a 500 envelope here, not in Starlette's
    ServerErrorMiddleware (which would re-raise them and print a traceback per request)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (SafeSettingError, RequestValidationError, StarletteHTTPException):
                raise  # the handlers above turn these into envelopes
            except Exception as exc:  # noqa: BLE001 - the one place unknown errors become 500s
                return error_response(exc, home=served_home(request))

        return guarded
