"""The service refuses to charge while the budget ledger disagrees with the audit log.

The log keeps running ε totals (dataset-wide in its head, per project in ``audit_epsilon``),
updated by each append that carries ε; ``debit`` compares the ledger's sums with them before
charging. A debit edited or deleted by someone who dropped the ledger's triggers changes the
dataset-wide sum as well as its project's, so EVERY project is refused until the ledger is
restored: the dataset cap bounds every pupil's privacy loss, whichever project spent it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

import audit
from safesetting.administration import add_researcher as register_researcher
from safesetting.administration import approve_project
from safesetting.control import init_home, open_control
from safesetting.home import Home
from safesetting.store import current_version, migrate
from safesetting.store import tables as t
from tests.functional.admin_helpers import add_project, add_researcher, engine, run
from tests.server.conftest import LOAD_LIMITS, set_limits

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
SQL = "SELECT COUNT(*) FROM census WHERE academic_year = {year}"


@dataclass(frozen=True)
class Setting:
    home: Path
    token: str
    dialect: str


def ask(runner, setting: Setting, project: str, year: int, code: int = 0, epsilon: str = "0.1"):
    """A query new to ``project`` (one year per project and test: never a cache hit)."""
    return run(
        runner, setting.home, "query", SQL.format(year=year), "--project", project,
        "--epsilon", epsilon, "--token", setting.token, code=code,
    )  # fmt: skip


@pytest.fixture(params=BACKENDS)
def setting(request, runner, npd_tiny, monkeypatch) -> Setting:
    """ada, projects gaps and other; ledger and log: gaps 0.1 + 0.1, other 0.1 (ids 1-3)."""
    if request.param == "postgresql":
        monkeypatch.setenv("SAFESETTING_DB_URL", request.getfixturevalue("pg_url")())
    setting = Setting(npd_tiny.parent, add_researcher(runner, npd_tiny.parent), request.param)
    for project in ("gaps", "other"):
        add_project(runner, setting.home, project)
    ask(runner, setting, "gaps", 2016)
    ask(runner, setting, "gaps", 2017)
    ask(runner, setting, "other", 2016)
    return setting


def tamper(setting: Setting, *statements: str) -> None:
    """What whoever owns the database can do: drop the ledger's append-only triggers, edit."""
    drops = (
        ["DROP TRIGGER ledger_no_update", "DROP TRIGGER ledger_no_delete"]
        if setting.dialect == "sqlite"
        else ["DROP TRIGGER ledger_no_change ON ledger"]
    )
    with engine(setting.home).begin() as conn:
        for statement in (*drops, *statements):
            conn.exec_driver_sql(statement)


def state(setting: Setting) -> tuple[list, list, int]:
    """Every debit, every query row and the log's size but for the refusals the guard
    records (`query.denied`, `ledger_mismatch`): 'nothing charged or released'."""
    with engine(setting.home).connect() as conn:
        ledger = conn.execute(
            sa.select(
                t.ledger.c.query_id, t.ledger.c.project_id, t.ledger.c.epsilon_micro
            ).order_by(t.ledger.c.id)
        ).all()
        queries = conn.execute(
            sa.select(t.queries.c.id, t.queries.c.status).order_by(t.queries.c.id)
        ).all()
        refused = [e for e in audit.read_entries(conn, action="query.denied")
                   if list(e.reasons) == ["ledger_mismatch"]]  # fmt: skip
        return ledger, queries, audit.tree_head(conn).size - len(refused)


def mismatches(setting: Setting) -> list[str | None]:
    with engine(setting.home).connect() as conn:
        return [e.project for e in audit.read_entries(conn, action="query.denied")
                if list(e.reasons) == ["ledger_mismatch"]]  # fmt: skip


def refusal(project: str, ledger: str, log: str, all_ledger: str, all_log: str) -> str:
    return (
        f"Error: refusing to charge project {project}: the budget ledger disagrees with the "
        f"audit log (project {project}: ledger ε {ledger}, log ε {log}; all projects: ledger "
        f"ε {all_ledger}, log ε {all_log}); nothing was charged: run `safesetting audit "
        "verify` to find the difference"
    )


