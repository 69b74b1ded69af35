"""The safe setting over HTTP: a FastAPI app over the same service code the local CLI uses.

``create_app(home)`` opens the home's control plane once (policy, migrations, audit tables)
and serves the versioned JSON API of DESIGN.md §8. Researchers hold only a URL and a bearer
token; the data, the ledger, the log and the signing key stay behind this boundary.

Security properties of the boundary (see docs/ARCHITECTURE.md):

* every request body is size-limited before parsing and validated by a strict model
  (unknown fields refused); every error, whatever raised it, leaves through
  :func:`safesetting.api.errors.error_response` with the envelope and the status of
  :func:`safesetting.errors.envelope_for`, and unexpected errors show only an incident id;
* responses carry released (noisy) values, metadata, counts and hashes — never a row, a
  true aggregate or an identifier from the data;
* a failed authentication on any endpoint is audited as ``auth.failed``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from safesetting import __version__, history
from safesetting.api.errors import EXCEPTION_HANDLERS, BadRequestError, EnvelopeRoute, refusal
from safesetting.api.headers import SecurityHeadersMiddleware
from safesetting.api.lifeline import follow_supervisor
from safesetting.api.limits import BODY_TIMEOUT, BODY_TIMEOUT_ENV, BodyLimitMiddleware
from safesetting.api.models import (
    ID_PATTERN,
    QUERY_ID_PATTERN,
    BudgetBody,
    ConsistencyParams,
    EntryFilter,
    ErrorBody,
    InclusionParams,
    ProjectsBody,
    QueriesBody,
    QueriesFilter,
    QueryRequest,
    QueryResultBody,
)
from safesetting.api.ratelimit import FailedLogins, RateLimitMiddleware, Summary, client_of
from safesetting.audit_log import AuditLog, log_time
from safesetting.budgets import budget_summary
from safesetting.caller import AUDITORS, RESEARCHERS, Caller, Role, identify, wrong_role
from safesetting.control import Control, open_control
from safesetting.errors import AuthenticationError, PermissionDeniedError
from safesetting.home import Home
from safesetting.report.transparency_page import render_transparency
from safesetting.results import DENIED
from safesetting.service import QueryService, is_budget_denial
from safesetting.transparency import LogTally, transparency_summary
from synthetic import catalogue as catalogue_lib

#: Requests one worker runs at once (its threadpool; anyio's default is 40). The service is
#: CPU-bound on a 2-core box, and each fresh query holds an in-memory sandbox of up to the
#: engine's memory limit, so a small bound keeps memory bounded without costing throughput.
REQUEST_THREADS = 8
_bearer = HTTPBearer(auto_error=False, description="The token shown once at registration.")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "model": ErrorBody}
    for status, text in {
        400: "More than one Authorization header (error envelope)",
        401: "No, unknown, revoked or expired token (error envelope)",
        403: "Wrong role, or refused by the policy (error envelope; a refused query's "
        "QueryResult under `result`)",
        404: "Unknown, or not yours (error envelope)",
        409: "Privacy budget exhausted (error envelope with the QueryResult under `result`), "
        "or the home is not ready",
        408: "Request body not received in time (error envelope; the connection closes)",
        413: "Request body too large (error envelope)",
        422: "Unusable input: bad SQL, unknown field, value out of range (error envelope)",
        500: "Internal error: an incident id, never a traceback (error envelope)",
    }.items()
}


def token_of(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    """The bearer token, or None (a missing or non-Bearer header is "no token").

    Two ``Authorization`` headers are a 400: which one a proxy, a log and this server each
    read could differ.
    """
    if len(request.headers.getlist("authorization")) > 1:
        raise BadRequestError("more than one Authorization header")
    return credentials.credentials if credentials else None


Token = Annotated[str | None, Depends(token_of)]


class SafeSettingApp:
    """The state one worker serves from: the control plane, the service and the audit log
    (signed with the key in force at each request, so a key rotation needs no restart)."""

    def __init__(self, control: Control) -> None:
        self.control = control
        self.service = QueryService(control)
        self.log = AuditLog.of_control(control)
        self.failed_logins = FailedLogins(control.policy.limits.failed_login_window_seconds)
        self.tally = LogTally()  # the public page reads only what was appended since
        if control.home.database.exists():
            # Open the worker's data plane now (publishing the snapshot if it is not yet
            # there), not in its first query.
            self.service.session().plane()

    def audit_failure(
        self,
        request: Request,
        exc: AuthenticationError | PermissionDeniedError,
        who: str | None = None,
    ) -> None:
        """Record ``auth.failed``: the route template, the client, who (``researcher:<id>``
        when the token was recognised) and reason codes, no caller text. Failures from one
        client and caller are counted per window (``FailedLogins``): the first is written
        now, the rest of the window as one entry when it closes."""
        route = getattr(request.scope.get("route"), "path", "?")
        client = client_of(request.scope)
        codes = [r.code for r in exc.reasons]
        actor = f"researcher:{who}" if who else "anonymous"
        write_now, closed = self.failed_logins.note(client, codes, route, actor)
        self.write_summaries(closed)
        if not write_now:
            return
        with self.control.transaction() as conn:
            self.control.record(
                conn,
                "auth.failed",
                actor=actor,
                request={"method": request.method, "path": route, "client": client},
                decision="denied",
                reasons=codes,
            )

    def write_summaries(self, summaries: list[Summary]) -> None:
        """One ``auth.failed`` entry per closed window: how many more attempts it saw."""
        if not summaries:
            return
        window = self.failed_logins.window
        with self.control.transaction() as conn:
            for s in summaries:
                start = log_time(s.window_start)
                self.control.record(
                    conn,
                    "auth.failed",
                    actor=s.actor,
                    request={"path": s.path, "client": s.client, "attempts": s.attempts,
                             "window_start": start, "window_seconds": int(window)},
                    decision="denied",
                    reasons=list(s.reasons),
                )  # fmt: skip

    def caller(self, token: str | None, request: Request) -> Caller:
        """The holder of ``token``, accredited today, whatever their role.

        An unknown, revoked or expired token (401) or an expired accreditation (403) is
        audited ``auth.failed`` and refused on every endpoint, not only by the policy.
        """
        try:
            return identify(self.control, token)
        except (AuthenticationError, PermissionDeniedError) as exc:
            self.audit_failure(request, exc, getattr(exc, "researcher_id", None))
            raise

    def require_role(self, caller: Caller, roles: Collection[Role], request: Request) -> None:
        if not caller.may(roles):
            exc = wrong_role(caller.role, roles)
            self.audit_failure(request, exc, caller.id)
            raise exc


def _state(request: Request) -> SafeSettingApp:
    state: SafeSettingApp = request.app.state.safesetting
    return state


State = Annotated[SafeSettingApp, Depends(_state)]


def caller_of(token: Token, app: State, request: Request) -> Caller:
    """Every token endpoint runs this first (see :meth:`SafeSettingApp.caller`)."""
    return app.caller(token, request)


Authenticated = Annotated[Caller, Depends(caller_of)]
router = APIRouter(route_class=EnvelopeRoute, responses=ERROR_RESPONSES)


@router.post(
    "/v1/queries",
    tags=["queries"],
    summary="Ask an aggregate question (or dry run)",
    responses={200: {"model": QueryResultBody, "description": "Released, cached or dry run"}},
)
def submit_query(
    body: QueryRequest, app: State, caller: Authenticated, request: Request
) -> JSONResponse:
    """Run the query path of DESIGN.md §2. 200 with the QueryResult when released, cached
    or a dry run; a refusal is 403 (policy) or 409 (budget only) with the QueryResult under
    ``result`` in the error envelope."""
    app.require_role(caller, RESEARCHERS, request)  # audited per window, not per request
    result = app.service.submit(caller, body.sql, body.project, body.epsilon, body.dry_run)
    if result.status == DENIED:
        return refusal(result, is_budget_denial(result))
    return JSONResponse(result.to_json())


@router.get(
    "/v1/queries",
    tags=["queries"],
    summary="My queries, newest first",
    responses={200: {"model": QueriesBody, "description": "The caller's queries"}},
)
def get_queries(
    filters: Annotated[QueriesFilter, Query()], app: State, caller: Authenticated
) -> dict[str, Any]:
    """The caller's own queries (every researcher's for auditors and admins): id, project,
    status, ε, when asked and answered, and the answer's columns; never the SQL."""
    return {
        "queries": history.queries(
            app.control, caller, project=filters.project, limit=filters.limit
        )
    }


