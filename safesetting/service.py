"""One request's orchestration, one call per step of the privacy story: authenticate →
prepare (the engine session) → decide → cache → debit + audit → answer (the session) →
release + audit. The CLI and the server both call this.

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
import weakref
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from policies.decide import Facts, column_uses, decide
from policies.epsilon import format_epsilon, to_float, to_micro
from policies.reasons import reason
from safesetting.caller import RESEARCHERS, Caller, Role, login
from safesetting.control import Control
from safesetting.engine.plan import Refusal
from safesetting.engine.session import (
    DataInfo,
    Estimate,
    Optouts,
    Prepared,
    Rules,
    Session,
    check_data,
    data_info,
)
from safesetting.engine.snapshot import DataUnavailableError
from safesetting.errors import (
    BudgetExhaustedError,
    IncidentError,
    IntegrityError,
    NotFoundError,
    RateLimitedError,
    Reason,
    SafeSettingError,
    StateError,
    UnavailableError,
    UsageError,
)
from safesetting.incidents import record_incident
from safesetting.results import CACHED, DENIED, DRY_RUN, RELEASED, QueryResult
from safesetting.store import dataset_spent, debit, get_project, project_spent
from safesetting.store import queries as q
from safesetting.store.registry import Project, member_project, optout_upns

log = logging.getLogger("safesetting.service")
BUDGET_CODES = frozenset({"budget_exhausted", "dataset_cap_reached"})
UNLOGGABLE = Reason(
    "direct_identifier",
    "the query holds a value shaped like a UPN or a postcode; it cannot be used or recorded",
)


__all__ = ["DataInfo", "QueryService", "check_data", "data_info"]


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


class DataUnreadableError(Exception):
    """The data could not be opened or read for a query that was paid for."""


# id(control) -> (the control, its session); an entry goes when its control does.
_sessions: dict[int, tuple[weakref.ref[Control], Session]] = {}
_sessions_lock = threading.Lock()


def engine_session(control: Control) -> Session:
    """The engine session of this process for ``control``'s home: one per data file,
    opened on first use and again when the file is replaced (``data generate --force``).
    The service, the demo's truth and subject access all answer through it."""
    db = control.home.database
    info = check_data(db)  # a missing or damaged file is named here
    with _sessions_lock:
        for key in [k for k, (ref, _s) in _sessions.items() if ref() is None]:
            del _sessions[key]
        held = _sessions.get(id(control))
        session = held[1] if held is not None and held[0]() is control else None
        if session is None or session.version != info.version or session.db_mtime != _mtime(db):
            policy = control.policy
            rules = Rules(policy.min_cell_count, policy.retention_years, control.today)
            session = Session(db, rules)
            _sessions[id(control)] = (weakref.ref(control), session)
        return session


def current_optouts(control: Control) -> Optouts:
    """The opt-out register as a query would read it now."""
    with control.reader() as conn:
        return Optouts.of(optout_upns(conn))


def _mtime(path) -> int:  # noqa: ANN001 - a Path
    return path.stat().st_mtime_ns


class _InFlight(Exception):  # noqa: N818 - control flow, never leaves the service
    def __init__(self, query_id: str) -> None:
        self.query_id = query_id


class _Released(Exception):  # noqa: N818 - control flow, never leaves the service
    def __init__(self, cached: dict[str, Any]) -> None:
        self.cached = cached


class _TooMany(Exception):  # noqa: N818 - control flow, never leaves the service
    def __init__(self, refusal: Reason) -> None:
        self.reason = refusal


