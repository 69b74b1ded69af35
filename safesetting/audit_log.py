"""Reading, verifying, proving and exporting the audit log: what the ``audit`` commands, the
``/v1/audit/...`` routes and the demo ask of it.

Two ways in, one set of answers:

* :meth:`AuditLog.of_control` — for the server and the demo, over an open control plane: its
  engine, and always ``control.signing_key`` (re-read when ``admin key rotate`` replaces the
  key file, so proofs and checkpoints follow a rotation without a restart);
* :meth:`AuditLog.of_home` — for the local CLI, over a bare home: its engine and the audit
  tables, and nothing else (no policy, no migrations, no writes beyond the tables), because
  ``audit verify`` must read a possibly tampered log without appending to it. Its key is
  read once, as the file is: verification judges it.

Failures come out as the project's errors, the same for both faces: an unknown entry is
:class:`NotFoundError`, an impossible size or a bad key :class:`UsageError`, a log that does
not prove what it should :class:`IntegrityError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

import audit
from audit.publish import consistency_bundle, export_jsonl, inclusion_bundle
from audit.store import TIME_FORMAT
from safesetting import auditing
from safesetting.control import Control
from safesetting.db import engine_for
from safesetting.errors import IntegrityError, NotFoundError, Reason, UsageError
from safesetting.home import Home
from safesetting.reconcile import Reconciliation, reconcile_ledger


class AuditLog:
    """One home's audit log, as the faces read it (build it with :meth:`of_control` or
    :meth:`of_home`)."""

    def __init__(self, home: Home, control: Control | None = None) -> None:
        self._home = home
        self._control = control
        self._engine: sa.Engine | None = control.engine if control is not None else None
        self._key: audit.SigningKey | None = None  # of_home: the key file, read once

    @classmethod
    def of_control(cls, control: Control) -> AuditLog:
        """The log of an open control plane, signed with the key in force at each call."""
        return cls(control.home, control)

    @classmethod
    def of_home(cls, home: Home) -> AuditLog:
        """The log of an existing home (``UsageError`` otherwise), as it is: the audit
        tables are created if missing, nothing else is touched."""
        return cls(home.require())

    # -- what the log is read with ------------------------------------------------------------
    @property
    def _db(self) -> sa.Engine:
        """The control database (a home's is opened, with its audit tables, on first use)."""
        if self._engine is None:
            self._engine = engine_for(self._home)
            audit.create_schema(self._engine)
        return self._engine

    @contextmanager
    def _reader(self) -> Iterator[sa.Connection]:
        """A connection to read with: the control's read-only one (on SQLite it takes no
        write lock), or on a bare home a plain one, as the CLI has always read."""
        if self._control is not None:
            with self._control.reader() as conn:
                yield conn
        else:
            with self._db.connect() as conn:
                yield conn

    def _proof_key(self) -> audit.SigningKey:
        """The key proofs and exports are signed and named with: the control's key in force,
        or the home's key file as it is (verification judges it; nothing creates one)."""
        if self._control is not None:
            return self._control.signing_key
        if self._key is None:
            try:
                self._key = audit.load_key(self._home.signing_key)
            except audit.KeyFileError as exc:
                raise IntegrityError(f"cannot use the audit signing key: {exc}") from None
        return self._key

    def _key_in_force(self) -> audit.SigningKey:
        """The key that may sign the log's next checkpoint (after any rotation, the new
        one), refused unless it is the log's own."""
        if self._control is not None:
            return self._control.signing_key
        with self._db.connect() as conn:
            state = auditing.key_state(conn)
        return auditing.home_key(self._home.signing_key, *state)

    # -- reading -------------------------------------------------------------------------------
    def entries(
        self,
        *,
        since: date | None = None,
        actor: str | None = None,
        project: str | None = None,
        action: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Entries matching the filters as JSON, oldest first; with ``newest_first`` the
        ``limit`` kept are the newest. ``action`` may be a family (``query.*``)."""
        with self._reader() as conn:
            found = audit.read_entries(
                conn,
                since=since,
                actor=actor,
                project=project,
                action=action,
                limit=limit,
                newest_first=newest_first,
            )
        return [e.to_json() for e in sorted(found, key=lambda e: e.seq)]

    def latest_entry(self, action: str) -> dict[str, Any] | None:
        """The newest entry of ``action`` as JSON, or None."""
        found = self.entries(action=action, limit=1, newest_first=True)
        return found[0] if found else None

    # -- verifying -----------------------------------------------------------------------------
    def _default_public_key(self) -> str | None:
        if self._control is not None:
            return str(self._control.signing_key.verifier)
        if self._home.signing_key.exists():  # without a key, stored checkpoints fail
            return str(self._proof_key().verifier)
        return None

    def check(
        self, checkpoint_text: str | None = None, public_key: str | None = None
    ) -> audit.VerifyResult:
        """Recompute the log and check its signed checkpoints (and ``checkpoint_text``, one
        published earlier) with ``public_key`` (default: the control's key in force; on a bare
        home its key file, if there is one). Never raises for a bad log: the result says what
        is wrong. ``UsageError`` for an unusable key."""
        engine = self._db
        if public_key is None:
            public_key = self._default_public_key()
        try:
            return audit.verify_log(engine, checkpoint_text=checkpoint_text, public_key=public_key)
        except audit.CheckpointError as exc:
            raise UsageError(f"bad public key: {exc}") from exc

    def verify(
        self, checkpoint_text: str | None = None, public_key: str | None = None
    ) -> tuple[audit.VerifyResult, Reconciliation]:
        """:meth:`check`, then the budget ledger against the log: ``IntegrityError`` naming
        the first bad entry, or the first ledger disagreement."""
        result = self.check(checkpoint_text, public_key)
        if not result.ok:
            first = result.first_bad_seq
            where = f"; first bad entry: {first}" if first is not None else ""
            raise IntegrityError(
                f"audit log verification FAILED{where}",
                [Reason(p.code, p.message) for p in result.problems],
            )
        with self._db.connect() as conn:
            ledger = reconcile_ledger(conn)
        if not ledger.ok:
            raise IntegrityError(
                f"the budget ledger disagrees with the audit log: {ledger.problems[0]}",
                [Reason("ledger_mismatch", p) for p in ledger.problems[:20]],
            )
        return result, ledger

    # -- checkpoints and keys ------------------------------------------------------------------
    def latest_checkpoint(self) -> str | None:
        """The stored signed checkpoint of the largest size, as note text, or None."""
        return audit.latest_checkpoint(self._db)

    def published_checkpoint(self) -> str:
        """The latest signed checkpoint, signing the current head first if none is stored
        (the server's ``GET /v1/audit/checkpoint``)."""
        note = self.latest_checkpoint()
        if note is None:
            note = audit.sign_checkpoint(self._db, self._key_in_force()).note
        return note

    def sign_checkpoint(self) -> audit.Checkpoint:
        """The checkpoint of the current head, signed now by the key in force unless that
        size is signed already (``audit checkpoint``)."""
        engine = self._db
        return audit.sign_checkpoint(engine, self._key_in_force())

    def verifier(self) -> str:
        """The log's verifier key (``name+id+base64``): the control's key in force, or the
        home's key file."""
        return str(self._proof_key().verifier)

    def published_keys(self) -> dict[str, Any]:
        """``{"keys": [...]}``: every key the log has been signed with, oldest first, with
        the tree sizes each signs and each rotation's checkpoint (see
        :func:`safesetting.auditing.published_keys`)."""
        with self._reader() as conn:
            return auditing.published_keys(conn, self._proof_key().verifier)

    # -- proofs and export ---------------------------------------------------------------------
    def inclusion(
        self, seq: int, size: int | None = None, *, only_actor: str | None = None
    ) -> dict[str, Any]:
        """Entry ``seq``, its inclusion proof in the tree of ``size`` entries (default: the
        latest) and the signed checkpoint. With ``only_actor`` (a researcher proving their
        own queries were logged) someone else's entry is ``NotFoundError``, like a missing
        one."""
        if only_actor is not None:
            with self._reader() as conn:
                entry = audit.get_entry(conn, seq)
            if entry is None or entry.actor != only_actor:
                raise NotFoundError(f"no entry {seq} of yours")
        with proof_errors():
            return inclusion_bundle(self._db, self._proof_key(), seq, size)

    def consistency(self, old: int, new: int | None = None) -> dict[str, Any]:
        """Proof that the log at ``old`` entries is a prefix of the log at ``new`` (default:
        the latest); ``consistent`` says whether it is. ``UsageError`` for impossible
        sizes."""
        try:
            return consistency_bundle(self._db, self._proof_key(), old, new)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def export(self, out: TextIO) -> audit.Checkpoint:
        """Write the log to ``out`` as JSON lines (a header with the signed checkpoint and
        the public key, then one line per entry) and return the checkpoint it ends at."""
        engine = self._db
        return export_jsonl(engine, self._proof_key(), out)

    def export_to(self, path: Path) -> audit.Checkpoint:
        """:meth:`export` to the file ``path`` (replaced), opened once the log and its key
        are ready: ``UsageError`` if it cannot be written."""
        engine, key = self._db, self._proof_key()
        try:
            with path.open("w", encoding="utf-8") as fh:
                return export_jsonl(engine, key, fh)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from exc


@contextmanager
def proof_errors() -> Iterator[None]:
    """What proving an entry can fail with, as the project's errors (for a proof made here
    or asked of a server): an entry the log does not have is ``NotFoundError``, an
    impossible size ``UsageError``, a stored log that does not prove it ``IntegrityError``."""
    try:
        yield
    except LookupError as exc:
        raise NotFoundError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except audit.ProofError as exc:
        raise IntegrityError(str(exc)) from None


def open_checkpoint(note: str, public_key: str) -> audit.Checkpoint:
    """A checkpoint someone published (a server, say), checked against its key:
    ``IntegrityError`` unless ``public_key`` signed it."""
    try:
        return audit.open_checkpoint(note, audit.VerifierKey.parse(public_key))
    except audit.CheckpointError as exc:
        raise IntegrityError(f"the server's checkpoint does not verify: {exc}") from None


def verifier_text(public_key: str) -> str:
    """A verifier key as the log writes it (``ValueError`` if it is not one)."""
    return str(audit.VerifierKey.parse(public_key))


def epsilon_text(micro: int) -> str:
    """An entry's integer micro-ε as the exact decimal ε (``1.5``)."""
    return str(audit.micro_to_epsilon(micro))


def log_time(timestamp: float) -> str:
    """A POSIX time written as the log writes times (UTC, microseconds, ``Z``)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime(TIME_FORMAT)
