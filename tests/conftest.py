"""Shared fixtures."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, settings

from safesetting.control import init_home
from safesetting.home import Home
from synthetic.load import generate_database

# Property tests: a fixed seed by default (CI is reproducible); reviewers can search much
# harder with `python -m pytest tests/property --hypothesis-profile=deep`.
_SLOW_DATA = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, suppress_health_check=_SLOW_DATA
)
settings.register_profile(
    "deep", max_examples=3_000, deadline=None, suppress_health_check=_SLOW_DATA
)
# Mutation testing (docs/PRIVACY.md): the fixed seed, and no shrinking, so that a mutant
# the harness catches is reported in seconds rather than minutes.
settings.register_profile(
    "mutation",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=_SLOW_DATA,
    phases=[Phase.explicit, Phase.generate],
)
settings.load_profile("ci")

NPD_SMALL_PUPILS = 80_000
NPD_SMALL_SEED = 7
PG_ADMIN_URL = os.environ.get(
    "SAFESETTING_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def npd_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic NPD of 80,000 pupils (seed 7, 2012-2024), generated once per session.

    Read-only by convention: open it with ``duckdb.connect(str(path), read_only=True)``;
    copy it (``shutil.copy``) before changing anything. Takes ~4 s.
    """
    path = tmp_path_factory.mktemp("npd_small") / "npd.duckdb"
    generate_database(path, NPD_SMALL_PUPILS, seed=NPD_SMALL_SEED, years="2012-2024")
    return path


@pytest.fixture(scope="session")
def npd_small_home(npd_small: Path) -> Path:
    """A home folder (``--home``) whose ``npd.duckdb`` is ``npd_small`` (made by ``init``)."""
    init_home(Home(npd_small.parent))
    return npd_small.parent


@pytest.fixture
def npd_tiny(tmp_path: Path) -> Path:
    """A private 3,000-pupil NPD that a test may change (about 0.5 s), in a home of its own."""
    path = tmp_path / "home" / "npd.duckdb"
    generate_database(path, 3_000, seed=1, years="2016-2020")
    init_home(Home(path.parent))
    return path


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

    ``url = pg_url()`` returns a SQLAlchemy URL for a new ``ss_test_<random>`` database;
    its application role ``ss_test_<random>_service``, if ``serve`` made one, goes with it.
    """
    created: list[str] = []

    def make() -> str:
        name = f"ss_test_{secrets.token_hex(6)}"
        with _pg_admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        created.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    yield make
    from safesetting.db import dispose_engines

    for name in created:
        dispose_engines(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    with _pg_admin.connect() as conn:
        for name in created:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            # `serve` creates the database's application role (cluster-wide: drop it too).
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{name}_service"')


DEMO_PUPILS = 12_000


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    """The demo played once per session on 12,000 synthetic pupils, reports written.

    Returns ``(run, report_path, transparency_path)``. Read-only by convention.
    """
    from safesetting.demo.play import run_demo
    from safesetting.report.demo_page import write_demo_reports

    run = run_demo(tmp_path_factory.mktemp("demo"), pupils=DEMO_PUPILS, seed=11)
    report, public = write_demo_reports(run)
    return run, report, public