@dataclass(frozen=True)
class _State:
    """What a request read before it was decided (one read transaction): the project if
    the caller is a member, the ε it and the dataset have spent, and for a plan the
    opt-outs, the cache key they are part of and the answer cached under it."""

    project: Project | None
    spent: int = 0
    overall: int = 0
    optouts: Optouts | None = None
    cache_key: str | None = None
    cached: dict[str, Any] | None = None

    @property
    def left(self) -> float | None:
        """The project's budget left, as read (None for no project of the caller's)."""
        if self.project is None:
            return None
        return to_float(max(self.project.budget_micro - self.spent, 0))


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

    def __init__(self, control: Control) -> None:
        self.control = control
        self.policy = control.policy
        self._waiting: Counter[str] = Counter()  # requests waiting on an identical query
        self._waiting_lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------------------
    def _audit(self, action: str, **fields: Any) -> int:
        with self.control.transaction() as conn:
            return self.control.record(conn, action, **fields).seq

    def login(self, token: str | None, project: str | None = None) -> Caller:
        """A researcher's token → the ``Caller`` to pass to ``submit`` (the CLI's local
        mode; the server authenticates its own way). Failures are audited."""
        return login(self.control, token, RESEARCHERS, project=project)

    def session(self) -> Session:
        return engine_session(self.control)

    # -- the query path --------------------------------------------------------------------
    def submit(
        self,
        caller: Caller,
        sql: str,
        project_id: str,
        epsilon: object | None = None,
        dry_run: bool = False,
    ) -> QueryResult:
        """Run one query request end to end for an authenticated ``caller`` (a researcher);
        a refusal is a result, not an exception."""
        caller.require(RESEARCHERS)
        researcher, actor = caller.researcher, caller.actor
        session = self.session()
        info = session.info
        query_id = uuid.uuid4().hex[:20]
        sql_digest = hashlib.sha256(sql.encode()).hexdigest()
        request: dict[str, Any] = {"query_id": query_id, "sql_sha256": sql_digest}
        problem: tuple[str, UsageError] | None = None
        epsilon_micro, prepared = 0, None
        try:
            epsilon_micro = (
                parse_epsilon_text(epsilon) if epsilon is not None
                else self.policy.epsilon.default_per_query
            )  # fmt: skip
        except UsageError as exc:
            problem = ("epsilon_invalid", exc)
        if problem is None:
            try:
                prepared = session.prepare(sql)  # no data read: the plan and its compiled SQL
            except UsageError as exc:
                problem = ("syntax_error", exc)
        # ONE read, one snapshot: membership, what is spent, the opt-outs and the cache.
        with self.control.reader() as conn:
            state = self._read(conn, researcher.id, project_id, prepared, epsilon_micro, info)
        project = state.project
        if project is None:
            # Not the caller's project (or none): the attempt is on the record, in the
            # request, but not on that project's entries, which the public page counts.
            request["project"] = project_id
            logged: str | None = None
        else:
            logged = project_id
        if problem is not None:
            raise self._invalid(*problem, actor, logged, request, info) from None
        if prepared is None:  # pragma: no cover - prepare returned or raised above
            raise SafeSettingError("no plan and no reason")
        reasons = self._check(researcher, state, project_id, prepared, epsilon_micro)
        if isinstance(prepared, Prepared):
            request.update(plan_sha256=prepared.plan.digest(), tables=list(prepared.plan.tables))
        if reasons:
            return self._denied(query_id, actor, logged, request, reasons, info, state.left)
        if not isinstance(prepared, Prepared) or project is None:  # refusals carry reasons
            raise SafeSettingError("a refused query reached the release path")
        if dry_run:
            estimate = self._estimate(prepared, epsilon_micro, actor, project_id, request, info)
            if costly := self._too_costly(estimate):
                return self._denied(
                    query_id, actor, project_id, request, [costly], info, state.left
                )
            return self._dry_run(
                query_id, actor, project_id, prepared, estimate, info, request, state.left
            )
        optouts, cache_key = state.optouts, state.cache_key
        if optouts is None or cache_key is None:  # pragma: no cover - read for every plan
            raise SafeSettingError("the opt-outs were not read")
        if state.cached is not None:
            return self._cached(
                query_id, actor, project_id, state.cached, request, info, cache_key, project
            )
        estimate = self._estimate(prepared, epsilon_micro, actor, project_id, request, info)
        if costly := self._too_costly(estimate):
            return self._denied(query_id, actor, project_id, request, [costly], info, state.left)
        self._require_running()
        try:  # the snapshot is published and opened before anything is charged
            session.plane()
        except DataUnavailableError as exc:
            raise StateError(exc.message) from None
        # ONE transaction: the debit, the query row and the audit entry, before any data is read.
        for _attempt in range(3):
            try:
                self._accept(query_id, researcher, project_id, prepared, epsilon_micro, info,
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
                    return self._denied(
                        query_id,
                        actor,
                        project_id,
                        request,
                        [busy],
                        info,
                        self._remaining(project_id),
                    )
                with self.control.reader() as conn:
                    cached = q.cached_result(conn, cache_key)
                if cached is not None:
                    return self._cached(
                        query_id, actor, project_id, cached, request, info, cache_key, project
                    )
            except _TooMany as busy:
                return self._denied(
                    query_id,
                    actor,
                    project_id,
                    request,
                    [busy.reason],
                    info,
                    self._remaining(project_id),
                )
            except BudgetExhaustedError as exc:  # lost a race with a concurrent query
                return self._denied(
                    query_id,
                    actor,
                    project_id,
                    request,
                    list(exc.reasons),
                    info,
                    self._remaining(project_id),
                )
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
                return self._denied(
                    query_id,
                    actor,
                    project_id,
                    request,
                    [UNLOGGABLE],
                    info,
                    self._remaining(project_id),
                )
        else:
            raise RateLimitedError(
                "the same question is being answered for someone else: ask again shortly",
                retry_after=5,
            )
        # From here on the ε is spent. Whatever a pupil's record holds must not change what
        # the caller gets: a release, or else one fixed internal error (incidents.log only).
        try:
            released = self._answer(session, prepared, epsilon_micro, optouts)
        except Exception as exc:  # noqa: BLE001 - every failure after the debit is one incident
            raise self._fail(query_id, actor, project_id, request, info, exc) from None
        result = QueryResult(
            status=RELEASED,
            query_id=query_id,
            columns=released.columns,
            column_kinds=released.kinds,
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
            left = max(project.budget_micro - project_spent(conn, project_id), 0)
        result.audit_seq = entry.seq
        result.budget_remaining = to_float(left)
        return result

    def _read(
        self,
        conn: Any,
        researcher_id: str,
        project_id: str,
        prepared: Prepared | Refusal | None,
        epsilon_micro: int,
        info: DataInfo,
    ) -> _State:
        """Everything a request reads before it is decided, in one read transaction:
        membership, the ε spent, and for a plan the opt-outs and, keyed by them, the cache."""
        project = member_project(conn, project_id, researcher_id)
        if project is None:
            return _State(None)
        spent, overall = project_spent(conn, project_id), dataset_spent(conn)
        if not isinstance(prepared, Prepared):
            return _State(project, spent, overall)
        optouts = Optouts.of(optout_upns(conn))  # read once, with the cache key they are in
        key = self._cache_key(prepared, epsilon_micro, info, project_id, optouts)
        return _State(project, spent, overall, optouts, key, q.cached_result(conn, key))

    def _accept(
        self, query_id, researcher, project_id, prepared, epsilon_micro, info, cache_key, request
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
                plan_digest=prepared.plan.digest(),
                epsilon_micro=epsilon_micro,
                data_version=info.version,
            )
            self.control.record(
                conn,
                "query.accepted",
                actor=f"researcher:{researcher.id}",
                project=project_id,
                request={**request, "normalised": prepared.plan.normalised()},
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

    def _too_costly(self, estimate: Estimate) -> Reason | None:
        """``query_too_costly`` if cells × aggregates × rows is over the policy's limit.

        Rows is the public bound on what the query may read, the declared number of pupils
        times the rows one pupil may contribute (never a count taken from the data), so
        whether a query is refused depends on its text and the policy only."""
        limit = self.policy.limits.max_query_cost
        if estimate.cost <= limit:
            return None
        return reason("query_too_costly", cost=f"{estimate.cost:.3g}", limit=f"{limit:.3g}")

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

    def _estimate(self, prepared, epsilon_micro, actor, project_id, request, info) -> Estimate:
        """Calibrate every measurement (data-independent): an ε too small to give each
        measurement a share is unusable input, audited, nothing spent."""
        try:
            return self.session().estimate(prepared, epsilon_micro)
        except UsageError as exc:
            raise self._invalid(
                "epsilon_too_small", exc, actor, project_id, request, info
            ) from None

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

    def _answer(self, session: Session, prepared: Prepared, epsilon_micro: int, optouts: Optouts):
        """The session answers: the true rows end inside it."""
        try:
            return session.answer(prepared, epsilon_micro, optouts)
        except DataUnavailableError as exc:  # the data, not the query: see _fail
            raise DataUnreadableError(type(exc).__name__) from exc

    def _check(
        self,
        researcher,
        state: _State,
        project_id: str,
        parsed: Prepared | Refusal,
        epsilon_micro: int,
    ) -> list[Reason]:
        """Every reason to refuse: the query's shape and the policy's decision together."""
        reasons: list[Reason] = list(parsed.reasons) if isinstance(parsed, Refusal) else []
        project = state.project
        if project is None:
            # Someone else's project looks exactly like an unknown one: nothing about it
            # (its tables, its budget, whether it exists) depends on its approval.
            reasons.append(reason("not_a_member", researcher=researcher.id, project=project_id))
            return reasons
        plan = parsed.plan if isinstance(parsed, Prepared) else None
        # A refusal reports the columns it saw too: the policy's reasons come with the shape's.
        seen = plan if plan is not None else parsed
        facts = Facts(
            policy=self.policy,
            researcher=researcher.facts(),
            project=project.facts(),
            columns=column_uses(seen.usage, seen.fine),
            epsilon_micro=epsilon_micro,
            project_spent_micro=state.spent,
            dataset_spent_micro=state.overall,
            today=self.control.today(),
            tables=frozenset(plan.tables) if plan else frozenset(),
        )
        decision = decide(facts)
        reasons += [r for r in decision.reasons if r not in reasons]
        return reasons

    def _cache_key(
        self,
        prepared: Prepared,
        epsilon_micro: int,
        info: DataInfo,
        project_id: str,
        optouts: Optouts,
    ) -> str:
        """Same project, plan, ε, data, opt-outs, policy and retention year → the same
        released answer. Projects share releases only where the policy says so
        (``[releases] share_across_projects``)."""
        scope = "" if self.policy.releases.share_across_projects else project_id
        parts = [prepared.plan.normalised(), str(epsilon_micro), info.version, optouts.digest,
                 self.control.policy_digest, str(prepared.min_year), scope]  # fmt: skip
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def _denied(
        self,
        query_id: str,
        actor: str,
        project: str | None,
        request: dict[str, Any],
        reasons: list[Reason],
        info: DataInfo,
        left: float | None,
    ) -> QueryResult:
        """Audit a refusal (codes only, never the SQL text) and return it as a result, with
        the budget ``left`` as read before deciding (a refusal spends nothing).

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
            budget_remaining=left if project is not None else None,
        )

    def _dry_run(self, query_id, actor, project_id, prepared, estimate, info, request, left):
        epsilon_micro = estimate.epsilon_micro
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
            columns=prepared.labels,
            column_kinds=["key" if k == "key" else "aggregate" for k, _j in prepared.plan.output],
            project=project_id,
            epsilon=to_float(epsilon_micro),
            contribution_bound=estimate.bound,
            audit_seq=seq,
            budget_remaining=left,
            expected=[
                {
                    "label": e.label,
                    "mechanism": e.mechanism,
                    "scale": e.scale,
                    "half_width": e.half_width,
                }
                for e in estimate.expected
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
    def get_result(self, caller: Caller, query_id: str) -> QueryResult:
        """A released result, again, for the researcher who asked it (no new cost);
        auditors and admins may read any."""
        member = caller.id if caller.role is Role.RESEARCHER else None
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
