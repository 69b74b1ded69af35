"""A migrated control database on SQLite and on PostgreSQL, fresh for every test, with the
audit log's tables (a debit is checked against the log's running totals)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

import audit
from safesetting.db import make_engine
from safesetting.store import migrate


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def bare_engine(request, tmp_path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'control.db'}")
    else:
        engine = make_engine(request.getfixturevalue("pg_url")())
    yield engine
    engine.dispose()


@pytest.fixture
def engine(bare_engine) -> sa.Engine:
    migrate(bare_engine)
    audit.create_schema(bare_engine)
    return bare_engine
