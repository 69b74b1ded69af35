"""The control store: registry, tokens, opt-outs and the budget ledger (SQLAlchemy Core).

Everything here works on a caller's ``sqlalchemy.Connection`` so that a change and its audit
entry commit in one transaction. ``migrate(engine)`` brings any home up to date.
"""

from safesetting.store.auth import authenticate, issue_token, revoke_tokens, token_digest
from safesetting.store.ledger import Debit, dataset_spent, debit, project_spent
from safesetting.store.migrations import LATEST, current_version, migrate
from safesetting.store.registry import Project, Researcher, get_project, optout_upns

__all__ = [
    "LATEST",
    "Debit",
    "Project",
    "Researcher",
    "authenticate",
    "current_version",
    "dataset_spent",
    "debit",
    "get_project",
    "issue_token",
    "migrate",
    "optout_upns",
    "project_spent",
    "revoke_tokens",
    "token_digest",
]
