"""Fixtures for the audit tests: a fresh SQLite control database and a signing key."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

import audit
from safesetting.db import make_engine


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    eng = make_engine(f"sqlite:///{tmp_path / 'control.db'}")
    audit.create_schema(eng)
    return eng


@pytest.fixture
def key(tmp_path: Path) -> audit.SigningKey:
    return audit.load_or_create_key(tmp_path / "checkpoint.key")


def append(engine: sa.Engine, n: int, key: audit.SigningKey | None = None, **fields) -> None:
    """Append ``n`` entries, one transaction each, signing a checkpoint after each commit."""
    for i in range(n):
        with engine.begin() as conn:
            audit.append_entry(
                conn,
                actor=fields.get("actor", f"researcher{i % 3}"),
                action=fields.get("action", "query.released"),
                project=fields.get("project", f"proj{i % 2}"),
                request={"sql": f"SELECT COUNT(*) FROM census -- {i}", "epsilon_micro": 100_000},
                decision="allow",
                epsilon_micro=100_000,
            )
        if key is not None:
            audit.sign_checkpoint(engine, key)
