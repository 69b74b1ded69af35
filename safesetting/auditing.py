"""The one place the service writes to the audit log (``audit``).

Every admin change and every access goes through :func:`record`, inside the caller's
transaction, so the change and its entry commit together or not at all;
:func:`sign_checkpoint` signs the new tree head with the home's key in the same transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

import audit
from safesetting.errors import StateError, UsageError


def ensure_schema(engine: sa.Engine) -> None:
    """Create the audit tables and their append-only triggers (idempotent)."""
    audit.create_schema(engine)


def record(conn: sa.Connection, *, actor: str, action: str, **fields: Any) -> audit.AuditEntry:
    """Append one audit entry in ``conn``'s transaction and return it.

    ``fields`` are those of :func:`audit.append_entry` (project, request, decision, reasons,
    epsilon_micro, result_digest, data_version, policy_digest). Content the log refuses
    (something shaped like a UPN or postcode in a title, say) is unusable input:
    :class:`UsageError`, and the caller's transaction rolls back.
    """
    try:
        return audit.append_entry(conn, actor=actor, action=action, **fields)
    except audit.ForbiddenContentError as exc:
        raise UsageError(f"refused: the audit log may not record this ({exc})") from None


def sign_checkpoint(
    bind: sa.Engine | sa.Connection, key_path: Path, key: audit.SigningKey | None = None
) -> audit.Checkpoint:
    """Sign the tree head: after a commit (an engine), or inside the transaction that
    appended (a connection), so the entries and their checkpoint commit together."""
    try:
        return audit.sign_checkpoint(bind, key or audit.load_or_create_key(key_path))
    except audit.CheckpointError as exc:
        raise StateError(f"cannot sign the audit checkpoint: {exc}") from None
