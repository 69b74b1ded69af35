"""``safesetting admin key rotate``: a new audit signing key, vouched for by the old one.

One write transaction, holding the log's write lock from start to commit:

1. the key in force is read and checked, as every command checks it (``auditing.home_key``);
2. a ``key.rotated`` entry records the old and the new verifier key (public keys only);
3. the checkpoint of the tree ending in that entry is signed by the old key, which vouches
   for a log naming its successor, and by the new key (one note, two signatures);
4. the old key file is hard-linked aside (``checkpoint.key.prev``), the new key is written
   to a temporary file (0600, fsynced) and ``os.replace``d over ``checkpoint.key``, and the
   folder is fsynced;
5. commit (on SQLite with ``synchronous=FULL``, so the rotation is on disk before the old
   key goes); then ``checkpoint.key.prev`` is removed.

The file changes before the commit and under the lock on purpose: every other process signs
inside its own write transaction, so one that signs after the rotation commits finds the key
file changed and reloads it (``Control.signing_key``) — no process goes on signing with the
old key, and a running server needs no restart. Anything that fails before the commit rolls
the transaction back and puts the old key file back: the home is as it was. A process killed
between step 4 and the commit leaves the old key in ``checkpoint.key.prev``; every command
then says so, naming the file to move back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import audit
from safesetting import auditing
from safesetting.control import Control
from safesetting.errors import IntegrityError, StateError


@dataclass(frozen=True)
class KeyRotation:
    """A committed rotation: its audit entry, both verifier keys and its checkpoint."""

    seq: int
    previous: audit.VerifierKey
    new: audit.VerifierKey
    checkpoint: str

    def to_json(self) -> dict[str, Any]:
        return {
            "audit_seq": self.seq,
            "tree_size": self.seq,
            "previous_public_key": str(self.previous),
            "public_key": str(self.new),
            "checkpoint": self.checkpoint,
        }


def rotate_key(control: Control) -> KeyRotation:
    """Replace the home's signing key; see the module docstring for the steps."""
    path = control.home.signing_key
    prev = auditing.previous_key_path(path)
    with _durable_connection(control.engine) as conn:
        trans = conn.begin()
        staged: Path | None = None
        installed = False
        try:
            conn.execute(
                sa.select(audit.store.head.c.tree_size)
                .where(audit.store.head.c.id == 1)
                .with_for_update()
            )  # the log's write lock (SQLite: BEGIN IMMEDIATE has it already)
            old = auditing.home_key(path, *auditing.key_state(conn))
            new = audit.SigningKey.generate(old.name)
            entry = control.record(
                conn,
                audit.ROTATED,
                request={"previous_public_key": str(old.verifier), "public_key": str(new.verifier)},
            )
            cp = auditing.sign_checkpoint(conn, old, (new,))
            try:
                audit.open_checkpoint(cp.note, new.verifier)
            except audit.CheckpointError:
                raise IntegrityError(
                    f"the audit log already holds a checkpoint at size {cp.size}: "
                    "run `safesetting audit verify`"
                ) from None
            prev.unlink(missing_ok=True)  # a retired key an earlier rotation left behind
            os.link(path, prev)
            staged = audit.stage_key(path, new)
            os.replace(staged, path)
            installed, staged = True, None
            _fsync_dir(path.parent)
        except BaseException as exc:
            with suppress(Exception):  # a broken connection rolls back by itself
                trans.rollback()
            _put_back(path, prev, staged, installed)
            if isinstance(exc, OSError):
                raise StateError(
                    f"cannot rotate the audit signing key ({exc.strerror or exc}): nothing "
                    "changed, the old key still signs"
                ) from None
            raise
        try:
            _commit(trans)
        except BaseException as exc:
            committed = _resolve_commit(control, path, prev, entry.seq, new.verifier)
            if not isinstance(exc, Exception):
                raise
            if not committed:
                raise StateError(
                    f"cannot rotate the audit signing key (its commit failed: "
                    f"{type(exc).__name__}): nothing changed, the old key still signs"
                ) from exc
    prev.unlink(missing_ok=True)
    with suppress(OSError):
        _fsync_dir(path.parent)
    return KeyRotation(entry.seq, old.verifier, new.verifier, cp.note)


def _put_back(path: Path, prev: Path, staged: Path | None, installed: bool) -> None:
    """Undo the file steps of a rotation whose transaction rolled back."""
    if staged is not None:
        staged.unlink(missing_ok=True)
    if not installed:
        prev.unlink(missing_ok=True)
        return
    try:
        os.replace(prev, path)
    except OSError:
        raise IntegrityError(
            f"the key rotation was rolled back but the old key could not be put back: "
            f"move {prev} to {path}"
        ) from None


def _commit(trans: sa.RootTransaction) -> None:
    trans.commit()


def _resolve_commit(
    control: Control, path: Path, prev: Path, seq: int, new: audit.VerifierKey
) -> bool:
    """The commit raised: it may or may not have happened. The log decides which key file
    stays (returns whether the rotation is in it); if the log cannot be read, both files
    stay and the operator is told which is which."""
    try:
        with control.reader() as conn:
            history = audit.read_history(conn)
    except Exception:  # noqa: BLE001 - whatever broke the commit may break this read too
        raise IntegrityError(
            f"the key rotation's commit failed and the log cannot be read: if "
            f"`safesetting audit log --action key.rotated` shows entry {seq}, keep {path}; "
            f"otherwise move {prev} back to {path}"
        ) from None
    committed = any(r.seq == seq and r.new == new for r in history.rotations)
    if committed:
        prev.unlink(missing_ok=True)
    else:
        _put_back(path, prev, None, installed=True)
    return committed


@contextmanager
def _durable_connection(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection whose commits reach the disk before returning (SQLite's WAL mode with
    ``synchronous=NORMAL``, the service's setting, may lose the last commits on power loss:
    after a rotation that would leave a key the log never heard of)."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
        if raw is not None:
            raw.execute("PRAGMA synchronous=FULL")
        try:
            yield conn
        finally:
            if raw is not None:
                try:
                    raw.execute("PRAGMA synchronous=NORMAL")
                except Exception:  # noqa: BLE001 - never reuse a connection left in doubt
                    conn.invalidate()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
