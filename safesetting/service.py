"""One request's orchestration: authenticate → parse → decide → cache → debit + audit →
sandbox → OpenDP → release + audit (DESIGN.md §2). The CLI and the server both call this.

Order matters for privacy: the budget debit and the ``query.accepted`` audit entry commit
together *before* the true aggregates are computed; if the process dies after that, the
budget stays spent and the log shows an access without a release — never the reverse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa

from policies.decide import Facts, column_uses, decide
from policies.epsilon import format_epsilon, to_float, to_micro
from policies.reasons import reason
from safesetting.control import Control
from safesetting.engine.compile import CompiledQuery, compile_plan, needed_columns
from safesetting.engine.execute import Sandbox, shared_sandbox
from safesetting.engine.noise import expected_errors, release
from safesetting.engine.parse import Catalogue, parse_query
from safesetting.engine.plan import QueryPlan, Refusal
from safesetting.errors import (
    AuthenticationError,
    BudgetExhaustedError,
    IncidentError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    Reason,
    SafeSettingError,
    StateError,
    UnavailableError,
    UsageError,
)
from safesetting.incidents import record_incident
from safesetting.results import CACHED, DENIED, DRY_RUN, RELEASED, QueryResult
from safesetting.store import authenticate, dataset_spent, debit, get_project, project_spent
from safesetting.store import queries as q
from safesetting.store.registry import Project, member_project, optout_upns
from synthetic.load import missing_constraints, read_data_version

log = logging.getLogger("safesetting.service")
BUDGET_CODES = frozenset({"budget_exhausted", "dataset_cap_reached"})
UNLOGGABLE = Reason(
    "direct_identifier",
    "the query holds a value shaped like a UPN or a postcode; it cannot be used or recorded",
)


@dataclass(frozen=True)
class DataInfo:
    """What the service knows about the data without reading a row of it."""

    version: str
    ref_domains: dict[str, tuple[object, ...]]
    pupils: int  # the declared population (a generation parameter, public)


@lru_cache(maxsize=8)
def _data_info(path: str, mtime_ns: int) -> DataInfo:  # noqa: ARG001 - mtime keys the cache
    data_version = read_data_version(path)
    con = duckdb.connect(path, read_only=True)
    try:
        # The contribution bounds rely on the declared keys and checks: a file without one
        # of them is not served (a hand-made or damaged file, say).
        missing = missing_constraints(con)
        urns = tuple(r[0] for r in con.execute("SELECT urn FROM schools ORDER BY urn").fetchall())
    finally:
        con.close()
    if missing:
        raise StateError(
            f"{Path(path).name} lacks {len(missing)} declared constraint(s) the privacy "
            f"bounds rely on, first {missing[0]}: regenerate it with `safesetting data "
            "generate --force`"
        )
    return DataInfo(data_version.id, {"schools.urn": urns}, data_version.pupils)


def data_info(db_path: Path) -> DataInfo:
    if not db_path.is_file():
        raise StateError(f"no data in {db_path.parent}: run `safesetting data generate` first")
    return _data_info(str(db_path), db_path.stat().st_mtime_ns)


ABANDONED_AFTER = timedelta(minutes=10)  # far beyond the 30 s a query may run


def close_abandoned(control: Control, *, older_than: timedelta = ABANDONED_AFTER) -> int:
    """Close queries whose process died between the debit and the release (a killed
    worker): each becomes ``failed`` with a ``query.failed`` entry; the ε stays spent, as
    for any failure after the debit. Returns how many were closed. ``serve`` runs it at
    start, before any worker; queries younger than ``older_than`` are left alone, in case
    another process is still answering them."""
    with control.reader() as conn:
        stale = q.abandoned_queries(conn, datetime.now(UTC) - older_than)
    for row in stale:
        with control.transaction() as conn:
            q.finish_query(conn, row.id, q.FAILED, None)
            control.record(
                conn,
                "query.failed",
                actor="service",
                project=row.project_id,
                request={"query_id": row.id, "reason": "abandoned: its process ended first"},
                decision="failed",
                reasons=["internal"],
                data_version=row.data_version,
            )
    return len(stale)


def check_data(db_path: Path) -> DataInfo:
    """The data file, opened and checked as a query would (``serve`` runs it at start, so
    a missing, unreadable or unconstrained file stops the server, naming the file)."""
    try:
        return data_info(db_path)
    except StateError:
        raise
    except (duckdb.Error, OSError, ValueError) as exc:
        # The type only: a damaged file's message could quote its bytes.
        raise StateError(
            f"{db_path} cannot be served: it does not open as this safe setting's DuckDB "
            f"database ({type(exc).__name__}); regenerate it with `safesetting data "
            "generate --force` or restore it"
        ) from None


class DataUnreadableError(Exception):
    """The data file could not be opened or read for a query that was paid for."""


#: What reading a damaged, missing or unreadable file raises. Only these stop fresh queries:
#: anything else a query can cause (a timeout, memory) must not let one researcher stop the
#: service for everyone.
UNREADABLE = (OSError, duckdb.IOException, duckdb.SerializationException)


class _InFlight(Exception):  # noqa: N818 - control flow, never leaves the service
    def __init__(self, query_id: str) -> None:
        self.query_id = query_id


class _Released(Exception):  # noqa: N818 - control flow, never leaves the service
    def __init__(self, cached: dict[str, Any]) -> None:
        self.cached = cached


class _TooMany(Exception):  # noqa: N818 - control flow, never leaves the service
    def __init__(self, refusal: Reason) -> None:
        self.reason = refusal


IN_FLIGHT_WAIT = 60.0  # seconds to wait for an identical query's answer (they run ≤ 30 s)
HALTED_FILE = "halted"  # in the home: fresh queries stop while it exists


def halted_by(home) -> str | None:  # noqa: ANN001 - a Home
    """The incident that stopped fresh queries, or None when they run."""
    try:
        return (home.root / HALTED_FILE).read_text().strip() or "unknown"
    except FileNotFoundError:
        return None


def halt(home, incident: str) -> None:  # noqa: ANN001 - a Home
    """Stop fresh queries in every process of this home until ``resume``."""
    path = home.root / HALTED_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(incident + "\n")
    os.replace(tmp, path)


def resume(home) -> str | None:  # noqa: ANN001 - a Home
    """Let fresh queries run again; returns the incident that had stopped them."""
    incident = halted_by(home)
    (home.root / HALTED_FILE).unlink(missing_ok=True)
    return incident


def parse_epsilon_text(value: object) -> int:
    """ε as typed by a person (``0.5``) → exact micro-ε; unusable input otherwise."""
    text = str(value)
    shown = repr(value) if len(text) <= 24 else f"{text[:24]!r}… ({len(text)} characters)"
    try:
        micro = to_micro(text if isinstance(value, str) else str(Decimal(text)))
    except (ValueError, InvalidOperation):
        raise UsageError(f"epsilon must be a number with at most 6 decimals, not {shown}") from None
    if micro <= 0:
        raise UsageError("epsilon must be greater than 0")
    return micro


class QueryService:
    """Answers researchers' queries for one home (local mode and the server share it)."""

    def __init__(self, control: Control, *, shared_sandbox: bool = False) -> None:
        """``shared_sandbox``: keep one locked in-memory copy of the data for every query
        (a long-running server); otherwise each query copies only what it reads (the CLI)."""
        self.control = control
        self.policy = control.policy
        self.shared_sandbox = shared_sandbox
        self._waiting: Counter[str] = Counter()  # requests waiting on an identical query
        self._waiting_lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------------------
    def _audit(self, action: str, **fields: Any) -> int:
        with self.control.transaction() as conn:
            return self.control.record(conn, action, **fields).seq

    def _authenticate(self, token: str | None, project: str, roles: tuple[str, ...]):
        try:
            with self.control.reader() as conn:
                return authenticate(conn, token, roles=roles)
        except (AuthenticationError, PermissionDeniedError) as exc:
            # The project the caller named goes in the request, not on the entry: an
            # unauthenticated caller must not write to any project's public record.
            self._audit(
                "auth.failed",
                actor="anonymous" if isinstance(exc, AuthenticationError) else "researcher",
                request={"project": project} if project else None,
                decision="denied",
                reasons=[r.code for r in exc.reasons],
            )
            raise

    def catalogue(self, info: DataInfo) -> Catalogue:
        return Catalogue(ref_domains=info.ref_domains)

    def min_year(self) -> int:
        """Records older than the retention period are never used."""
        return self.control.today().year - self.policy.retention_years

    # -- the query path --------------------------------------------------------------------
    def submit(
        self,
        token: str | None,
        sql: str,
        project_id: str,
        epsilon: object | None = None,
        dry_run: bool = False,
    ) -> QueryResult:
        """Run one query request end to end; a refusal is a result, not an exception."""
        researcher = self._authenticate(token, project_id, ("researcher",))
        actor = f"researcher:{researcher.id}"
        info = data_info(self.control.home.database)
        query_id = uuid.uuid4().hex[:20]
        sql_digest = hashlib.sha256(sql.encode()).hexdigest()
        request: dict[str, Any] = {"query_id": query_id, "sql_sha256": sql_digest}
        with self.control.reader() as conn:
            project = member_project(conn, project_id, researcher.id)
        if project is None:
            # Not the caller's project (or none): the attempt is on the record, in the
            # request, but not on that project's entries, which the public page counts.
            request["project"] = project_id
            logged: str | None = None
        else:
            logged = project_id
        try:
            epsilon_micro = (
                parse_epsilon_text(epsilon) if epsilon is not None
                else self.policy.epsilon.default_per_query
            )  # fmt: skip
        except UsageError as exc:
            raise self._invalid("epsilon_invalid", exc, actor, logged, request, info) from None
        try:
            parsed = parse_query(sql, self.catalogue(info))
        except UsageError as exc:
            raise self._invalid("syntax_error", exc, actor, logged, request, info) from None
        reasons = self._check(researcher, project, project_id, parsed, epsilon_micro)
        if isinstance(parsed, QueryPlan):
            request.update(plan_sha256=parsed.digest(), tables=list(parsed.tables))
        if reasons:
            return self._denied(query_id, actor, logged, request, reasons, info)
        plan = parsed
        if not isinstance(plan, QueryPlan):  # a refusal always carries reasons
            raise SafeSettingError("a refused query reached the release path")
        if dry_run:
            compiled = self._prepare(plan, epsilon_micro, actor, project_id, request, info)
            if costly := self._too_costly(plan, compiled, info):
                return self._denied(query_id, actor, project_id, request, [costly], info)
            return self._dry_run(
                query_id, actor, project_id, plan, compiled, epsilon_micro, info, request
            )
        with self.control.reader() as conn:
            cache_key = self._cache_key(conn, plan, epsilon_micro, info, project_id)
            cached = q.cached_result(conn, cache_key)
        if cached is not None:
            return self._cached(
                query_id, actor, project_id, cached, request, info, cache_key, project
            )
        # Compiled only now: a cache hit needs no SQL (compiling is ~a third of a hit's cost).
        compiled = self._prepare(plan, epsilon_micro, actor, project_id, request, info)
        if costly := self._too_costly(plan, compiled, info):
            return self._denied(query_id, actor, project_id, request, [costly], info)
        self._require_running()
        # ONE transaction: the debit, the query row and the audit entry, before any data is read.
        for _attempt in range(3):
            try:
                self._accept(query_id, researcher, project_id, plan, epsilon_micro, info,
                             cache_key, request)  # fmt: skip
                break
            except _Released as done:  # answered since the cache was read: not charged again
                return self._cached(
                    query_id, actor, project_id, done.cached, request, info, cache_key, project
                )
            except _InFlight as flight:
                # The same question is being answered right now: wait for that answer and
                # give it here, charged once (single flight); if it failed, ask afresh.
                # Waiting counts against the researcher's cap too (it holds a thread).
                if not self._wait_for(researcher.id, flight.query_id):
                    limit = self.policy.limits.concurrent_queries_per_researcher
                    busy = reason("too_many_queries", researcher=researcher.id,
                                  running=limit, limit=limit)  # fmt: skip
                    return self._denied(query_id, actor, project_id, request, [busy], info)
                with self.control.reader() as conn:
                    cached = q.cached_result(conn, cache_key)
                if cached is not None:
                    return self._cached(
                        query_id, actor, project_id, cached, request, info, cache_key, project
                    )
            except _TooMany as busy:
                return self._denied(query_id, actor, project_id, request, [busy.reason], info)
            except BudgetExhaustedError as exc:  # lost a race with a concurrent query
                return self._denied(query_id, actor, project_id, request, list(exc.reasons), info)
            except IntegrityError:
                # The ledger disagrees with the log's running totals: nothing is charged
                # until the operator has found why; the refusal is on the record too.
                self._audit("query.denied", actor=actor, project=project_id, request=request,
                            decision="denied", reasons=["ledger_mismatch"],
                            data_version=info.version)  # fmt: skip
                raise
            except UsageError:
                # The log refused the plan's text (a literal shaped like an identifier that
                # the parser let through): nothing was spent; the attempt is recorded, redacted.
                return self._denied(query_id, actor, project_id, request, [UNLOGGABLE], info)
        else:
            raise RateLimitedError(
                "the same question is being answered for someone else: ask again shortly",
                retry_after=5,
            )
        # From here on the ε is spent. Whatever a pupil's record holds must not change what
        # the caller gets: a release, or else one fixed internal error (incidents.log only).
        try:
            released = self._answer(plan, compiled, epsilon_micro)
        except Exception as exc:  # noqa: BLE001 - every failure after the debit is one incident
            raise self._fail(query_id, actor, project_id, request, info, exc) from None
        result = QueryResult(
            status=RELEASED,
            query_id=query_id,
            columns=released.columns,
            rows=released.rows,
            error=released.errors,
            epsilon_spent=to_float(epsilon_micro),
            project=project_id,
            epsilon=to_float(epsilon_micro),
            contribution_bound=released.bound,
            notes=released.notes,
            data_version=info.version,
        )
        stored = result.to_json()
        digest = _result_digest(stored)
        with self.control.transaction() as conn:
            q.finish_query(conn, query_id, q.RELEASED, stored)
            entry = self.control.record(
                conn,
                "query.released",
                actor=actor,
                project=project_id,
                request=request,
                decision="allowed",
                result_digest=digest,
                data_version=info.version,
            )
        result.audit_seq = entry.seq
        result.budget_remaining = self._remaining(project_id)
        return result

    def _accept(
        self, query_id, researcher, project_id, plan, epsilon_micro, info, cache_key, request
    ) -> None:
        """Debit, record the query and log ``query.accepted`` in one transaction, unless the
        same question is already in flight (:class:`_InFlight`) or the researcher has too
        many queries running (:class:`_TooMany`); either way nothing is then written."""
        since = datetime.now(UTC) - ABANDONED_AFTER
        with self.control.transaction() as conn:
            # The debit takes the ledger's lock first: the checks below see every query
            # accepted before this one, in any process (and a refusal rolls the debit back).
            debit(
                conn,
                project_id,
                epsilon_micro,
                query_id,
                dataset_cap_micro=self.policy.epsilon.dataset_cap,
            )
            if (released := q.cached_result(conn, cache_key)) is not None:
                raise _Released(released)
            if (other := q.in_flight(conn, cache_key, since)) is not None:
                raise _InFlight(other)
            limit = self.policy.limits.concurrent_queries_per_researcher
            if (busy := q.running(conn, researcher.id, since)) >= limit:
                raise _TooMany(reason("too_many_queries", researcher=researcher.id,
                                      running=busy, limit=limit))  # fmt: skip
            q.insert_query(
                conn,
                query_id=query_id,
                researcher=researcher.id,
                project=project_id,
                cache_key=cache_key,
                plan_digest=plan.digest(),
                epsilon_micro=epsilon_micro,
                data_version=info.version,
            )
            self.control.record(
                conn,
                "query.accepted",
                actor=f"researcher:{researcher.id}",
                project=project_id,
                request={**request, "normalised": plan.normalised()},
                decision="allowed",
                epsilon_micro=epsilon_micro,
                data_version=info.version,
            )

    def _wait_for(self, researcher_id: str, query_id: str) -> bool:
        """Wait for ``query_id`` unless this researcher already has as many requests
        waiting in this process as their cap of running queries (then False)."""
        limit = self.policy.limits.concurrent_queries_per_researcher
        with self._waiting_lock:
            if self._waiting[researcher_id] >= limit:
                return False
            self._waiting[researcher_id] += 1
        try:
            self._await(query_id)
        finally:
            with self._waiting_lock:
                self._waiting[researcher_id] -= 1
        return True

    def _await(self, query_id: str, timeout: float = IN_FLIGHT_WAIT) -> None:
        """Wait until query ``query_id`` is released or has failed (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.control.reader() as conn:
                if q.status_of(conn, query_id) != q.ACCEPTED:
                    return
            time.sleep(0.02)

    def _too_costly(self, plan: QueryPlan, compiled: CompiledQuery, info: DataInfo):
        """``query_too_costly`` if cells × aggregates × rows is over the policy's limit.

        Rows is the public bound on what the query may read, the declared number of pupils
        times the rows one pupil may contribute (never a count taken from the data), so
        whether a query is refused depends on its text and the policy only."""
        cost = max(plan.n_cells, 1) * len(plan.aggregates) * info.pupils * compiled.bound.rows
        limit = self.policy.limits.max_query_cost
        if cost <= limit:
            return None
        return reason("query_too_costly", cost=f"{cost:.3g}", limit=f"{limit:.3g}")

    def _require_running(self) -> None:
        """Fresh queries stop (503) after the data could not be read for a paid-for query,
        until the operator has looked (``safesetting admin resume``)."""
        halted = halted_by(self.control.home)
        if halted is not None:
            raise UnavailableError(
                f"fresh queries are stopped since incident {halted}: the data could not be "
                "read; the operator must check it and run `safesetting admin resume` "
                "(cached answers and dry runs still work)"
            )

    def _prepare(self, plan, epsilon_micro, actor, project_id, request, info) -> CompiledQuery:
        """Compile the plan and calibrate every measurement (data-independent): an ε too
        small to give each measurement a share is unusable input, audited, nothing spent."""
        compiled = compile_plan(plan, min_year=self.min_year(), salt=plan.digest())
        try:
            expected_errors(plan, compiled, epsilon_micro)
        except UsageError as exc:
            raise self._invalid(
                "epsilon_too_small", exc, actor, project_id, request, info
            ) from None
        return compiled

    def _invalid(self, code, exc, actor, project_id, request, info) -> UsageError:
        """Audit unusable input as ``query.invalid`` (the SQL's digest, never its text) and
        return the error to raise: every access is on the record."""
        self._audit(
            "query.invalid",
            actor=actor,
            project=project_id,
            request=request,
            decision="invalid",
            reasons=[code],
            data_version=info.version,
        )
        return UsageError(exc.message)

    def _answer(self, plan: QueryPlan, compiled: CompiledQuery, epsilon_micro: int):
        """Build the sandbox, run the engine's SQL, add the noise: the true rows end here."""
        with self.control.reader() as conn:
            optouts = optout_upns(conn)
        try:  # reading the data file: a failure here stops fresh queries (see _fail)
            if self.shared_sandbox:
                box = shared_sandbox(self.control.home.database)
            else:
                box = Sandbox(
                    self.control.home.database,
                    needed_columns(plan),
                    optouts,
                    row_filters=compiled.pushdown,
                )
        except UNREADABLE as exc:  # the file, not the query: see _fail
            raise DataUnreadableError(type(exc).__name__) from exc
        if self.shared_sandbox:
            true_rows = box.run(compiled.sql, optout_upns=optouts)
        else:
            try:
                true_rows = box.run(compiled.sql)
            finally:
                box.close()
        return release(plan, compiled, true_rows, epsilon_micro, self.policy.min_cell_count)

    def _check(
        self,
        researcher,
        project: Project | None,
        project_id: str,
        parsed: QueryPlan | Refusal,
        epsilon_micro: int,
    ) -> list[Reason]:
        """Every reason to refuse: the query's shape and the policy's decision together."""
        reasons: list[Reason] = list(parsed.reasons) if isinstance(parsed, Refusal) else []
        if project is None:
            # Someone else's project looks exactly like an unknown one: nothing about it
            # (its tables, its budget, whether it exists) depends on its approval.
            reasons.append(reason("not_a_member", researcher=researcher.id, project=project_id))
            return reasons
        with self.control.reader() as conn:
            spent, overall = project_spent(conn, project_id), dataset_spent(conn)
        plan = parsed if isinstance(parsed, QueryPlan) else None
        facts = Facts(
            policy=self.policy,
            researcher=researcher.facts(),
            project=project.facts(),
            columns=column_uses(plan.usage, plan.fine) if plan else (),
            epsilon_micro=epsilon_micro,
            project_spent_micro=spent,
            dataset_spent_micro=overall,
            today=self.control.today(),
            tables=frozenset(plan.tables) if plan else frozenset(),
        )
        decision = decide(facts)
        reasons += [r for r in decision.reasons if r not in reasons]
        return reasons

    def _cache_key(
        self,
        conn: sa.Connection,
        plan: QueryPlan,
        epsilon_micro: int,
        info: DataInfo,
        project_id: str,
    ) -> str:
        """Same project, normalised plan, ε, data, opt-outs and policy → the same released
        answer. Projects share releases only where the policy says so
        (``[releases] share_across_projects``)."""
        optouts = hashlib.sha256("\n".join(sorted(optout_upns(conn))).encode()).hexdigest()
        scope = "" if self.policy.releases.share_across_projects else project_id
        parts = [plan.normalised(), str(epsilon_micro), info.version, optouts,
                 self.control.policy_digest, str(self.min_year()), scope]  # fmt: skip
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def _denied(
        self,
        query_id: str,
        actor: str,
        project: str | None,
        request: dict[str, Any],
        reasons: list[Reason],
        info: DataInfo,
    ) -> QueryResult:
        """Audit a refusal (codes only, never the SQL text) and return it as a result.

        ``project`` is None when the caller is not a member: the entry then names no
        project (the request does) and the result shows no budget."""
        seq = self._audit(
            "query.denied",
            actor=actor,
            project=project,
            request=request,
            decision="denied",
            reasons=[r.code for r in reasons],
            data_version=info.version,
        )
        return QueryResult(
            status=DENIED,
            query_id=query_id,
            reasons=reasons,
            project=project if project is not None else request.get("project"),
            audit_seq=seq,
            budget_remaining=self._remaining(project) if project is not None else None,
        )

    def _dry_run(self, query_id, actor, project_id, plan, compiled, epsilon_micro, info, request):
        expected = expected_errors(plan, compiled, epsilon_micro)
        seq = self._audit(
            "query.dry_run",
            actor=actor,
            project=project_id,
            request=request,
            decision="allowed",
            data_version=info.version,
        )
        return QueryResult(
            status=DRY_RUN,
            query_id=query_id,
            columns=plan.labels,
            project=project_id,
            epsilon=to_float(epsilon_micro),
            contribution_bound=compiled.bound.rows,
            audit_seq=seq,
            budget_remaining=self._remaining(project_id),
            expected=[
                {
                    "label": e.label,
                    "mechanism": e.mechanism,
                    "scale": e.scale,
                    "half_width": e.half_width,
                }
                for e in expected
            ],
            notes=[f"would cost ε = {format_epsilon(epsilon_micro)}; nothing was spent"],
            data_version=info.version,
        )

    def _cached(self, query_id, actor, project_id, cached, request, info, cache_key, project):
        # One transaction: the entry, its signed checkpoint and the budget left (unchanged
        # by a cache hit) — a hit is the hot path of a busy server.
        with self.control.transaction() as conn:
            seq = self.control.record(
                conn,
                "query.cached",
                actor=actor,
                project=project_id,
                request={**request, "cached_query_id": cached["query_id"]},
                decision="allowed",
                result_digest=_result_digest(cached),
                data_version=info.version,
            ).seq
            left = max(project.budget_micro - project_spent(conn, project_id), 0)
        result = QueryResult.from_json(cached)
        result.status = CACHED
        result.query_id = query_id
        result.epsilon_spent = 0.0
        result.project = project_id
        result.audit_seq = seq
        result.budget_remaining = to_float(left)
        first = (
            f"first released as query {cached['query_id']}"
            if cached.get("project") == project_id
            else "first released to another project"  # whose query is not named
        )
        result.notes = [*result.notes, f"answered from the cache ({first})"]
        return result

    def _fail(self, query_id, actor, project_id, request, info, exc) -> IncidentError:
        """Record a failure after the debit: the cause in the operator's incident log, the
        audit entry ``query.failed``; return the one error the caller sees."""
        incident = uuid.uuid4().hex[:12]
        path = record_incident(self.control.home.root, incident, f"query {query_id}", exc)
        log.warning("query %s failed: incident %s (details in %s)", query_id, incident, path)
        if isinstance(exc, DataUnreadableError):
            # The data could not be read after a debit: every fresh query would pay for the
            # same failure. Stop them (503) until the operator has looked.
            halt(self.control.home, incident)
            log.error("fresh queries stopped: incident %s; see %s", incident, path)
        with self.control.transaction() as conn:
            q.finish_query(conn, query_id, q.FAILED, None)
            self.control.record(
                conn,
                "query.failed",
                actor=actor,
                project=project_id,
                request={**request, "incident": incident},
                decision="failed",
                reasons=["internal"],
                data_version=info.version,
            )
            if isinstance(exc, DataUnreadableError):
                self.control.record(
                    conn,
                    "service.halted",
                    actor="service",
                    request={"incident": incident, "reason": "the data could not be read"},
                    decision="failed",
                    reasons=["internal"],
                )
        return IncidentError(incident)

    def _remaining(self, project_id: str) -> float | None:
        with self.control.reader() as conn:
            try:
                project = get_project(conn, project_id)
            except NotFoundError:
                return None
            return to_float(max(project.budget_micro - project_spent(conn, project_id), 0))

    # -- reading a result again --------------------------------------------------------------
    def get_result(self, token: str | None, query_id: str) -> QueryResult:
        """A released result, again, for the researcher who asked it (no new cost);
        auditors and admins may read any."""
        researcher = self._authenticate(token, "", ("researcher", "auditor", "admin"))
        member = researcher.id if researcher.role == "researcher" else None
        with self.control.reader() as conn:
            try:
                row = q.get_query(conn, query_id, member=member)
            except NotFoundError:
                raise NotFoundError(f"no query {query_id} of yours") from None
        if row.status != q.RELEASED or not row.result:
            raise StateError(f"query {query_id} has no released result ({row.status})")
        return QueryResult.from_json(json.loads(row.result))


def _result_digest(result: dict[str, Any]) -> str:
    body = {k: result.get(k) for k in ("columns", "rows", "error", "epsilon")}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def is_budget_denial(result: QueryResult) -> bool:
    """A denial only for budget reasons (HTTP 409 rather than 403)."""
    return bool(result.reasons) and all(r.code in BUDGET_CODES for r in result.reasons)
