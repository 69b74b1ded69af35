"""What a query returns: the one shape the CLI prints, the server sends and the cache keeps.

Only released (noisy) values ever appear here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from safesetting.errors import Reason

RELEASED, CACHED, DENIED, DRY_RUN = "released", "cached", "denied", "dry_run"


@dataclass
class QueryResult:
    """DESIGN.md §8: ``status``, ``query_id``, ``reasons``, ``columns``, ``rows``, ``error``,
    ``epsilon_spent``, ``budget_remaining``, ``audit_seq`` (plus a few helpful extras)."""

    status: str
    query_id: str
    reasons: list[Reason] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    error: list[list[float | None]] = field(default_factory=list)
    epsilon_spent: float = 0.0
    budget_remaining: float | None = None
    audit_seq: int | None = None
    project: str | None = None
    epsilon: float | None = None  # the ε the released values were computed with
    contribution_bound: int | None = None
    notes: list[str] = field(default_factory=list)
    expected: list[dict[str, Any]] | None = None  # dry runs: per-aggregate expected error
    data_version: str | None = None
    # Per column, "key" (a group key: public, exact) or "aggregate" (noisy, with its error);
    # None for a refusal, and in results released before it was recorded.
    column_kinds: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.status in (RELEASED, CACHED, DRY_RUN)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "status": self.status,
            "query_id": self.query_id,
            "reasons": [r.to_json() for r in self.reasons],
            "columns": self.columns,
            "rows": self.rows,
            "error": self.error,
            "epsilon_spent": self.epsilon_spent,
            "budget_remaining": self.budget_remaining,
            "audit_seq": self.audit_seq,
            "project": self.project,
            "epsilon": self.epsilon,
            "contribution_bound": self.contribution_bound,
            "notes": self.notes,
            "data_version": self.data_version,
            "column_kinds": self.column_kinds,
        }
        if self.expected is not None:
            doc["expected"] = self.expected
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> QueryResult:
        reasons = [Reason(r["code"], r["message"]) for r in doc.get("reasons", [])]
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__ and k != "reasons"}
        return cls(reasons=reasons, **known)
