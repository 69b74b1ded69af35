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
from audit.keys import note_at
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


def previous_key_path(key_path: Path) -> Path:
    """Where ``admin key rotate`` keeps the key it replaces until the rotation commits."""
    return key_path.with_name(key_path.name + ".prev")


def key_state(conn: sa.Connection) -> tuple[str | None, audit.KeyHistory]:
    """What the home's key is checked against: the latest checkpoint and the log's key
    rotations (``IntegrityError`` if a rotation entry is malformed)."""
    try:
        return audit.store.latest_note(conn), audit.read_history(conn)
    except audit.CheckpointError as exc:
        raise IntegrityError(f"the audit log's key history is unreadable ({exc}): run "
                             "`safesetting audit verify`") from None  # fmt: skip


def home_key(
    key_path: Path, latest_note: str | None, history: audit.KeyHistory | None = None
) -> audit.SigningKey:
    """The home's one signing key: never created here (only ``init_home`` creates one, for a
    log with no entries, and ``admin key rotate`` replaces it), and refused unless it is the
    key in force: the one the log's last key rotation (if any) put in force, which signed
    the log's latest checkpoint.

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
    problem = _not_in_force(key, latest_note, history)
    if problem is not None:
        raise IntegrityError(f"{key_path} {problem}{_interrupted(key_path, latest_note, history)}")
    return key


def _not_in_force(
    key: audit.SigningKey, latest_note: str | None, history: audit.KeyHistory | None
) -> str | None:
    """Why ``key`` may not sign this log next, or None."""
    rotation = history.rotations[-1] if history and history.rotations else None
    if rotation is not None and key.verifier != rotation.new:
        return (
            f"is not the key in force: the key rotation at audit entry {rotation.seq} "
            f"handed signing to key {rotation.new.key_id.hex()}: restore that key"
        )
    if latest_note is not None:
        try:
            audit.open_checkpoint(latest_note, key.verifier)
        except audit.CheckpointError:
            return (
                "is not the key that signed this log's latest checkpoint: restore the original key"
            )
    return None


def _interrupted(key_path: Path, latest_note: str | None, history: audit.KeyHistory | None) -> str:
    """A hint when ``admin key rotate`` died between installing its new key and committing
    the rotation: the key in force is then the one it set aside."""
    prev = previous_key_path(key_path)
    try:
        kept = audit.load_key(prev)
    except audit.KeyFileError:
        return ""
    if _not_in_force(kept, latest_note, history) is not None:
        return ""
    return f" (an interrupted `safesetting admin key rotate` left it in {prev}: move it back)"


def sign_checkpoint(
    bind: sa.Engine | sa.Connection,
    key: audit.SigningKey,
    cosigners: tuple[audit.SigningKey, ...] = (),
) -> audit.Checkpoint:
    """Sign the tree head: after a commit (an engine), or inside the transaction that
    appended (a connection), so the entries and their checkpoint commit together."""
    try:
        return audit.sign_checkpoint(bind, key, cosigners)
    except audit.CheckpointError as exc:
        raise StateError(f"cannot sign the audit checkpoint: {exc}") from None


def published_keys(conn: sa.Connection, current: audit.VerifierKey) -> dict[str, Any]:
    """Every key the log has been signed with, oldest first, with the tree sizes each signs
    (``from_size`` is where it took over) and, for each key a rotation introduced, that
    rotation's checkpoint (signed by the old key and the new): what ``/v1/audit/public-keys``
    and ``audit keys`` publish."""
    keys = []
    for period in key_state(conn)[1].periods(current):
        item = period.to_json()
        item["checkpoint"] = note_at(conn, period.rotation) if period.rotation is not None else None
        keys.append(item)
    return {"keys": keys}
