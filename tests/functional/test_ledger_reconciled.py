"""`audit verify` checks the budget ledger against the log: a debit deleted, edited or
unaccounted for is named, although the ledger itself is not hashed (the log is)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.functional.admin_helpers import add_project, add_researcher, engine, run

QUESTIONS = [
    "SELECT COUNT(*) FROM census WHERE academic_year = 2019",
    "SELECT COUNT(*) FROM census WHERE academic_year = 2020",
]


@pytest.fixture
def home(runner, npd_tiny):
    home = npd_tiny.parent
    token = add_researcher(runner, home, "ada")
    add_project(runner, home, "gaps")
    for sql in QUESTIONS:
        run(runner, home, "query", sql, "--project", "gaps", "--epsilon", "0.1", "--token", token)
    return home


def verify(runner, home, code=0):
    return run(runner, home, "audit", "verify", "--json", code=code)


def tamper(home, *statements: str) -> None:
    """What the database owner can do: drop the append-only triggers, then edit."""
    with engine(home).begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER ledger_no_update")
        conn.exec_driver_sql("DROP TRIGGER ledger_no_delete")
        for statement in statements:
            conn.exec_driver_sql(statement)


def test_an_honest_ledger_agrees_with_the_log(runner, home):
    body = json.loads(verify(runner, home).stdout)
    assert body["ledger"] == {"ok": True, "debits": 2, "epsilon": "0.2", "problems": []}
    text = run(runner, home, "audit", "verify").stdout
    assert "ledger: 2 debits (ε 0.2), each matched by its query.accepted entry: OK" in text


def test_an_edited_debit_is_named(runner, home):
    tamper(home, "UPDATE ledger SET epsilon_micro = 10000 WHERE id = 1")
    result = verify(runner, home, code=3)
    assert "the budget ledger disagrees with the audit log: entry" in result.stderr
    assert "(ε 0.1 for project gaps) but the ledger debited ε 0.01 for project gaps" in (
        result.stderr
    )


def test_a_deleted_debit_is_named(runner, home):
    tamper(home, "DELETE FROM ledger WHERE id = 2")
    result = verify(runner, home, code=3)
    assert "but the ledger has no debit for it" in result.stderr


def test_a_debit_no_entry_accounts_for_is_named(runner, home):
    with engine(home).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ledger (project_id, query_id, epsilon_micro, created_at) "
                "VALUES ('gaps', 'forged', 300000, '2026-01-01 00:00:00')"
            )
        )
    result = verify(runner, home, code=3)
    assert "debited ε 0.3 for project gaps (query forged) but no log entry accepted" in (
        result.stderr
    )


def test_without_the_owners_help_the_ledger_cannot_be_edited(runner, home):
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine(home).begin() as conn:
        conn.exec_driver_sql("DELETE FROM ledger")
    verify(runner, home)
