"""Numbered schema migrations: a new version applies what an old home lacks.

Each migration runs in its own transaction together with its ``schema_migrations`` row, so
a home is always at a whole version. ``migrate`` is idempotent and safe to call from
concurrent processes (SQLite's write lock, a PostgreSQL advisory lock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from audit import store as audit_store
from audit.store import append_only_statements
from safesetting.store import tables as t

# Any constant will do: it only has to be the same in every process.
_PG_MIGRATION_LOCK = 0x5AFE5E77


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sa.Connection], None]


def _create(*tables: sa.Table) -> Callable[[sa.Connection], None]:
    def apply(conn: sa.Connection) -> None:
        for table in tables:
            table.create(conn)

    return apply


def _ledger(conn: sa.Connection) -> None:
    _create(t.ledger, t.ledger_lock)(conn)
    conn.execute(sa.insert(t.ledger_lock).values(id=1))


def _append_only(*tables: str) -> Callable[[sa.Connection], None]:
    """The log's append-only triggers (``audit.store.append_only_statements``) on
    ``tables``: a spent ε stays spent, whoever holds a connection (the table owner can still
    drop them; see docs/ARCHITECTURE.md on the application role)."""

    def apply(conn: sa.Connection) -> None:
        for statement in append_only_statements(conn.dialect.name, tables):
            conn.exec_driver_sql(statement)

    return apply


def _log_epsilon_totals(conn: sa.Connection) -> None:
    """The log's running ε totals (``audit.store.add_epsilon_totals``): added to a log that
    predates them and filled from its entries, so ``debit`` can compare the ledger with
    them. A database whose log does not exist yet gets them when ``create_schema`` makes it.
    (A version number of its own also stops an older safesetting, which would append
    without keeping the totals, from opening the home.)"""
    if sa.inspect(conn).has_table(audit_store.head.name):
        audit_store.add_epsilon_totals(conn)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "registry: researchers, tokens, projects, opt-outs",
        _create(
            t.researchers,
            t.tokens,
            t.projects,
            t.project_tables,
            t.project_columns,
            t.project_members,
            t.optouts,
        ),
    ),
    Migration(2, "budget ledger", _ledger),
    Migration(3, "policy versions", _create(t.policy_versions)),
    Migration(4, "queries and the release cache", _create(t.queries)),
    Migration(5, "the ledger is append-only", _append_only(t.ledger.name)),
    Migration(6, "the log keeps running epsilon totals", _log_epsilon_totals),
)
LATEST = MIGRATIONS[-1].version


def current_version(conn: sa.Connection) -> int:
    """The highest migration applied (0 for an empty database)."""
    if not sa.inspect(conn).has_table(t.schema_migrations.name):
        return 0
    found = conn.execute(sa.select(sa.func.max(t.schema_migrations.c.version))).scalar()
    return int(found or 0)


def migrate(engine: sa.Engine, target: int = LATEST) -> list[int]:
    """Apply every migration up to ``target`` not yet applied; return the versions applied."""
    applied: list[int] = []
    with engine.connect() as conn:  # the common case, up to date, needs no write lock
        if current_version(conn) >= target:
            return applied
    for migration in MIGRATIONS:
        if migration.version > target:
            break
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
            t.schema_migrations.create(conn, checkfirst=True)
            if current_version(conn) >= migration.version:
                continue
            migration.apply(conn)
            conn.execute(
                sa.insert(t.schema_migrations).values(
                    version=migration.version, name=migration.name, applied_at=datetime.now(UTC)
                )
            )
            applied.append(migration.version)
    return applied
