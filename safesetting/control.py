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
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

import audit
from audit import AuditEntry
from policies.load import PolicyFileError, load_policy, write_default_policy
from policies.model import Policy
from safesetting import auditing
from safesetting.db import dispose_engines, engine_for
from safesetting.errors import IntegrityError, StateError, UsageError
from safesetting.home import DB_ROLE_ENV, Home
from safesetting.store import LATEST, current_version, migrate
from safesetting.store import tables as t
from safesetting.store.roles import owns_schema, setup_service_role


def operator_actor() -> str:
    """Who runs admin commands locally: ``admin:<os user>`` (whoever holds the home)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = f"uid{os.getuid()}"
    return f"admin:{user}"


#: How long a process waits for an ``admin key rotate`` caught between installing its key
#: and committing (milliseconds, normally) before it reports the key as not in force.
KEY_SETTLE_SECONDS = 2.0


@dataclass
class _KeyCache:
    """The key a process signs with, and the key file's identity when it was read."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    key: audit.SigningKey | None = None
    stamp: tuple[int, int, int, int] | None = None


def _stamp(path: os.PathLike[str]) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


@dataclass(frozen=True)
class Control:
    """A home's policy and control database, ready to use."""

    home: Home
    engine: sa.Engine
    policy: Policy
    policy_digest: str
    actor: str
    _keys: _KeyCache = field(default_factory=_KeyCache, init=False, repr=False, compare=False)

    def record(self, conn: sa.Connection, action: str, **fields: Any) -> AuditEntry:
        """Audit ``action`` in ``conn``'s transaction, as this control's actor by default."""
        fields.setdefault("actor", self.actor)
        return auditing.record(conn, action=action, policy_digest=self.policy_digest, **fields)

    @property
    def signing_key(self) -> audit.SigningKey:
        """The home's checkpoint key (never created), checked against the log when first
        read and again whenever the key file changes (one ``stat`` per call).

        ``admin key rotate`` replaces the file while it holds the log's write lock, before
        its rotation commits, so a process that signs after that commit (it signs inside
        its own write transaction) sees the new file and signs with the new key. A file
        deleted under a running process leaves it the key it has.
        """
        cache, stamp = self._keys, _stamp(self.home.signing_key)
        with cache.lock:
            if cache.key is None or (stamp is not None and stamp != cache.stamp):
                cache.key, cache.stamp = self._load_key(), stamp
            return cache.key

    def _load_key(self) -> audit.SigningKey:
        path = self.home.signing_key
        deadline = time.monotonic() + KEY_SETTLE_SECONDS
        while True:
            with self.reader() as conn:  # never the write lock: we may be in a transaction
                note, history = auditing.key_state(conn)
            try:
                return auditing.home_key(path, note, history)
            except IntegrityError:
                # A rotation in flight has installed its key but not yet committed.
                if time.monotonic() > deadline or not auditing.previous_key_path(path).exists():
                    raise
            time.sleep(0.05)

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
    """Load the policy, bring the control database up to date, note a changed policy.

    Connected as PostgreSQL's application role (``serve``'s workers), which may not change
    the schema, it only checks that the owner has brought it up to date."""
    policy, digest = load_home_policy(home)
    engine = engine_for(home)
    with engine.connect() as conn:
        version = current_version(conn)
        owner = owns_schema(conn)  # False for the application role (PostgreSQL)
        ready = owner or (version >= LATEST and sa.inspect(conn).has_table(audit.store.head.name))
    if version > LATEST:
        raise StateError(
            f"the control database is at schema version {version}, newer than this "
            f"safesetting understands ({LATEST}): upgrade safesetting"
        )
    if owner:
        migrate(engine)
        auditing.ensure_schema(engine)
    elif not ready:  # the application role may not change the schema: it only checks
        raise StateError(
            f"the control database is at schema version {version} (this safesetting needs "
            f"{LATEST}) and {engine.url.username} may not migrate it: start `safesetting "
            "serve` (or any admin command) as the operator, with the owner's SAFESETTING_DB_URL"
        )
    control = Control(home, engine, policy, digest, actor or operator_actor())
    _ = control.signing_key  # missing or not the log's own: stop here, before any write
    _note_policy(control)
    return control


def close_connections(home: Home) -> None:
    """Close this process's pooled connections to ``home``'s control database (before its
    files are removed: the demo clears its home on every run)."""
    dispose_engines(home.db_url)


def open_service_control(home: Home, *, role: str | None = None) -> Control:
    """What ``serve`` starts from: the home opened as the operator (migrations, audit
    tables, policy) and then, on PostgreSQL, reopened as the application role.

    On PostgreSQL the owner (``SAFESETTING_DB_URL``) sets up the role (``role``, by default
    ``<database>_service``; see :func:`safesetting.store.roles.setup_service_role`), this
    process's owner connections are closed, and ``SAFESETTING_DB_ROLE`` is set so that this
    process and the workers it starts connect as the role. SQLite has no roles: there the
    home's file permissions are the boundary, and the control is the operator's.
    """
    os.environ.pop(DB_ROLE_ENV, None)  # migrations and the role's setup run as the owner
    postgres = sa.make_url(home.owner_db_url).get_backend_name() == "postgresql"
    if role is not None and not postgres:
        raise UsageError(
            "--service-role applies to a PostgreSQL control database only (a SQLite home's "
            "boundary is its file permissions)"
        )
    control = open_control(home, actor="service")
    if not postgres:
        return control
    url = setup_service_role(control.engine, secret=home.service_secret, role=role)
    os.environ[DB_ROLE_ENV] = str(sa.make_url(url).username)
    control.engine.dispose()  # no owner connection stays open in the server
    return open_control(home, actor="service")


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
