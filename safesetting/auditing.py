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
from safesetting.errors import IntegrityError, StateError, UsageError


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


def home_key(key_path: Path, latest_note: str | None) -> audit.SigningKey:
    """The home's one signing key: never created here (only ``init_home`` creates one, for a
    log with no entries), and refused unless it signed the log's latest checkpoint.

    A key that regenerated itself would sign a second history nobody could check against the
    published one, so a missing or different key stops whatever needs it, naming the file.
    """
    if not key_path.exists():
        raise StateError(
            f"the audit signing key {key_path} is missing: restore it from a backup "
            "(a new key would make the published checkpoints unverifiable)"
        )
    try:
        key = audit.load_key(key_path)
    except audit.KeyFileError as exc:
        raise IntegrityError(f"cannot use the audit signing key: {exc}") from None
    if latest_note is not None:
        try:
            audit.open_checkpoint(latest_note, key.verifier)
        except audit.CheckpointError:
            raise IntegrityError(
                f"{key_path} is not the key that signed this log's latest checkpoint: "
                "restore the original key"
            ) from None
    return key


def sign_checkpoint(bind: sa.Engine | sa.Connection, key: audit.SigningKey) -> audit.Checkpoint:
    """Sign the tree head: after a commit (an engine), or inside the transaction that
    appended (a connection), so the entries and their checkpoint commit together."""
    try:
        return audit.sign_checkpoint(bind, key)
    except audit.CheckpointError as exc:
        raise StateError(f"cannot sign the audit checkpoint: {exc}") from None
