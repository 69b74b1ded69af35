"""A query request's trips to the control database (issue 13: a released query opened seven
connections). Each step of the story is one trip: authenticate; one read of membership,
spending, opt-outs and cache; debit-and-log; release-and-log. Counted on the real engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from safesetting.control import open_control
from safesetting.service import QueryService
from tests.server.conftest import SQL, populate


@contextmanager
def trips(engine) -> Iterator[list[int]]:  # noqa: ANN001 - a SQLAlchemy engine
    """Count connection checkouts from ``engine``'s pool while the block runs."""
    seen = [0]

    def count(*_args: object) -> None:
        seen[0] += 1

    event.listen(engine, "checkout", count)
    try:
        yield seen
    finally:
        event.remove(engine, "checkout", count)


@pytest.fixture
def service(tmp_path, npd_small, monkeypatch):
    monkeypatch.delenv("SAFESETTING_DB_URL", raising=False)
    setting = populate(tmp_path / "home", npd_small)
    svc = QueryService(open_control(setting.home))
    return svc, setting.tokens


def ask(service, sql: str, epsilon: str = "0.1", **kw):  # noqa: ANN001, ANN201
    svc, tokens = service
    with trips(svc.control.engine) as seen:
        caller = svc.login(tokens["ada"], "gaps")
        result = svc.submit(caller, sql, "gaps", epsilon, **kw)
    return result, seen[0]


def test_a_released_query_makes_four_trips(service):
    result, seen = ask(service, SQL)
    assert result.status == "released"
    assert seen == 4  # authenticate, read, debit and log, release and log
    assert result.budget_remaining == pytest.approx(0.9)


def test_a_cached_answer_and_a_refusal_make_three(service):
    ask(service, SQL)
    cached, seen = ask(service, SQL)
    assert (cached.status, seen) == ("cached", 3)  # authenticate, read, log
    assert cached.budget_remaining == pytest.approx(0.9)
    refused, seen = ask(service, "SELECT upn FROM pupils")
    assert (refused.status, seen) == ("denied", 3)
    assert refused.budget_remaining == pytest.approx(0.9)  # as read before deciding


def test_a_dry_run_makes_three_and_spends_nothing(service):
    result, seen = ask(service, SQL, dry_run=True)
    assert (result.status, seen) == ("dry_run", 3)
    assert result.budget_remaining == pytest.approx(1.0)
