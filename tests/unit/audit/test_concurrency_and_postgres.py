"""Several processes appending at once (SQLite WAL and PostgreSQL); PostgreSQL specifics."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

import audit
from safesetting.db import make_engine

from .conftest import append

PROCESSES, PER_PROCESS = 4, 25


def _appender(url: str, key_path: str, worker: int) -> None:
    engine = make_engine(url)
    key = audit.load_or_create_key(Path(key_path))
    for i in range(PER_PROCESS):
        with engine.begin() as conn:
            audit.append_entry(
                conn, actor=f"worker{worker}", action="query.released", request={"query_id": str(i)}
            )
        audit.sign_checkpoint(engine, key)
    engine.dispose()


def _run_processes(url: str, key_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")  # no inherited connections or locks
    procs = [ctx.Process(target=_appender, args=(url, str(key_path), w)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * PROCESSES


def _check_gap_free(engine: sa.Engine, key: audit.SigningKey) -> None:
    total = PROCESSES * PER_PROCESS
    with engine.connect() as conn:
        entries = audit.read_entries(conn)
    assert [e.seq for e in entries] == list(range(1, total + 1))
    assert sorted(e.actor for e in entries) == sorted(
        f"worker{w}" for w in range(PROCESSES) for _ in range(PER_PROCESS)
    )
    result = audit.verify_log(engine, public_key=str(key.verifier))
    assert result.ok, result.problems
    assert result.checkpoints == (("stored", total),)


def test_processes_appending_to_sqlite_get_gap_free_seqs(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'control.db'}"
    engine = make_engine(url)
    audit.create_schema(engine)
    key_path = tmp_path / "checkpoint.key"
    _run_processes(url, key_path)
    _check_gap_free(engine, audit.load_or_create_key(key_path))


@pytest.fixture
def pg_engine(pg_url):
    engine = sa.create_engine(pg_url())
    try:
        audit.create_schema(engine)
        yield engine
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_processes_appending_to_postgres_get_gap_free_seqs(pg_engine, tmp_path: Path):
    url = pg_engine.url.render_as_string(hide_password=False)
    key_path = tmp_path / "checkpoint.key"
    _run_processes(url, key_path)
    _check_gap_free(pg_engine, audit.load_or_create_key(key_path))


@pytest.mark.postgres
def test_postgres_schema_is_idempotent_and_proofs_work(pg_engine, key):
    audit.create_schema(pg_engine)
    append(pg_engine, 9, key)
    with pg_engine.connect() as conn:
        leaves = [e.leaf_hash for e in audit.read_entries(conn)]
        assert audit.tree_head(conn).root == audit.root_hash(leaves)
        assert audit.prove_inclusion(conn, 3, 9) == audit.inclusion_proof(leaves, 2)
        assert audit.prove_consistency(conn, 5, 9) == audit.consistency_proof(leaves, 5)
    assert audit.verify_log(pg_engine, public_key=str(key.verifier)).ok


@pytest.mark.postgres
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET actor = 'mallory'",
        "DELETE FROM audit_entries",
        "TRUNCATE audit_entries",
        "TRUNCATE audit_entries CASCADE",
        "UPDATE audit_nodes SET hash = ''",
        "TRUNCATE audit_nodes",
        "DELETE FROM audit_checkpoints",
        "TRUNCATE audit_checkpoints",
    ],
)
def test_postgres_refuses_update_delete_truncate(pg_engine, key, statement):
    append(pg_engine, 2, key)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), pg_engine.begin() as conn:
        conn.exec_driver_sql(statement)
    assert audit.verify_log(pg_engine, public_key=str(key.verifier)).ok


@pytest.mark.postgres
def test_postgres_triggers_fire_even_in_replica_mode(pg_engine, key):
    append(pg_engine, 1, key)
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            conn.exec_driver_sql("DELETE FROM audit_entries")


@pytest.mark.postgres
def test_postgres_tampering_with_triggers_disabled_is_named(pg_engine, key):
    append(pg_engine, 6, key)
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE audit_entries DISABLE TRIGGER ALL")
        conn.exec_driver_sql("DELETE FROM audit_entries WHERE seq = 3")
    result = audit.verify_log(pg_engine, public_key=str(key.verifier))
    assert result.first_bad_seq == 3


def _verify_while_appending(engine: sa.Engine, key: audit.SigningKey) -> None:
    append(engine, 50, key)
    stop = threading.Event()

    def appender() -> None:
        while not stop.is_set():
            append(engine, 1, key)

    thread = threading.Thread(target=appender)
    thread.start()
    try:
        results = [audit.verify_log(engine, public_key=str(key.verifier)) for _ in range(5)]
    finally:
        stop.set()
        thread.join()
    assert [r.problems for r in results] == [()] * 5
    assert results[-1].size >= 50


def test_verify_during_appends_sees_one_consistent_state_sqlite(engine, key):
    _verify_while_appending(engine, key)


@pytest.mark.postgres
def test_verify_during_appends_sees_one_consistent_state_postgres(pg_engine, key):
    _verify_while_appending(pg_engine, key)
