"""Strict request models: unknown fields are refused, every string has a size limit."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_SQL_CHARS = 20_000
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
QUERY_ID_PATTERN = r"^[0-9a-f]{1,64}$"
MAX_ENTRIES = 1000
MAX_SEQ = 2**53  # log positions and sizes: beyond any log, within every integer type used

ProjectId = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class QueryRequest(Strict):
    """One aggregate question (DESIGN.md §8)."""

    sql: Annotated[str, Field(min_length=1, max_length=MAX_SQL_CHARS)]
    project: ProjectId
    # As typed by the researcher ("0.5") or a JSON number; the service parses it exactly.
    epsilon: float | int | Annotated[str, Field(max_length=32)] | None = None
    dry_run: bool = False


class EntryFilter(Strict):
    """Filters of ``GET /v1/audit/entries`` (query parameters)."""

    # Query strings are text: lax types, so "5" is the number 5.
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)
    since: dt.date | None = None
    actor: Annotated[str, Field(max_length=200)] | None = None
    project: Annotated[str, Field(max_length=64)] | None = None
    action: Annotated[str, Field(max_length=100)] | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_ENTRIES)] = MAX_ENTRIES


class InclusionParams(Strict):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)
    seq: Annotated[int, Field(ge=1, le=MAX_SEQ)]
    size: Annotated[int, Field(ge=1, le=MAX_SEQ)] | None = None


class ConsistencyParams(Strict):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)
    old: Annotated[int, Field(ge=0, le=MAX_SEQ)]
    new: Annotated[int, Field(ge=0, le=MAX_SEQ)] | None = None


class QueriesFilter(Strict):
    """``GET /v1/queries``: the caller's queries, newest first (query parameters)."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)
    project: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    limit: Annotated[int, Field(ge=1, le=1_000)] = 100


# --- response shapes (documentation for /openapi.json; the bodies come from to_json()) ----
# extra="forbid" so that the contract tests, which validate real bodies against these,
# notice when a body and its documentation drift apart.


class Documented(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReasonBody(Documented):
    code: str
    message: str


class ErrorDetail(Documented):
    kind: str
    message: str


class QueryResultBody(Documented):
    """``QueryResult.to_json()``: released (noisy) values only."""

    status: str = Field(description="released, cached, dry_run or denied")
    query_id: str
    reasons: list[ReasonBody]
    columns: list[str]
    rows: list[list[str | int | float | bool | None]] = Field(
        description="group keys then noisy aggregates; a suppressed cell is null"
    )
    error: list[list[float | None]] = Field(description="95 % half-width per aggregate cell")
    epsilon_spent: float
    budget_remaining: float | None
    audit_seq: int | None
    project: str | None
    epsilon: float | None
    contribution_bound: int | None
    notes: list[str]
    data_version: str | None
    column_kinds: list[str] | None = Field(
        None, description='per column, "key" or "aggregate" (null for a refusal)'
    )
    expected: list[dict[str, str | float | None]] | None = Field(
        None, description="dry runs only: per-aggregate mechanism and expected error"
    )


class ErrorBody(Documented):
    """Every non-2xx body (``api.errors.error_response``)."""

    error: ErrorDetail
    reasons: list[ReasonBody]
    incident: str | None = Field(None, description="500 only: quote it to the operators")
    result: QueryResultBody | None = Field(None, description="a refused query only")


class BudgetBody(Documented):
    project: str
    budget_epsilon: float
    epsilon_spent: float
    budget_remaining: float
    dataset_epsilon_spent: float
    dataset_epsilon_cap: float


class ProjectBody(Documented):
    project: str
    title: str
    purpose: str
    org_type: str
    tables: list[str]
    status: str
    expires: str
    budget_epsilon: float
    epsilon_spent: float
    budget_remaining: float


class ProjectsBody(Documented):
    """``GET /v1/projects``: the caller's projects (every project for auditors, admins)."""

    projects: list[ProjectBody]


class QueryListItem(Documented):
    query_id: str
    researcher: str
    project: str
    status: str = Field(description="accepted, released or failed")
    epsilon: float
    asked_at: str
    released_at: str | None
    columns: list[str]


class QueriesBody(Documented):
    """``GET /v1/queries``: the caller's queries (every one for auditors, admins)."""

    queries: list[QueryListItem]
