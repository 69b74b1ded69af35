"""The admin commands against PostgreSQL (SAFESETTING_DB_URL), as CI runs them."""

from __future__ import annotations

import pytest

from safesetting.db import make_engine
from tests.functional.admin_helpers import (
    actions,
    add_project,
    add_researcher,
    run,
    run_json,
    snapshot,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def db_url(pg_url, monkeypatch):
    url = pg_url()
    monkeypatch.setenv("SAFESETTING_DB_URL", url)
    yield url
    make_engine(url).dispose()  # the CLI's cached engine: close its pooled connections


def test_admin_flow_on_postgres(runner, tmp_path, db_url):
    home = tmp_path / "home"
    run(runner, home, "init")
    token = add_researcher(runner, home)
    add_project(runner, home)
    assert not (home / "control.db").exists()
    before = snapshot(home)
    run(runner, home, "admin", "project", "add", "p2", "--title", "Pupil A123456789012",
        "--org-type", "academic", "--purpose", "educational_research", "--tables", "census",
        "--budget-epsilon", "1", "--expires", "2031-01-01", "--member", "ada", code=2)  # fmt: skip
    assert snapshot(home) == before
    add_project(runner, home, "cops", "--purpose", "policing", code=3)
    run(runner, home, "admin", "optout", "add", "A123456789012")
    body = run_json(runner, home, "budget", "--project", "gaps", "--token", token)
    assert body["budget_remaining"] == 1.0
    assert actions(home) == [
        "policy.changed", "researcher.added", "token.issued", "project.approved",
        "project.refused", "optout.added",
    ]  # fmt: skip
    assert "OK" in run(runner, home, "audit", "verify").stdout
