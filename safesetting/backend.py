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

    def projects(self) -> list[dict[str, Any]]: ...

    def queries(self, project: str | None, limit: int) -> list[dict[str, Any]]: ...


class LocalBackend:
    """Runs the service in-process on the home (whoever runs this can read the home)."""

    def __init__(self, home: Home, token: str | None) -> None:
        self.home = home
        self.token = token

    def _service(self):  # noqa: ANN202 - imported lazily: the client needs none of this
        self.home.require()  # a missing home is reported before the engine is imported
        from safesetting.control import open_control
        from safesetting.service import QueryService

        return QueryService(open_control(self.home, actor="service"))

    def query(self, sql: str, project: str, epsilon: object | None, dry_run: bool) -> QueryResult:
        service = self._service()
        caller = service.login(self.token, project)  # authenticated once, failures audited
        return service.submit(caller, sql, project, epsilon, dry_run)

    def result(self, query_id: str) -> QueryResult:
        from safesetting.caller import login

        service = self._service()
        return service.get_result(login(service.control, self.token), query_id)

    def budget(self, project: str) -> dict[str, Any]:
        self.home.require()
        from safesetting.budgets import budget_summary
        from safesetting.caller import login
        from safesetting.control import open_control
        from safesetting.validation import check_id

        control = open_control(self.home, actor="service")
        check_id("project", project)  # before anything is written about it
        caller = login(control, self.token, project=project)
        return budget_summary(control, project, caller).to_json()

    def projects(self) -> list[dict[str, Any]]:
        from safesetting import history

        control, caller = self._caller()
        return history.projects(control, caller)

    def queries(self, project: str | None, limit: int) -> list[dict[str, Any]]:
        from safesetting import history

        control, caller = self._caller()
        return history.queries(control, caller, project=project, limit=limit)

    def _caller(self):  # noqa: ANN202 - (Control, Caller), imported lazily
        self.home.require()
        from safesetting.caller import login
        from safesetting.control import open_control

        control = open_control(self.home, actor="service")
        return control, login(control, self.token)


def backend_for(home: Home, token: str | None) -> Backend:
    url = os.environ.get("SAFESETTING_URL")
    if url:
        from safesetting.client import HttpBackend

        return HttpBackend(url, token)
    return LocalBackend(home, token)
