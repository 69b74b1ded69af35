"""Researchers, projects and opt-outs in the control database."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from policies.decide import ProjectFacts
from safesetting.errors import NotFoundError, UsageError
from safesetting.store import registry as r

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def add_ada(conn, researcher_id="ada", role="researcher"):
    return r.insert_researcher(
        conn, researcher_id, organisation="UCL", role=role,
        accredited_until=date(2027, 1, 1), now=NOW,
    )  # fmt: skip


def facts(**changes):
    base = {
        "id": "p1",
        "purpose": "educational_research",
        "org_type": "academic",
        "tables": frozenset({"census", "ks2"}),
        "approved_columns": frozenset({"census.ethnicity_major"}),
        "budget_micro": 5_000_000,
        "expires": date(2027, 1, 1),
        "members": frozenset({"ada"}),
    }
    return ProjectFacts(**{**base, **changes})


def test_researcher_round_trip(engine):
    with engine.begin() as conn:
        added = add_ada(conn)
        add_ada(conn, "bob", role="auditor")
    with engine.connect() as conn:
        assert r.get_researcher(conn, "ada") == added
        assert [x.id for x in r.list_researchers(conn)] == ["ada", "bob"]
        assert added.created_at == NOW
        assert added.facts().accredited_until == date(2027, 1, 1)


def test_duplicate_and_missing_researcher(engine):
    with engine.begin() as conn:
        add_ada(conn)
        with pytest.raises(UsageError, match="already exists"):
            add_ada(conn)
        with pytest.raises(NotFoundError, match="no researcher eve"):
            r.get_researcher(conn, "eve")


def test_accreditation_renewed(engine):
    with engine.begin() as conn:
        add_ada(conn)
        assert r.set_accreditation(conn, "ada", date(2030, 1, 1)).accredited_until == date(
            2030, 1, 1
        )


def test_project_round_trip_and_close(engine):
    with engine.begin() as conn:
        add_ada(conn)
        add_ada(conn, "bob")
        project = r.insert_project(
            conn, facts(members=frozenset({"ada", "bob"})), title="Attainment gaps", now=NOW
        )
    assert project.tables == ("census", "ks2")
    assert project.members == ("ada", "bob")
    assert project.approved_columns == ("census.ethnicity_major",)
    assert project.facts() == facts(members=frozenset({"ada", "bob"}))
    with engine.begin() as conn:
        assert [p.id for p in r.list_projects(conn, member="bob")] == ["p1"]
        assert r.list_projects(conn, member="eve") == []
        assert r.researcher_projects(conn, "ada") == ["p1"]
        closed = r.close_project(conn, "p1", now=NOW)
        assert closed.status == "closed"
        with pytest.raises(UsageError, match="already closed"):
            r.close_project(conn, "p1", now=NOW)


def test_project_needs_known_members_and_fresh_id(engine):
    with engine.begin() as conn, pytest.raises(NotFoundError, match="no researcher ada"):
        r.insert_project(conn, facts(), title="T", now=NOW)
    with engine.begin() as conn:
        add_ada(conn)
        r.insert_project(conn, facts(), title="T", now=NOW)
        with pytest.raises(UsageError, match="project p1 already exists"):
            r.insert_project(conn, facts(), title="T", now=NOW)
        with pytest.raises(NotFoundError, match="no project p2"):
            r.get_project(conn, "p2")


def test_optouts(engine):
    with engine.begin() as conn:
        assert r.insert_optouts(conn, [], now=NOW) == []
        assert r.insert_optouts(conn, ["B2", "A1", "B2"], now=NOW) == ["A1", "B2"]
        assert r.insert_optouts(conn, ["A1", "C3"], now=NOW) == ["C3"]
        assert r.optout_upns(conn) == ["A1", "B2", "C3"]


@pytest.mark.postgres
def test_concurrent_duplicate_is_a_usage_error(pg_url):
    import threading
    import time

    from safesetting.db import make_engine
    from safesetting.store import migrate

    engine = make_engine(pg_url())
    migrate(engine)
    outcome: list[BaseException] = []

    def second() -> None:
        try:
            with engine.begin() as conn:
                add_ada(conn)
                r.insert_project(conn, facts(), title="T", now=NOW)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            outcome.append(exc)

    with engine.connect() as first:
        first.begin()
        add_ada(first)  # not yet committed: the second transaction's check sees nothing
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)  # the second INSERT now waits on the primary key
        first.commit()
        thread.join(10)
    engine.dispose()
    assert len(outcome) == 1
    assert isinstance(outcome[0], UsageError)
    assert "researcher ada already exists" in str(outcome[0])
