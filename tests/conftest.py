"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from synthetic.load import generate_database

NPD_SMALL_PUPILS = 80_000
NPD_SMALL_SEED = 7


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
    """A home folder (``--home``) whose ``npd.duckdb`` is ``npd_small``."""
    return npd_small.parent


@pytest.fixture
def npd_tiny(tmp_path: Path) -> Path:
    """A private 3,000-pupil NPD that a test may change (about 0.5 s)."""
    path = tmp_path / "home" / "npd.duckdb"
    generate_database(path, 3_000, seed=1, years="2016-2020")
    return path