def test_an_edited_debit_stops_every_project_and_charges_nothing(runner, setting):
    tamper(setting, "UPDATE ledger SET epsilon_micro = 10000 WHERE id = 1")  # 0.1 -> 0.01
    before = state(setting)
    result = ask(runner, setting, "gaps", 2018, code=3)
    assert result.stderr.splitlines() == [refusal("gaps", "0.11", "0.2", "0.21", "0.3")]
    # The other project's own figures agree, but the dataset-wide ones do not: refused too.
    result = ask(runner, setting, "other", 2018, code=3)
    assert result.stderr.splitlines() == [refusal("other", "0.1", "0.1", "0.21", "0.3")]
    assert state(setting) == before
    envelope = json.loads(
        run(runner, setting.home, "query", SQL.format(year=2019), "--project", "gaps",
            "--epsilon", "0.1", "--token", setting.token, "--json", code=3).stdout
    )  # fmt: skip
    assert envelope["error"]["kind"] == "integrity"
    assert state(setting) == before
    assert mismatches(setting) == ["gaps", "other", "gaps"]  # each refusal on the record
    # The pointer leads somewhere: verify names the edited debit.
    verified = run(runner, setting.home, "audit", "verify", code=3)
    assert "but the ledger debited ε 0.01 for project gaps" in verified.stderr


def test_a_deleted_debit_is_refused(runner, setting):
    tamper(setting, "DELETE FROM ledger WHERE id = 3")
    before = state(setting)
    result = ask(runner, setting, "other", 2018, code=3)
    assert result.stderr.splitlines() == [refusal("other", "0", "0.1", "0.2", "0.3")]
    ask(runner, setting, "gaps", 2018, code=3)
    assert state(setting) == before


def test_a_debit_moved_to_another_project_stops_both_but_not_a_third(runner, setting):
    add_project(runner, setting.home, "third")
    tamper(setting, "UPDATE ledger SET project_id = 'other' WHERE id = 2")
    before = state(setting)
    gaps = ask(runner, setting, "gaps", 2018, code=3)
    assert gaps.stderr.splitlines() == [refusal("gaps", "0.1", "0.2", "0.3", "0.3")]
    other = ask(runner, setting, "other", 2018, code=3)
    assert other.stderr.splitlines() == [refusal("other", "0.2", "0.1", "0.3", "0.3")]
    assert state(setting) == before
    # Every ε the log counts is still in the ledger, and none of it is the third project's.
    ask(runner, setting, "third", 2018)
    assert state(setting)[0][-1][1:] == ("third", 100_000)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (
            "UPDATE audit_epsilon SET epsilon_micro = 100000 WHERE project = 'gaps'",
            "the running total for project gaps records ε 0.1 but its entries carry ε 0.2",
        ),
        (
            "UPDATE audit_head SET epsilon_micro = 0",
            "the head's running total records ε 0 but the entries carry ε 0.3",
        ),
    ],
)
def test_audit_verify_catches_a_hand_edited_running_total(runner, setting, statement, message):
    with engine(setting.home).begin() as conn:
        conn.exec_driver_sql(statement)
    result = run(runner, setting.home, "audit", "verify", code=3)
    assert "audit log verification FAILED" in result.stderr
    assert f"epsilon_total_mismatch: {message}" in result.stderr
    before = state(setting)
    ask(runner, setting, "gaps", 2018, code=3)  # and the guard no longer agrees either
    assert state(setting) == before


def test_editing_the_totals_to_match_passes_the_guard_but_not_audit_verify(runner, setting):
    """The guard is a cheap check against the one-table edit; the ledger and the running
    totals together are derived state that only `audit verify` checks against the entries."""
    tamper(
        setting,
        "UPDATE ledger SET epsilon_micro = 10000 WHERE id = 1",
        "UPDATE audit_epsilon SET epsilon_micro = 110000 WHERE project = 'gaps'",
        "UPDATE audit_head SET epsilon_micro = 210000",
    )
    ask(runner, setting, "gaps", 2018)
    result = run(runner, setting.home, "audit", "verify", code=3)
    assert (
        "epsilon_total_mismatch: the running total for project gaps records ε 0.21 but its "
        "entries carry ε 0.3"
    ) in result.stderr


