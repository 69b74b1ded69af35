"""The researcher's side of the HTTP boundary: the CLI's backend when SAFESETTING_URL is set.

:class:`HttpBackend` has the same methods and return types as the local backend, so
``safesetting query``/``budget``/``audit`` print the same output, JSON and exit codes in
both modes. Server errors arrive as the one error envelope and are raised again as the same
:class:`~safesetting.errors.SafeSettingError` subclass (so the exit code matches); a refused
query arrives with its ``QueryResult`` and is returned, as in local mode. A server that
cannot be reached is :class:`UnreachableError` (exit 1, one line, no traceback).

Only ``httpx`` and the small result/error modules are imported: the client needs no DuckDB.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from safesetting.errors import (
    AuthenticationError,
    BudgetExhaustedError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    PolicyDeniedError,
    RateLimitedError,
    Reason,
    SafeSettingError,
    StateError,
    UnavailableError,
    UsageError,
)
from safesetting.results import QueryResult

#: Connecting should be quick; a fresh query may take a while on a busy server.
TIMEOUT = httpx.Timeout(60.0, connect=5.0)

_BY_KIND: dict[str, type[SafeSettingError]] = {
    cls.kind: cls
    for cls in (
        UsageError,
        AuthenticationError,
        PermissionDeniedError,
        PolicyDeniedError,
        BudgetExhaustedError,
        NotFoundError,
        StateError,
        IntegrityError,
        RateLimitedError,
        UnavailableError,
    )
}
_BY_STATUS: dict[int, type[SafeSettingError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: BudgetExhaustedError,
    429: RateLimitedError,
    503: UnavailableError,
}


class UnreachableError(SafeSettingError):
    """No answer from the server (refused connection, DNS, timeout): exit 1."""

    kind = "unreachable"
    http_status = 502


def error_from(response: httpx.Response) -> SafeSettingError:
    """The exception a server's error envelope stands for (same class, so same exit code)."""
    try:
        body = response.json()
        error = body["error"]
        kind, message = str(error["kind"]), str(error["message"])
        reasons = [Reason(str(r["code"]), str(r["message"])) for r in body.get("reasons", [])]
    except (ValueError, KeyError, TypeError):
        return SafeSettingError(f"the server answered HTTP {response.status_code} without details")
    cls = _BY_KIND.get(kind)
    if cls is None:
        cls = UsageError if 400 <= response.status_code < 500 else SafeSettingError
        cls = _BY_STATUS.get(response.status_code, cls)
    return cls(message, reasons)


class HttpBackend:
    """Talks to a safe setting at ``url`` with a bearer ``token``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: httpx.Timeout = TIMEOUT,
        client: httpx.Client | None = None,
    ) -> None:
        """``client``: a caller-owned ``httpx.Client`` to reuse (a bench's pool, or a test's
        in-process ASGI client); by default each call opens and closes its own connection,
        which is what a one-shot CLI command wants."""
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._client = client
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            if self._client is not None:
                return self._client.request(method, path, headers=self._auth, **kwargs)
            with httpx.Client(base_url=self.url, timeout=self.timeout) as client:
                return client.request(method, path, headers=self._auth, **kwargs)
        except httpx.TimeoutException:
            raise UnreachableError(
                f"no answer from the safe setting at {self.url} (timed out)"
            ) from None
        except httpx.TransportError:
            raise UnreachableError(f"cannot reach the safe setting at {self.url}") from None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.is_success:
            return response.json()
        raise error_from(response)

    # -- the Backend protocol ----------------------------------------------------------------
    def query(self, sql: str, project: str, epsilon: object | None, dry_run: bool) -> QueryResult:
        body = {
            "sql": sql,
            "project": project,
            "epsilon": None if epsilon is None else str(epsilon),
            "dry_run": dry_run,
        }
        response = self._send("POST", "/v1/queries", json=body)
        if response.is_success:
            return QueryResult.from_json(response.json())
        if response.status_code in (403, 409, 429):
            try:
                refused = response.json().get("result")
            except ValueError:
                refused = None
            if isinstance(refused, dict):
                return QueryResult.from_json(refused)  # printed and exit 3, as locally
        raise error_from(response)

    def result(self, query_id: str) -> QueryResult:
        return QueryResult.from_json(self._json("GET", f"/v1/queries/{quote(query_id, safe='')}"))

    def budget(self, project: str) -> dict[str, Any]:
        body: dict[str, Any] = self._json("GET", f"/v1/projects/{quote(project, safe='')}/budget")
        return body

    def projects(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._json("GET", "/v1/projects")["projects"]
        return found

    def queries(self, project: str | None, limit: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if project is not None:
            params["project"] = project
        found: list[dict[str, Any]] = self._json("GET", "/v1/queries", params=params)["queries"]
        return found

    # -- audit reads -------------------------------------------------------------------------
    def checkpoint(self) -> str:
        response = self._send("GET", "/v1/audit/checkpoint")
        if not response.is_success:
            raise error_from(response)
        return response.text

    def public_key(self) -> str:
        response = self._send("GET", "/v1/audit/public-key")
        if not response.is_success:
            raise error_from(response)
        return response.text.strip()

    def public_keys(self) -> dict[str, Any]:
        body: dict[str, Any] = self._json("GET", "/v1/audit/public-keys")
        return body

    def entries(self, **filters: Any) -> list[dict[str, Any]]:
        params = {k: str(v) for k, v in filters.items() if v is not None}
        found: list[dict[str, Any]] = self._json("GET", "/v1/audit/entries", params=params)[
            "entries"
        ]
        return found

    def inclusion(self, seq: int, size: int | None = None) -> dict[str, Any]:
        params = {"seq": seq} if size is None else {"seq": seq, "size": size}
        bundle: dict[str, Any] = self._json("GET", "/v1/audit/proof/inclusion", params=params)
        return bundle

    def consistency(self, old: int, new: int | None = None) -> dict[str, Any]:
        params = {"old": old} if new is None else {"old": old, "new": new}
        bundle: dict[str, Any] = self._json("GET", "/v1/audit/proof/consistency", params=params)
        return bundle
