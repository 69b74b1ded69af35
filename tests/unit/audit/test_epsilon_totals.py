"""The log's running ε totals: kept by each append that carries ε, recomputed by verify, and
added (and filled from the entries) to a log that predates them."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

import audit
from audit import store
from safesetting.db import make_engine

CHARGES = [("gaps", 100_000), (None, 0), ("other", 250_000), ("gaps", 1), (None, 7)]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'control.db'}")
    else:
        engine = sa.create_engine(request.getfixturevalue("pg_url")())
    audit.create_schema(engine)
    yield engine
    engine.dispose()


def charge(engine: sa.Engine, project: str | None, micro: int, action: str = "query.accepted"):
    with engine.begin() as conn:
        audit.append_entry(conn, actor="a", action=action, project=project, epsilon_micro=micro)


def totals(engine: sa.Engine) -> tuple[int, dict[str, int]]:
    with engine.connect() as conn:
        return store.stored_epsilon(conn)


def test_each_append_carrying_epsilon_adds_it(db):
    assert totals(db) == (0, {})
    for project, micro in CHARGES:
        charge(db, project, micro)
    charge(db, "gaps", 0, action="query.released")  # no ε: a project with an entry, no row
    # An entry with ε and no project counts towards the whole log only.
    assert totals(db) == (350_008, {"gaps": 100_001, "other": 250_000})
    with db.connect() as conn:
        assert store.count_epsilon(conn) == store.stored_epsilon(conn)
    assert audit.verify_log(db).ok


def test_a_rolled_back_append_adds_nothing(db):
    charge(db, "gaps", 100_000)

    def append_then_fail() -> None:
        with db.begin() as conn:
            audit.append_entry(conn, actor="a", action="query.accepted", project="gaps",
                               epsilon_micro=500_000)  # fmt: skip
            raise RuntimeError("the debit failed")

    with pytest.raises(RuntimeError):
        append_then_fail()
    assert totals(db) == (100_000, {"gaps": 100_000})


def test_concurrent_appends_keep_exact_totals(db):
    def work(worker: int) -> None:
        for _ in range(20):
            charge(db, f"p{worker % 2}", 1_000 + worker)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    assert totals(db) == (20 * (1_000 + 1_001 + 1_002 + 1_003), {
        "p0": 20 * (1_000 + 1_002), "p1": 20 * (1_001 + 1_003)
    })  # fmt: skip
    assert audit.verify_log(db).ok


def _make_old(engine: sa.Engine) -> None:
    """The log as the previous version left it: no running totals at all."""
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE audit_head DROP COLUMN epsilon_micro")
        conn.exec_driver_sql("DROP TABLE audit_epsilon")


def test_an_older_log_is_given_its_totals_once(db):
    for project, micro in CHARGES:
        charge(db, project, micro)
    _make_old(db)
    with db.begin() as conn:
        assert store.add_epsilon_totals(conn) is True
    with db.begin() as conn:
        assert store.add_epsilon_totals(conn) is False  # already there: nothing recomputed
    assert totals(db) == (350_008, {"gaps": 100_001, "other": 250_000})
    charge(db, "other", 1)
    assert totals(db) == (350_009, {"gaps": 100_001, "other": 250_001})


def test_create_schema_upgrades_an_older_log(db):
    charge(db, "gaps", 100_000)
    _make_old(db)
    audit.create_schema(db)
    assert totals(db) == (100_000, {"gaps": 100_000})
    assert audit.verify_log(db).ok


@pytest.mark.parametrize(
    ("statement", "messages"),
    [
        (
            "UPDATE audit_head SET epsilon_micro = epsilon_micro - 1",
            ["the head's running total records ε 0.350007 but the entries carry ε 0.350008"],
        ),
        (
            "DELETE FROM audit_epsilon WHERE project = 'other'",
            ["the running total for project other records ε 0 but its entries carry ε 0.25"],
        ),
        (
            "INSERT INTO audit_epsilon VALUES ('stray', 5)",
            ["the running total for project stray records ε 0.000005 but its entries carry ε 0"],
        ),
        (
            "UPDATE audit_epsilon SET epsilon_micro = 0",
            [
                "the running total for project gaps records ε 0 but its entries carry ε 0.100001",
                "the running total for project other records ε 0 but its entries carry ε 0.25",
            ],
        ),
    ],
)
def test_verify_names_each_edited_total(db, statement, messages):
    for project, micro in CHARGES:
        charge(db, project, micro)
    with db.begin() as conn:
        conn.exec_driver_sql(statement)
    result = audit.verify_log(db)
    assert [(p.code, p.seq, p.message) for p in result.problems] == [
        ("epsilon_total_mismatch", None, message) for message in messages
    ]
    assert result.first_bad_seq is None  # derived state: no entry is to blame
