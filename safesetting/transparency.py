"""What the public may know about the safe setting: a pure data summary (no HTML, no I/O
beyond reading the control database and the public half of the signing key).

Built from the registry, the ledger and the audit log. It names projects, organisations,
purposes, dates, the kinds of question asked and the privacy loss spent; it never holds a
released value, a researcher's SQL, a UPN or anything about a pupil. The server serves the
same dict as JSON (``GET /v1/transparency``) and the CLI renders it as HTML.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import sqlalchemy as sa

import audit
from policies.epsilon import to_float
from safesetting.control import Control
from safesetting.store import ledger, registry
from safesetting.store import tables as t

_AGG_FUNC = re.compile(r"^([a-z_]+)\(")
QUERY_ACTIONS = {
    "query.accepted": "answered",
    "query.cached": "answered_from_cache",
    "query.denied": "refused",
    "query.dry_run": "dry_runs",
    "query.invalid": "unusable",
    "query.failed": "failed",
}


def _question_kind(normalised: str) -> tuple[list[str], list[str], list[str]]:
    """Tables, aggregate kinds and grouping columns of a logged plan's normalised text."""
    plan = json.loads(normalised)
    tables = [plan["from"][0], *[j[0] for j in plan["from"][1:]]]
    aggs = [m.group(1) for a in plan.get("aggs", []) if (m := _AGG_FUNC.match(a))]
    return tables, aggs, list(plan.get("keys", []))


def _new_usage() -> dict[str, Any]:
    return {
        "counts": Counter(),
        "tables": Counter(),
        "aggregates": Counter(),
        "grouped_by": Counter(),
        "refusal_reasons": Counter(),
        "first": None,
        "last": None,
    }


def transparency_summary(control: Control) -> dict[str, Any]:
    """Every project with access, what kinds of question it asked, the ε each spent, the
    total privacy loss any one pupil has had, refused applications, and the latest signed
    checkpoint with its public key (so anyone can hold the log to it later)."""
    usage: dict[str, dict[str, Any]] = {}
    refused: list[dict[str, Any]] = []
    with control.engine.connect() as conn:
        for entry in audit.read_entries(conn):
            if entry.action == "project.refused":
                req = entry.request or {}
                refused.append(
                    {
                        "project": entry.project,
                        "org_type": req.get("org_type"),
                        "purpose": req.get("purpose"),
                        "date": entry.time[:10],
                        "reasons": list(entry.reasons),
                    }
                )
                continue
            kind = QUERY_ACTIONS.get(entry.action)
            if kind is None or entry.project is None:
                continue
            u = usage.setdefault(entry.project, _new_usage())
            u["counts"][kind] += 1
            u["first"] = u["first"] or entry.time
            u["last"] = entry.time
            req = entry.request or {}
            if entry.action == "query.accepted" and isinstance(req.get("normalised"), str):
                tables, aggs, keys = _question_kind(req["normalised"])
                u["tables"].update(tables)
                u["aggregates"].update(aggs)
                u["grouped_by"].update(keys)
            elif entry.action == "query.denied":
                u["tables"].update(req.get("tables") or [])
                u["refusal_reasons"].update(entry.reasons)
        projects = []
        for p in registry.list_projects(conn):
            orgs = sorted({registry.get_researcher(conn, m).organisation for m in p.members})
            closed_at = conn.execute(
                sa.select(t.projects.c.closed_at).where(t.projects.c.id == p.id)
            ).scalar()
            u = usage.get(p.id, _new_usage())
            projects.append(
                {
                    "id": p.id,
                    "title": p.title,
                    "organisations": orgs,
                    "researchers": len(p.members),
                    "org_type": p.org_type,
                    "purpose": p.purpose,
                    "tables_approved": list(p.tables),
                    "special_columns_approved": list(p.approved_columns),
                    "approved_on": p.created_at.date().isoformat(),
                    "expires": p.expires.isoformat(),
                    "status": p.status,
                    "closed_on": closed_at.date().isoformat() if closed_at else None,
                    "first_query": u["first"][:10] if u["first"] else None,
                    "last_query": u["last"][:10] if u["last"] else None,
                    "questions": {k: u["counts"].get(k, 0) for k in QUERY_ACTIONS.values()},
                    "tables_asked": dict(sorted(u["tables"].items())),
                    "aggregate_kinds": dict(sorted(u["aggregates"].items())),
                    "grouped_by": dict(sorted(u["grouped_by"].items())),
                    "refusal_reasons": dict(sorted(u["refusal_reasons"].items())),
                    "budget_epsilon": to_float(p.budget_micro),
                    "epsilon_spent": to_float(ledger.project_spent(conn, p.id)),
                }
            )
        dataset_spent = ledger.dataset_spent(conn)
        optouts = len(registry.optout_upns(conn))
        head = audit.tree_head(conn)
    key = control.home.signing_key
    public_key = str(audit.load_or_create_key(key).verifier) if key.exists() else None
    return {
        "generated_at": control.now().isoformat(timespec="seconds"),
        "policy_sha256": control.policy_digest,
        "projects": projects,
        "refused_applications": refused,
        "privacy_loss": {
            "dataset_epsilon_spent": to_float(dataset_spent),
            "dataset_epsilon_cap": to_float(control.policy.epsilon.dataset_cap),
            "meaning": "the most privacy loss (ε) any single pupil has had from all research "
            "together: every answered question is charged here, whoever asked it",
        },
        "optouts": optouts,
        "audit": {
            "tree_size": head.size,
            "checkpoint": audit.latest_checkpoint(control.engine),
            "public_key": public_key,
        },
    }
