"""Migrations: idempotent, and a new version upgrades an old home without losing anything."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa

from safesetting.store import LATEST, current_version, migrate
from safesetting.store import tables as t
from safesetting.store.migrations import MIGRATIONS
from safesetting.store.registry import get_researcher, insert_researcher

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_fresh_database_gets_every_migration(bare_engine):
    assert migrate(bare_engine) == [m.version for m in MIGRATIONS]
    with bare_engine.connect() as conn:
        assert current_version(conn) == LATEST
        names = set(sa.inspect(conn).get_table_names())
    assert {t.name for t in t.metadata.sorted_tables} <= names


def test_migrate_is_idempotent(bare_engine):
    migrate(bare_engine)
    assert migrate(bare_engine) == []
    with bare_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.ledger_lock)).scalar() == 1


def test_old_home_is_upgraded_keeping_its_data(bare_engine):
    assert migrate(bare_engine, target=1) == [1]
    with bare_engine.begin() as conn:
        assert current_version(conn) == 1
        assert not sa.inspect(conn).has_table("ledger")
        insert_researcher(
            conn, "ada", organisation="UCL", role="researcher",
            accredited_until=date(2027, 1, 1), now=NOW,
        )  # fmt: skip
    assert migrate(bare_engine) == list(range(2, LATEST + 1))
    with bare_engine.connect() as conn:
        assert get_researcher(conn, "ada").organisation == "UCL"
        assert sa.inspect(conn).has_table("ledger")
        versions = conn.execute(sa.select(t.schema_migrations.c.version)).scalars().all()
    assert sorted(versions) == list(range(1, LATEST + 1))


def test_empty_database_is_version_zero(bare_engine):
    with bare_engine.connect() as conn:
        assert current_version(conn) == 0
