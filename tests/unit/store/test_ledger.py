"""The ledger: exact micro-ε, both limits enforced, nothing written on refusal."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import audit
from safesetting.db import make_engine
from safesetting.errors import BudgetExhaustedError, NotFoundError
from safesetting.store import Debit, dataset_spent, debit, migrate, project_spent
from safesetting.store.registry import insert_project
from tests.unit.store.test_registry import NOW, add_ada, facts

CAP = 3_000_000


def charge(conn: sa.Connection, project: str, epsilon: int, query_id: str, cap: int) -> Debit:
    """A debit and its ``query.accepted`` entry in one transaction, as the service writes
    them (``debit`` refuses to charge once the ledger and the log's totals disagree)."""
    done = debit(conn, project, epsilon, query_id, dataset_cap_micro=cap)
    audit.append_entry(
        conn, actor="researcher:ada", action="query.accepted", project=project,
        request={"query_id": query_id}, decision="allowed", epsilon_micro=epsilon,
    )  # fmt: skip
    return done


@pytest.fixture
def ledger_engine(engine):
    with engine.begin() as conn:
        add_ada(conn)
        insert_project(conn, facts(id="p1", budget_micro=1_000_000), title="T", now=NOW)
        insert_project(conn, facts(id="p2", budget_micro=5_000_000), title="T", now=NOW)
    return engine


def test_tenths_exhaust_a_budget_of_one_exactly(ledger_engine):
    for i in range(10):
        with ledger_engine.begin() as conn:
            result = charge(conn, "p1", 100_000, f"q{i}", CAP)
    assert result.project_spent_micro == 1_000_000
    with ledger_engine.begin() as conn, pytest.raises(BudgetExhaustedError) as info:
        debit(conn, "p1", 1, "q-extra", dataset_cap_micro=CAP)
    assert [r.code for r in info.value.reasons] == ["budget_exhausted"]
    assert "has 0 of its privacy budget left" in info.value.reasons[0].message
    with ledger_engine.connect() as conn:
        assert project_spent(conn, "p1") == 1_000_000
        assert dataset_spent(conn) == 1_000_000
        assert project_spent(conn, "p2") == 0


def test_dataset_cap_spans_projects(ledger_engine):
    with ledger_engine.begin() as conn:
        charge(conn, "p1", 1_000_000, "a", CAP)
        charge(conn, "p2", 2_000_000, "b", CAP)
    with ledger_engine.begin() as conn, pytest.raises(BudgetExhaustedError) as info:
        debit(conn, "p2", 500_000, "c", dataset_cap_micro=CAP)
    assert [r.code for r in info.value.reasons] == ["dataset_cap_reached"]


def test_both_limits_reported(ledger_engine):
    with ledger_engine.begin() as conn:
        charge(conn, "p1", 1_000_000, "a", 1_000_000)
    with ledger_engine.begin() as conn, pytest.raises(BudgetExhaustedError) as info:
        debit(conn, "p1", 1, "b", dataset_cap_micro=1_000_000)
    assert [r.code for r in info.value.reasons] == ["budget_exhausted", "dataset_cap_reached"]


def test_debit_rolls_back_with_the_callers_transaction(ledger_engine):
    def debit_then_fail():
        with ledger_engine.begin() as conn:
            debit(conn, "p2", 500_000, "a", dataset_cap_micro=CAP)
            raise RuntimeError("the audit append failed")

    with pytest.raises(RuntimeError):
        debit_then_fail()
    with ledger_engine.connect() as conn:
        assert project_spent(conn, "p2") == 0


def test_query_id_charged_once(ledger_engine):
    with ledger_engine.begin() as conn:
        charge(conn, "p2", 500_000, "same", CAP)
    with pytest.raises(sa.exc.IntegrityError), ledger_engine.begin() as conn:
        debit(conn, "p2", 500_000, "same", dataset_cap_micro=CAP)


@pytest.mark.parametrize("epsilon", [0, -5, True, 0.5])
def test_bad_debits(ledger_engine, epsilon):
    with ledger_engine.begin() as conn, pytest.raises(ValueError, match="positive integer"):
        debit(conn, "p2", epsilon, "x", dataset_cap_micro=CAP)


def test_unknown_project(ledger_engine):
    with ledger_engine.begin() as conn, pytest.raises(NotFoundError):
        debit(conn, "nope", 1, "x", dataset_cap_micro=CAP)


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM ledger",
        "UPDATE ledger SET epsilon_micro = 1",
        "UPDATE ledger SET project_id = 'p2' WHERE query_id = 'q0'",
    ],
)
def test_a_spent_epsilon_stays_spent(ledger_engine, statement):
    """`DELETE FROM ledger` used to succeed, and a three-byte edit let a project overspend."""
    with ledger_engine.begin() as conn:
        charge(conn, "p1", 400_000, "q0", CAP)
    with (
        pytest.raises(sa.exc.DatabaseError, match="ledger is append-only"),
        ledger_engine.begin() as conn,
    ):
        conn.exec_driver_sql(statement)
    with ledger_engine.connect() as conn:
        assert project_spent(conn, "p1") == 400_000
        assert dataset_spent(conn) == 400_000


@pytest.mark.postgres
def test_the_ledger_cannot_be_truncated_on_postgresql(pg_url):
    engine = make_engine(pg_url())
    try:
        migrate(engine)
        audit.create_schema(engine)
        with engine.begin() as conn:
            add_ada(conn)
            insert_project(conn, facts(id="p1", budget_micro=1_000_000), title="T", now=NOW)
            charge(conn, "p1", 400_000, "q0", CAP)
        with (
            pytest.raises(sa.exc.DatabaseError, match="ledger is append-only"),
            engine.begin() as conn,
        ):
            conn.exec_driver_sql("TRUNCATE ledger")
        with engine.connect() as conn:
            assert project_spent(conn, "p1") == 400_000
    finally:
        engine.dispose()
