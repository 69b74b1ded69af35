"""What `serve` checks before it listens: the data file, and queries a dead process left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from policies.epsilon import to_micro
from safesetting.control import open_control
from safesetting.home import Home
from safesetting.reconcile import reconcile_ledger
from safesetting.service import close_abandoned
from safesetting.store import debit
from safesetting.store import queries as q
from safesetting.store import tables as t
from tests.functional.admin_helpers import add_project, add_researcher, entries, run


def test_serve_refuses_a_home_without_data(runner, tmp_path):
    home = tmp_path / "home"
    run(runner, home, "init")
    result = run(runner, home, "serve", "--port", "1", code=2)
    assert "no data in" in result.stderr
    assert "safesetting data generate" in result.stderr


def test_serve_refuses_a_damaged_data_file_naming_it(runner, npd_tiny):
    with npd_tiny.open("r+b") as f:
        f.seek(0)
        f.write(b"\x00" * 4096)  # the header gone
    result = run(runner, npd_tiny.parent, "serve", "--port", "1", code=2)
    (line,) = result.stderr.strip().splitlines()
    assert f"{npd_tiny} cannot be served" in line
    assert "data generate --force" in line


def accepted(control, query_id: str, age: timedelta) -> None:
    """A query as the service leaves it between the debit and the release."""
    with control.transaction() as conn:
        debit(conn, "gaps", to_micro("0.1"), query_id, dataset_cap_micro=50_000_000)
        q.insert_query(conn, query_id=query_id, researcher="ada", project="gaps",
                       cache_key="k", plan_digest="p", epsilon_micro=100_000,
                       data_version="v")  # fmt: skip
        control.record(conn, "query.accepted", actor="researcher:ada", project="gaps",
                       request={"query_id": query_id}, decision="allowed",
                       epsilon_micro=100_000, data_version="v")  # fmt: skip
        conn.execute(
            sa.update(t.queries)
            .where(t.queries.c.id == query_id)
            .values(created_at=datetime.now(UTC) - age)
        )


def status(control, query_id: str) -> str:
    with control.reader() as conn:
        return conn.execute(
            sa.select(t.queries.c.status).where(t.queries.c.id == query_id)
        ).scalar_one()


def test_queries_a_dead_worker_left_accepted_are_closed_at_start(runner, npd_tiny):
    home = npd_tiny.parent
    add_researcher(runner, home, "ada")
    add_project(runner, home, "gaps")
    control = open_control(Home(home))
    accepted(control, "orphan", timedelta(hours=1))
    accepted(control, "in-flight", timedelta(seconds=5))  # perhaps still being answered
    assert close_abandoned(control) == 1
    assert status(control, "orphan") == q.FAILED
    assert status(control, "in-flight") == q.ACCEPTED
    last = entries(home)[-1]
    assert (last.action, last.reasons, last.request["query_id"]) == (
        "query.failed",
        ("internal",),
        "orphan",
    )
    assert close_abandoned(control) == 0  # closed once
    with control.reader() as conn:
        assert reconcile_ledger(conn).ok  # the ε stays spent, as for any failure
