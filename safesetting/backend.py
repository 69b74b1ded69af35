"""Where a researcher's command goes: the home in this process, or a server over HTTP.

``backend_for(home, token)`` picks the HTTP client when ``SAFESETTING_URL`` is set, so the
CLI prints the same output, JSON and exit codes in both modes.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from safesetting.home import Home
from safesetting.results import QueryResult


class Backend(Protocol):
    def query(
        self, sql: str, project: str, epsilon: object | None, dry_run: bool
    ) -> QueryResult: ...

    def result(self, query_id: str) -> QueryResult: ...

    def budget(self, project: str) -> dict[str, Any]: ...


class LocalBackend:
    """Runs the service in-process on the home (whoever runs this can read the home)."""

    def __init__(self, home: Home, token: str | None) -> None:
        self.home = home
        self.token = token

    def _service(self):  # noqa: ANN202 - imported lazily: the client needs none of this
        from safesetting.control import open_control
        from safesetting.service import QueryService

        return QueryService(open_control(self.home, actor="service"))

    def query(self, sql: str, project: str, epsilon: object | None, dry_run: bool) -> QueryResult:
        return self._service().submit(self.token, sql, project, epsilon, dry_run)

    def result(self, query_id: str) -> QueryResult:
        return self._service().get_result(self.token, query_id)

    def budget(self, project: str) -> dict[str, Any]:
        from safesetting.budgets import budget_summary
        from safesetting.control import open_control

        return budget_summary(
            open_control(self.home, actor="service"), project, self.token
        ).to_json()


def backend_for(home: Home, token: str | None) -> Backend:
    url = os.environ.get("SAFESETTING_URL")
    if url:
        from safesetting.client import HttpBackend

        return HttpBackend(url, token)
    return LocalBackend(home, token)
