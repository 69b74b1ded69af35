"""Subject access: which released answers could have included one pupil's record.

For a parent (through the operator, who verifies who they are), given the pupil's UPN: every
released query is re-evaluated for that pupil alone. The plan document logged with the query
(the ``query.accepted`` audit entry's ``normalised``: tables, joins, filters, group keys) is
turned into a count of the same question, rebuilt by the parser (``QueryPlan.from_doc``),
compiled by the engine session with the retention year the query ran under, and run on the
data plane reading *only that pupil's rows*. The pupil could have been included when the
compiled filters keep one of their rows in a released group and they had not opted out
before the query ran.

Nothing here reads another pupil's record or any released value; the output says only
whether each query could have used the record. The request is audited as
``subject.access`` with a count, never the UPN.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

import audit
from safesetting.control import Control
from safesetting.engine.parse import Catalogue
from safesetting.engine.plan import QueryPlan
from safesetting.errors import UsageError
from safesetting.service import engine_session
from safesetting.store import queries as q
from safesetting.store import tables as t
from safesetting.store.registry import utc
from safesetting.validation import check_upn


@dataclass(frozen=True)
class QueryInclusion:
    """One released query and whether it could have used the pupil's record."""

    query_id: str
    project: str
    released_on: str
    tables: list[str]
    included: bool | None  # None: the logged plan could not be re-evaluated
    why: str
    data_changed: bool
    served_from_cache: int


@dataclass(frozen=True)
class SubjectAccess:
    """The answer to a subject-access request (no released value, no other pupil)."""

    found: bool
    data_version: str
    opted_out_on: str | None
    queries: list[QueryInclusion] = field(default_factory=list)
    audit_seq: int | None = None

    @property
    def included(self) -> list[QueryInclusion]:
        return [x for x in self.queries if x.included]

    def to_json(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "data_version": self.data_version,
            "opted_out_on": self.opted_out_on,
            "released_queries": len(self.queries),
            "could_have_included": len(self.included),
            "queries": [asdict(x) for x in self.queries],
            "audit_seq": self.audit_seq,
        }


COUNT_DOC = {"func": "count", "arg": None, "lower": 0.0, "upper": 1.0, "resolution": 1.0,
             "quantile": None}  # fmt: skip


def count_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A logged plan document as ``SELECT keys, COUNT(*)``: same tables, joins, filters.

    >>> doc = {"v": 2, "from": [{"table": "census"}], "where": None,
    ...        "keys": ["census.region"], "aggs": [], "out": ["key:0"]}
    >>> count_doc(dict(doc, aggs=[dict(COUNT_DOC, func="sum")]))["out"]
    ['key:0', 'agg:0']
    """
    keys = [f"key:{i}" for i in range(len(doc.get("keys", [])))]
    return {**doc, "aggs": [COUNT_DOC], "out": [*keys, "agg:0"]}


def _accepted_plans(conn: sa.Connection) -> tuple[dict[str, str], Counter[str]]:
    """query_id → logged normalised plan; and how often each was served from the cache."""
    plans: dict[str, str] = {}
    cached: Counter[str] = Counter()
    for entry in audit.read_entries(conn, action="query.*"):
        req = entry.request or {}
        if entry.action == "query.accepted" and isinstance(req.get("normalised"), str):
            plans[str(req.get("query_id"))] = req["normalised"]
        elif entry.action == "query.cached" and req.get("cached_query_id"):
            cached[str(req["cached_query_id"])] += 1
    return plans, cached


def _replan(normalised: str | None, catalogue: Catalogue) -> QueryPlan | None:
    """The logged plan as a validated count plan, or None if it cannot be rebuilt (a log
    entry from an older plan format, say): that query is then reported as unknown."""
    if normalised is None:
        return None
    try:
        return QueryPlan.from_doc(count_doc(json.loads(normalised)), catalogue)
    except (UsageError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def subject_access(control: Control, upn: str) -> SubjectAccess:
    """Which released queries could have included the pupil with ``upn`` (audited)."""
    upn = check_upn(upn)
    session = engine_session(control)
    info = session.info
    retention = control.policy.retention_years
    with control.engine.connect() as conn:
        plans, cached = _accepted_plans(conn)
        released = conn.execute(
            sa.select(t.queries)
            .where(t.queries.c.status == q.RELEASED)
            .order_by(t.queries.c.created_at)
        ).all()
        optout_at = utc(
            conn.execute(sa.select(t.optouts.c.added_at).where(t.optouts.c.upn == upn)).scalar()
        )
    pupil = session.pupil_id(upn)
    results: list[QueryInclusion] = []
    for row in released if pupil is not None else []:
        created = utc(row.created_at)
        assert created is not None
        parsed = _replan(plans.get(row.id), session.catalogue)
        tables = list(parsed.tables) if parsed is not None else []
        if parsed is None:
            included, why = None, "the logged plan could not be re-checked"
        elif optout_at is not None and optout_at <= created:
            included, why = False, "opted out before the query ran"
        elif session.includes(session.prepare_plan(parsed, created.year - retention), pupil):
            included, why = True, "the record meets the filters"
        else:
            included, why = False, "the record is outside the filters"
        results.append(
            QueryInclusion(
                query_id=row.id,
                project=row.project_id,
                released_on=created.date().isoformat(),
                tables=tables,
                included=included,
                why=why,
                data_changed=row.data_version != info.version,
                served_from_cache=cached.get(row.id, 0),
            )
        )
    answer = SubjectAccess(
        found=pupil is not None,
        data_version=info.version,
        opted_out_on=optout_at.date().isoformat() if optout_at else None,
        queries=results,
    )
    with control.transaction() as conn:
        entry = control.record(
            conn,
            "subject.access",
            decision="answered" if pupil is not None else "not_found",
            request={"count": len(answer.included), "reason": "subject access request"},
            data_version=info.version,
        )
    return SubjectAccess(**{**answer.__dict__, "audit_seq": entry.seq})
