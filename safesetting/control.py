"""Opening a home's control plane: policy, control database, audit log, in one place.

``init_home(home)`` creates a home: the folder, the commented default ``policy.toml``, the
checkpoint signing key and the control database. ``open_control(home)`` refuses a folder
that is not a home (exit 2, naming ``safesetting init``) and never creates one; it loads and
validates the policy, migrates the control database, prepares the audit tables, and logs
``policy.changed`` when the policy file's SHA-256 differs from the last one recorded. The
CLI, the service and the server all start here.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any

import sqlalchemy as sa

import audit
from audit import AuditEntry
from policies.load import PolicyFileError, load_policy, write_default_policy
from policies.model import Policy
from safesetting import auditing
from safesetting.db import engine_for
from safesetting.errors import StateError, UsageError
from safesetting.home import Home
from safesetting.store import LATEST, current_version, migrate
from safesetting.store import tables as t


def operator_actor() -> str:
    """Who runs admin commands locally: ``admin:<os user>`` (whoever holds the home)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = f"uid{os.getuid()}"
    return f"admin:{user}"


@dataclass(frozen=True)
class Control:
    """A home's policy and control database, ready to use."""

    home: Home
    engine: sa.Engine
    policy: Policy
    policy_digest: str
    actor: str

    def record(self, conn: sa.Connection, action: str, **fields: Any) -> AuditEntry:
        """Audit ``action`` in ``conn``'s transaction, as this control's actor by default."""
        fields.setdefault("actor", self.actor)
        return auditing.record(conn, action=action, policy_digest=self.policy_digest, **fields)

    @cached_property
    def signing_key(self) -> audit.SigningKey:
        """The home's checkpoint key, read and checked once per process (never created)."""
        with self.reader() as conn:  # never the write lock: this may run inside a transaction
            note = audit.store.latest_note(conn)
        return auditing.home_key(self.home.signing_key, note)

    @contextmanager
    def reader(self) -> Iterator[sa.Connection]:
        """A read-only connection: on SQLite it neither takes nor waits for the write lock."""
        with self.engine.connect() as conn:
            yield conn.execution_options(read_only=True)

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One write transaction; its entries' checkpoint is signed inside it, so the log
        and its signed head commit together (one commit per request, not two)."""
        with self.engine.begin() as conn:
            yield conn
            auditing.sign_checkpoint(conn, self.signing_key)

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    @staticmethod
    def today() -> date:
        return datetime.now(UTC).date()


def load_home_policy(home: Home) -> tuple[Policy, str]:
    """The home's policy and digest (the home must exist: see ``init_home``)."""
    home.require()
    try:
        return load_policy(home.policy)
    except PolicyFileError as exc:
        raise UsageError(f"policy: {exc}") from None


def init_home(home: Home, *, actor: str | None = None) -> list[str]:
    """Create ``home`` (or complete it) and return what was created, by file name.

    Only ``safesetting init``, ``data generate`` and ``demo`` call this; every other
    command opens an existing home and refuses a missing one.
    """
    created: list[str] = []
    home.ensure()
    if write_default_policy(home.policy):
        created.append(home.policy.name)
    had_db = not home.db_url.startswith("sqlite") or home.control_db.exists()
    if not home.signing_key.exists():
        engine = engine_for(home)
        auditing.ensure_schema(engine)
        with engine.connect() as conn:
            size = audit.tree_head(conn).size
        if size:  # a log without its key: restoring the key is the only honest way on
            raise StateError(
                f"{home.signing_key} is missing but the audit log has {size} entries: "
                "restore the key from a backup (a new key would make the published "
                "checkpoints unverifiable)"
            )
        audit.load_or_create_key(home.signing_key)  # the one place a key is ever made
        created.append(home.signing_key.name)
    control = open_control(home, actor=actor)
    _ = control.signing_key  # checked against the log now
    if not had_db:
        created.append(home.control_db.name)
    return created


def open_control(home: Home, *, actor: str | None = None) -> Control:
    """Load the policy, bring the control database up to date, note a changed policy."""
    policy, digest = load_home_policy(home)
    engine = engine_for(home)
    with engine.connect() as conn:
        version = current_version(conn)
    if version > LATEST:
        raise StateError(
            f"the control database is at schema version {version}, newer than this "
            f"safesetting understands ({LATEST}): upgrade safesetting"
        )
    migrate(engine)
    auditing.ensure_schema(engine)
    control = Control(home, engine, policy, digest, actor or operator_actor())
    _ = control.signing_key  # missing or not the log's own: stop here, before any write
    _note_policy(control)
    return control


def _last_digest(conn: sa.Connection) -> str | None:
    query = sa.select(t.policy_versions.c.digest).order_by(t.policy_versions.c.id.desc())
    return conn.execute(query.limit(1)).scalar()


def _note_policy(control: Control) -> None:
    with control.engine.connect() as conn:
        if _last_digest(conn) == control.policy_digest:
            return
    with control.transaction() as conn:
        # The ledger lock row serialises concurrent first opens on PostgreSQL.
        conn.execute(sa.select(t.ledger_lock.c.id).with_for_update())
        if _last_digest(conn) == control.policy_digest:
            return
        conn.execute(
            sa.insert(t.policy_versions).values(
                digest=control.policy_digest, recorded_at=control.now()
            )
        )
        control.record(conn, "policy.changed", request={"policy_path": str(control.home.policy)})