def _downgrade(setting: Setting) -> None:
    """The home as the previous version left it: no running totals, schema version 5."""
    with engine(setting.home).begin() as conn:
        conn.exec_driver_sql("ALTER TABLE audit_head DROP COLUMN epsilon_micro")
        conn.exec_driver_sql("DROP TABLE audit_epsilon")
        conn.execute(sa.delete(t.schema_migrations).where(t.schema_migrations.c.version == 6))
    with engine(setting.home).connect() as conn:
        assert current_version(conn) == 5
        assert not sa.inspect(conn).has_table("audit_epsilon")


def _totals(setting: Setting) -> tuple[int, dict[str, int]]:
    with engine(setting.home).connect() as conn:
        return audit.store.stored_epsilon(conn)


def test_the_migration_backfills_an_old_home(runner, setting):
    _downgrade(setting)
    assert migrate(engine(setting.home)) == [6]
    assert _totals(setting) == (300_000, {"gaps": 200_000, "other": 100_000})
    ask(runner, setting, "other", 2018)
    assert _totals(setting) == (400_000, {"gaps": 200_000, "other": 200_000})
    assert "OK" in run(runner, setting.home, "audit", "verify").stdout


def test_an_old_home_opens_and_verifies_before_any_migration(runner, setting):
    """`audit verify` prepares the log's tables without migrating: it backfills them too."""
    _downgrade(setting)
    assert "OK" in run(runner, setting.home, "audit", "verify").stdout
    assert _totals(setting) == (300_000, {"gaps": 200_000, "other": 100_000})
    ask(runner, setting, "gaps", 2018)  # opens the control: migration 6 has nothing left to do
    with engine(setting.home).connect() as conn:
        assert current_version(conn) == 6
    assert _totals(setting) == (400_000, {"gaps": 300_000, "other": 100_000})


# -- an honest home under concurrent queries never trips the guard ---------------------------

WORKERS = 10  # five per project: four fit a budget of 1 at ε 0.25, one loses the race


def _submit(home: str, db_url: str | None, token: str, project: str, year: int) -> str:
    if db_url:
        os.environ["SAFESETTING_DB_URL"] = db_url
    from safesetting.service import QueryService

    service = QueryService(open_control(Home(Path(home)), actor="service"))
    sql = (
        "SELECT sex, COUNT(*) FROM pupils JOIN ks2 USING (pupil_id)"
        f" WHERE academic_year = {year} GROUP BY sex"
    )
    result = service.submit(
        service.login(token), sql, project, "0.25"
    )  # an IntegrityError would raise
    return result.status + ":" + ",".join(r.code for r in result.reasons)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_queries_on_an_honest_home_never_trip_the_guard(
    backend, tmp_path, npd_small, monkeypatch, request
):
    db_url = None
    if backend == "postgresql":
        db_url = request.getfixturevalue("pg_url")()
        monkeypatch.setenv("SAFESETTING_DB_URL", db_url)
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(npd_small, home / "npd.duckdb")
    init_home(Home(home))
    set_limits(Home(home), LOAD_LIMITS)  # many at once from one researcher, on purpose
    control = open_control(Home(home), actor="admin:test")
    token = register_researcher(control, "ada", organisation="UCL", role="researcher",
                accredited_until="2031-01-01").token  # fmt: skip
    for project in ("race", "gaps"):
        approve_project(
            control, project, title="Race", org_type="academic",
            purpose="educational_research", tables=["pupils", "ks2"], budget_epsilon="1",
            expires="2031-01-01", members=["ada"],
        )  # fmt: skip
    jobs = [(str(home), db_url, token, ("race", "gaps")[i % 2], 2013 + i) for i in range(WORKERS)]
    with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
        outcomes = pool.starmap(_submit, jobs)
    assert sorted(outcomes) == ["denied:budget_exhausted"] * 2 + ["released:"] * 8, outcomes
    with control.engine.connect() as conn:
        spent = dict(
            conn.execute(
                sa.select(t.ledger.c.project_id, sa.func.sum(t.ledger.c.epsilon_micro)).group_by(
                    t.ledger.c.project_id
                )
            ).all()
        )
        assert audit.store.stored_epsilon(conn) == (2_000_000, spent)
    assert spent == {"race": 1_000_000, "gaps": 1_000_000}
    key = audit.load_key(home / "checkpoint.key")
    assert audit.verify_log(control.engine, public_key=str(key.verifier)).ok