@router.get(
    "/v1/projects",
    tags=["queries"],
    summary="My projects",
    responses={200: {"model": ProjectsBody, "description": "The caller's projects"}},
)
def get_projects(app: State, caller: Authenticated) -> dict[str, Any]:
    """The caller's projects with their budgets (every project for auditors and admins)."""
    return {"projects": history.projects(app.control, caller)}


@router.get(
    "/v1/queries/{query_id}",
    tags=["queries"],
    summary="Read a released result again",
    responses={200: {"model": QueryResultBody, "description": "The released result"}},
)
def get_query(
    query_id: Annotated[str, Path(pattern=QUERY_ID_PATTERN)],
    app: State,
    caller: Authenticated,
) -> JSONResponse:
    """A released result again, at no cost: a researcher's own queries only (404 otherwise);
    auditors and admins any."""
    return JSONResponse(app.service.get_result(caller, query_id).to_json())


@router.get(
    "/v1/projects/{project_id}/budget",
    tags=["queries"],
    summary="A project's budget",
    responses={200: {"model": BudgetBody, "description": "Budget, spent, remaining ε"}},
)
def get_budget(
    project_id: Annotated[str, Path(pattern=ID_PATTERN)],
    app: State,
    caller: Authenticated,
) -> dict[str, Any]:
    """Budget, spent and remaining ε of a project (a researcher's own projects only)."""
    return budget_summary(app.control, project_id, caller).to_json()


@router.get("/v1/catalogue", tags=["public"], summary="What may be asked (metadata only)")
def get_catalogue() -> dict[str, Any]:
    """Tables, columns, classes, public domains and bounds, from the schema alone."""
    return catalogue_lib.describe()


