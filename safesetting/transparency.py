"""What the public may know about the safe setting: a pure data summary (no HTML, no I/O
beyond reading the control database and the public half of the key the control signs with).

Built from the registry, the ledger and the audit log. It names projects, organisations,
purposes, dates, the kinds of question asked and the privacy loss spent; it never holds a
released value, a researcher's SQL, a UPN or anything about a pupil. The server serves the
same dict as JSON (``GET /v1/transparency``) and the CLI renders it as HTML.

Keys shared with the server branch's summary (``projects[].id/title/org_type/purpose/status/
approved/expires/tables/budget_epsilon/epsilon_spent/queries``, ``queries``, ``dataset``,
``audit.entries``, ``audit.checkpoint``, ``policy_sha256``) mean the same here; the rest adds
what issue #7 asks for: organisations, question kinds, refusals, the public key.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import sqlalchemy as sa

import audit
from policies.epsilon import to_float
from safesetting.control import Control
from safesetting.engine.plan import DOC_VERSION
from safesetting.store import ledger, registry
from safesetting.store import tables as t

#: Audit actions counted as kinds of query, with the label the public sees.
QUERY_KINDS = {
    "query.released": "released",
    "query.cached": "cached",
    "query.denied": "denied",
    "query.dry_run": "dry_run",
    "query.invalid": "invalid",
    "query.failed": "failed",
}


def question_kind(normalised: str) -> tuple[list[str], list[str], list[str]]:
    """Tables, aggregate kinds and grouping columns of a logged plan document (an entry
    from an older plan format gives nothing).

    >>> question_kind('{"v":2,"from":[{"table":"census"},{"table":"ks2","on":[]}],'
    ...               '"aggs":[{"func":"avg"}],"keys":["census.region"]}')
    (['census', 'ks2'], ['avg'], ['census.region'])
    """
    doc = json.loads(normalised)
    if not isinstance(doc, dict) or doc.get("v") != DOC_VERSION:
        return [], [], []
    names = {n.get("as", n["table"]): n["table"] for n in doc["from"]}
    tables = list(dict.fromkeys(names.values()))
    aggs = [str(a["func"]) for a in doc.get("aggs", [])]
    keys = []
    for key in doc.get("keys", []):  # a key of a table joined again counts as its table's
        node, _dot, column = key.partition(".")
        keys.append(f"{names.get(node, node)}.{column}")
    return tables, aggs, keys


class _Usage:
    """What the log says one project did."""

    def __init__(self) -> None:
        self.queries: Counter[str] = Counter()
        self.tables: Counter[str] = Counter()
        self.aggregates: Counter[str] = Counter()
        self.grouped_by: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.first: str | None = None
        self.last: str | None = None

    def add(self, entry: audit.AuditEntry) -> None:
        req = entry.request or {}
        if entry.action == "query.accepted":
            if isinstance(req.get("normalised"), str):
                tables, aggs, keys = question_kind(req["normalised"])
                self.tables.update(tables)
                self.aggregates.update(aggs)
                self.grouped_by.update(keys)
            return
        kind = QUERY_KINDS.get(entry.action)
        if kind is None:
            return
        self.queries[kind] += 1
        self.first = self.first or entry.time
        self.last = entry.time
        if entry.action == "query.denied":
            self.tables.update(req.get("tables") or [])
            self.refusals.update(set(entry.reasons))  # each code once per query


def _checkpoint(note: str | None) -> dict[str, Any] | None:
    if note is None:
        return None
    origin, size, root = note.split("\n", 3)[:3]
    return {"origin": origin, "tree_size": int(size), "root_hash": root, "note": note}


class LogTally:
    """What the log says each project did, kept up to date by reading only the entries
    appended since the last call (a server keeps one, so the public page costs what the new
    entries cost, not the whole log)."""

    def __init__(self) -> None:
        self.usage: dict[str, _Usage] = {}
        self.refused: list[dict[str, Any]] = []
        self.seq = 0
        self.lock = threading.Lock()  # held while the tally is updated and read

    def update(self, conn: sa.Connection) -> None:
        """Read the entries appended since the last update (the caller holds ``lock``)."""
        for entry in audit.read_entries(conn, after_seq=self.seq):
            self.seq = entry.seq
            if entry.action == "project.refused":
                req = entry.request or {}
                self.refused.append(
                    {
                        "project": entry.project,
                        "org_type": req.get("org_type"),
                        "purpose": req.get("purpose"),
                        "date": entry.time[:10],
                        "reasons": list(dict.fromkeys(entry.reasons)),
                    }
                )
            elif entry.project is not None and entry.action.startswith("query."):
                self.usage.setdefault(entry.project, _Usage()).add(entry)


def transparency_summary(control: Control, tally: LogTally | None = None) -> dict[str, Any]:
    """Every project with access, what kinds of question it asked and how many, the ε each
    spent, the total privacy loss any one pupil has had, refused applications, and the
    latest signed checkpoint with its public key (so anyone can hold the log to it later).

    ``tally``: a :class:`LogTally` kept between calls (by the server); by default the whole
    log is read."""
    tally = tally or LogTally()
    zero = dict.fromkeys(QUERY_KINDS.values(), 0)
    with tally.lock, control.engine.connect() as conn:
        tally.update(conn)
        usage, refused = tally.usage, list(tally.refused)
        projects = []
        for p in registry.list_projects(conn):
            orgs = sorted({registry.get_researcher(conn, m).organisation for m in p.members})
            closed_at = conn.execute(
                sa.select(t.projects.c.closed_at).where(t.projects.c.id == p.id)
            ).scalar()
            u = usage.get(p.id, _Usage())
            projects.append(
                {
                    "id": p.id,
                    "title": p.title,
                    "organisations": orgs,
                    "researchers": len(p.members),
                    "org_type": p.org_type,
                    "purpose": p.purpose,
                    "status": p.status,
                    "approved": p.created_at.date().isoformat(),
                    "expires": p.expires.isoformat(),
                    "closed": closed_at.date().isoformat() if closed_at else None,
                    "tables": list(p.tables),
                    "special_columns": list(p.approved_columns),
                    "budget_epsilon": to_float(p.budget_micro),
                    "epsilon_spent": to_float(ledger.project_spent(conn, p.id)),
                    "queries": {**zero, **u.queries},
                    "first_query": u.first[:10] if u.first else None,
                    "last_query": u.last[:10] if u.last else None,
                    "tables_asked": dict(sorted(u.tables.items())),
                    "aggregate_kinds": dict(sorted(u.aggregates.items())),
                    "grouped_by": dict(sorted(u.grouped_by.items())),
                    "refusal_reasons": dict(sorted(u.refusals.items())),
                }
            )
        spent = ledger.dataset_spent(conn)
        optouts = len(registry.optout_upns(conn))
        size = audit.tree_head(conn).size
    totals = dict(zero)
    for u in usage.values():
        for kind, n in u.queries.items():
            totals[kind] += n
    return {
        "generated_at": control.now().isoformat(timespec="seconds"),
        "projects": projects,
        "queries": totals,
        "refused_applications": refused,
        "dataset": {
            "epsilon_spent": to_float(spent),
            "epsilon_cap": to_float(control.policy.epsilon.dataset_cap),
            "min_cell_count": control.policy.min_cell_count,
            "meaning": "the most privacy loss (ε) any single pupil has had from all research "
            "together: every answered question is charged here, whoever asked it",
        },
        "optouts": optouts,
        "audit": {
            "entries": size,
            "checkpoint": _checkpoint(audit.latest_checkpoint(control.engine)),
            "public_key": str(control.signing_key.verifier),  # the key in force
        },
        "policy_sha256": control.policy_digest,
    }


def audit_excerpt(control: Control, limit: int = 60) -> list[dict[str, Any]]:
    """For the demo report: the newest ``limit`` entries, oldest first (no request body
    beyond the reason codes and ε: the full entries are in the log itself)."""
    with control.engine.connect() as conn:
        entries = audit.read_entries(conn, limit=limit, newest_first=True)
    return [
        {
            "seq": e.seq,
            "time": e.time,
            "actor": e.actor,
            "action": e.action,
            "project": e.project,
            "decision": e.decision,
            "reasons": list(dict.fromkeys(e.reasons)),
            "epsilon": e.epsilon_micro / 1_000_000,
            "leaf_hash": e.leaf_hash.hex(),
        }
        for e in sorted(entries, key=lambda e: e.seq)
    ]
