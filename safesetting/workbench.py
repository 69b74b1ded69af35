"""The researcher's workbench in Python: ``from safesetting import connect``.

``connect()`` reads ``SAFESETTING_URL`` and ``SAFESETTING_TOKEN`` (or takes them as
arguments) and otherwise works on a local home, exactly as the CLI does: the same backend,
so the same contract, the same audit entries and the same errors. Answers come back as
pandas DataFrames — the group keys, then each aggregate with ``<name>_error`` (its 95 %
half-width) beside it, or one row per cell with ``tidy=True`` — and the release's
metadata rides on ``DataFrame.attrs`` under the JSON keys (``query_id``, ``status``,
``epsilon_spent``, ``budget_remaining``, ``contribution_bound``, ``notes``, ``audit_seq``,
…). A refusal raises :class:`QueryRefused` (a ``PolicyDeniedError``; :class:`BudgetRefused`,
also a ``BudgetExhaustedError``, when only the budget stands in the way) carrying every
reason.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from safesetting.backend import Backend, LocalBackend
from safesetting.errors import BudgetExhaustedError, PolicyDeniedError, Reason
from safesetting.home import Home
from safesetting.results import DENIED, QueryResult

if TYPE_CHECKING:
    import pandas as pd

BUDGET_CODES = frozenset({"budget_exhausted", "dataset_cap_reached"})
METADATA = ("query_id", "status", "project", "epsilon", "epsilon_spent", "budget_remaining",
            "contribution_bound", "notes", "audit_seq", "data_version")  # fmt: skip


class QueryRefused(PolicyDeniedError):
    """A question the safe setting refused: ``reasons`` says why, ``result`` is the refusal
    as the CLI prints it (with its ``query_id`` and ``audit_seq``)."""

    def __init__(self, result: QueryResult) -> None:
        codes = ", ".join(r.code for r in result.reasons)
        super().__init__(f"query {result.query_id} was refused ({codes})", list(result.reasons))
        self.result = result


class BudgetRefused(QueryRefused, BudgetExhaustedError):
    """Refused for the budget alone (the project's, or the dataset-wide cap)."""


def connect(
    url: str | None = None, token: str | None = None, *, home: str | os.PathLike[str] | None = None
) -> Workbench:
    """A workbench on the safe setting at ``url`` (default ``SAFESETTING_URL``) with
    ``token`` (default ``SAFESETTING_TOKEN``), or, with no URL, on the local ``home``
    (default ``SAFESETTING_HOME`` or ``./safesetting-home``)."""
    url = url if url is not None else os.environ.get("SAFESETTING_URL") or None
    token = token if token is not None else os.environ.get("SAFESETTING_TOKEN") or None
    if url:
        from safesetting.client import HttpBackend

        return Workbench(HttpBackend(url, token))
    return Workbench(LocalBackend(Home.resolve(home), token))


class Workbench:
    """Ask, plan and look back, as a researcher: every call is one request to the backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def query(
        self, sql: str, project: str, epsilon: object | None = None, *, tidy: bool = False
    ) -> pd.DataFrame:
        """Ask ``sql`` for ``project`` at ``epsilon`` (default: the policy's); the released
        (or cached) answer as a DataFrame. ``QueryRefused`` if it is refused."""
        return frame(self._ask(sql, project, epsilon, dry_run=False), tidy=tidy)

    def dry_run(self, sql: str, project: str, epsilon: object | None = None) -> pd.DataFrame:
        """What ``query`` would cost and how accurate it would be, spending nothing: one row
        per aggregate (``label``, ``mechanism``, ``scale``, ``half_width``)."""
        import pandas as pd

        result = self._ask(sql, project, epsilon, dry_run=True)
        table = pd.DataFrame(result.expected or [],
                             columns=["label", "mechanism", "scale", "half_width"])  # fmt: skip
        _attach(table, result)
        return table

    def result(self, query_id: str, *, tidy: bool = False) -> pd.DataFrame:
        """A released answer again, at no cost."""
        return frame(self.backend.result(query_id), tidy=tidy)

    def budget(self, project: str) -> dict[str, Any]:
        """``budget_epsilon``, ``epsilon_spent``, ``budget_remaining`` and the dataset's."""
        return self.backend.budget(project)

    def projects(self) -> pd.DataFrame:
        """My projects and their budgets."""
        import pandas as pd

        return pd.DataFrame(self.backend.projects())

    def history(self, project: str | None = None, limit: int = 100) -> pd.DataFrame:
        """My queries, newest first (never their SQL, which is not kept)."""
        import pandas as pd

        return pd.DataFrame(self.backend.queries(project, limit))

    def _ask(self, sql: str, project: str, epsilon: object | None, *, dry_run: bool):  # noqa: ANN202
        result = self.backend.query(sql, project, epsilon, dry_run)
        if result.status == DENIED:
            if result.reasons and all(r.code in BUDGET_CODES for r in result.reasons):
                raise BudgetRefused(result)
            raise QueryRefused(result)
        return result


def frame(result: QueryResult, *, tidy: bool = False) -> pd.DataFrame:
    """A released result as a DataFrame: keys, then each aggregate and ``<name>_error``
    (wide), or with ``tidy`` one row per released cell (keys, ``measure``, ``value``,
    ``error``). A suppressed cell is missing (``None``/NaN); metadata on ``.attrs``."""
    import pandas as pd

    kinds = result.column_kinds or [
        "aggregate" if any(e[j] is not None for e in result.error) else "key"
        for j in range(len(result.columns))
    ]
    keys = [c for c, k in zip(result.columns, kinds, strict=True) if k == "key"]
    records: list[dict[str, Any]] = []
    for row, errors in zip(result.rows, result.error, strict=True):
        cells = list(zip(result.columns, kinds, row, errors, strict=True))
        group = {name: value for name, kind, value, _e in cells if kind == "key"}
        if tidy:
            records += [{**group, "measure": name, "value": value, "error": error}
                        for name, kind, value, error in cells if kind != "key"]  # fmt: skip
            continue
        record = dict(group)
        for name, kind, value, error in cells:
            if kind != "key":
                record[name] = value
                record[f"{name}_error"] = error
        records.append(record)
    if tidy:
        columns = [*keys, "measure", "value", "error"]
    else:
        columns = [*keys]
        for name, kind in zip(result.columns, kinds, strict=True):
            columns += [] if kind == "key" else [name, f"{name}_error"]
    table = pd.DataFrame.from_records(records, columns=columns)
    _attach(table, result)
    return table


def _attach(table: pd.DataFrame, result: QueryResult) -> None:
    body = result.to_json()
    table.attrs.update({k: body.get(k) for k in METADATA})


__all__ = ["BudgetRefused", "QueryRefused", "Reason", "Workbench", "connect", "frame"]