@router.get("/v1/audit/entries", tags=["audit"], summary="Audit log entries (auditors)")
def get_entries(
    filters: Annotated[EntryFilter, Query()], caller: Authenticated, app: State, request: Request
) -> dict[str, Any]:
    """The newest ``limit`` entries matching the filters, oldest first (auditors, admins)."""
    app.require_role(caller, AUDITORS, request)
    found = app.log.entries(
        since=filters.since,
        actor=filters.actor,
        project=filters.project,
        action=filters.action,
        limit=filters.limit,
        newest_first=True,
    )
    return {"entries": found}


@router.get(
    "/v1/audit/checkpoint",
    tags=["public"],
    summary="The latest signed checkpoint (C2SP signed note)",
    response_class=PlainTextResponse,
)
def get_checkpoint(app: State) -> PlainTextResponse:
    """Publish it somewhere the operators cannot rewrite; consistency proofs link it on."""
    return PlainTextResponse(app.log.published_checkpoint())


@router.get("/v1/audit/public-key", tags=["public"], summary="The log's verifier key")
def get_public_key(app: State) -> PlainTextResponse:
    """The key in force (after ``admin key rotate``, the new one: re-read when it changes)."""
    return PlainTextResponse(app.log.verifier() + "\n")


@router.get("/v1/audit/public-keys", tags=["public"], summary="Every verifier key the log has had")
def get_public_keys(app: State) -> dict[str, Any]:
    """``{"keys": [...]}``, oldest first: each ``public_key`` with the tree sizes it signs
    (``from_size`` to ``until_size``, ``null`` while in force), and for a key a rotation
    introduced, ``rotation_seq`` and that rotation's ``checkpoint``, signed by both keys."""
    return app.log.published_keys()


@router.get("/v1/audit/proof/inclusion", tags=["audit"], summary="Inclusion proof of an entry")
def get_inclusion(
    params: Annotated[InclusionParams, Query()], caller: Authenticated, app: State
) -> dict[str, Any]:
    """Entry ``seq``, its RFC 9162 inclusion proof and the signed checkpoint. Researchers
    may prove only their own entries (so they can check their queries were logged)."""
    only = caller.actor if caller.role is Role.RESEARCHER else None
    return app.log.inclusion(params.seq, params.size, only_actor=only)


@router.get("/v1/audit/proof/consistency", tags=["public"], summary="Consistency proof")
def get_consistency(params: Annotated[ConsistencyParams, Query()], app: State) -> dict[str, Any]:
    """Proof that the log at ``old`` entries is a prefix of the log at ``new`` (default:
    the latest). Hashes only, so public."""
    return app.log.consistency(params.old, params.new)


@router.get("/v1/transparency", tags=["public"], summary="Public aggregate summary")
def get_transparency(app: State) -> dict[str, Any]:
    """Projects (organisation type, purpose, dates, ε), query counts by kind, dataset-wide
    ε and the latest checkpoint: aggregates only."""
    return transparency_summary(app.control, app.tally)


@router.get("/", tags=["public"], response_class=HTMLResponse, summary="Transparency page")
def get_page(app: State) -> HTMLResponse:
    return HTMLResponse(render_transparency(transparency_summary(app.control, app.tally)))


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
    state: SafeSettingApp = app.state.safesetting
    every = min(state.failed_logins.window, 5.0)

    async def write_closed_windows() -> None:
        while True:
            await anyio.sleep(every)
            await anyio.to_thread.run_sync(lambda: state.write_summaries(state.failed_logins.due()))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(write_closed_windows)
        try:
            yield
        finally:
            tasks.cancel_scope.cancel()
            state.write_summaries(state.failed_logins.due(everything=True))


def create_app(
    home: Home, control: Control | None = None, *, body_timeout: float = BODY_TIMEOUT
) -> FastAPI:
    """The ASGI app for ``home``; opens its control plane (migrations, policy) once.

    A request body not complete ``body_timeout`` seconds after its headers is a 408.
    """
    control = control or open_control(home, actor="service")
    app = FastAPI(
        title="Safe Setting",
        version=__version__,
        description="Differentially private, audited research access to a synthetic "
        "National Pupil Database. Rows never leave. Errors: one envelope "
        '`{"error": {"kind", "message"}, "reasons": [...]}`, plus `incident` on 500 and '
        "`result` (the QueryResult) on a refused query.",
        exception_handlers=EXCEPTION_HANDLERS,
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.safesetting = SafeSettingApp(control)
    app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, body_timeout=body_timeout)
    app.add_middleware(RateLimitMiddleware, limits=control.policy.limits)
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: on 413s too
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several workers): the home from SAFESETTING_HOME,
    the body timeout from SAFESETTING_BODY_TIMEOUT; a worker of ``safesetting serve``
    (SAFESETTING_SUPERVISOR_PID) also ends when its supervisor does (``api/lifeline.py``)."""
    follow_supervisor()
    body_timeout = float(os.environ.get(BODY_TIMEOUT_ENV) or BODY_TIMEOUT)
    return create_app(Home.resolve(os.environ.get("SAFESETTING_HOME")), body_timeout=body_timeout)
