"""Shared fixtures."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

PG_ADMIN_URL = os.environ.get(
    "SAFESETTING_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def _pg_admin() -> Iterator[sa.Engine]:
    """An AUTOCOMMIT engine on the server's ``postgres`` database, or a skip.

    Outside CI an unreachable server skips the PostgreSQL tests with the reason; with
    ``CI=true`` it fails them, because CI promises to run them.
    """
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc.orig}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(_pg_admin: sa.Engine) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases (dropped after the test).

    ``url = pg_url()`` returns a SQLAlchemy URL for a new ``ss_test_<random>`` database.
    """
    created: list[str] = []

    def make() -> str:
        name = f"ss_test_{secrets.token_hex(6)}"
        with _pg_admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        created.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    yield make
    with _pg_admin.connect() as conn:
        for name in created:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
