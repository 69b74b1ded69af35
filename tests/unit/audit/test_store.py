"""Storage: appends in the caller's transaction, proofs from the node cache, triggers."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

import audit

from .conftest import append


def _leaves(engine: sa.Engine) -> list[bytes]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT leaf_hash FROM audit_entries ORDER BY seq"))
        return [bytes(h) for h in rows.scalars()]


def test_create_schema_is_idempotent(engine):
    audit.create_schema(engine)
    append(engine, 2)
    audit.create_schema(engine)
    with engine.connect() as conn:
        assert audit.tree_head(conn).size == 2


def test_append_returns_the_stored_entry(engine):
    with engine.begin() as conn:
        entry = audit.append_entry(
            conn, actor="alice", action="researcher.added", request={"researcher": "bob"}
        )
    assert entry.seq == 1
    assert entry.leaf_hash == audit.leaf_hash(entry.canonical)
    assert entry.time.endswith("Z")
    with engine.connect() as conn:
        assert audit.get_entry(conn, 1) == entry
        assert audit.get_entry(conn, 2) is None


def test_append_rolls_back_with_the_callers_transaction(engine):
    append(engine, 1)

    def debit_then_fail() -> None:
        with engine.begin() as conn:
            audit.append_entry(conn, actor="a", action="query.released")
            raise RuntimeError("budget debit failed")

    with pytest.raises(RuntimeError):
        debit_then_fail()
    append(engine, 1)
    with engine.connect() as conn:
        assert [e.seq for e in audit.read_entries(conn)] == [1, 2]
    assert audit.verify_log(engine).ok


def test_forbidden_content_writes_nothing(engine):
    with pytest.raises(audit.ForbiddenContentError), engine.begin() as conn:
        audit.append_entry(conn, actor="a", action="query.released", request={"rows": [[1]]})
    with engine.connect() as conn:
        assert audit.tree_head(conn).size == 0


def test_stored_proofs_equal_in_memory_proofs_and_verify(engine):
    append(engine, 37)
    leaves = _leaves(engine)
    with engine.connect() as conn:
        for size in range(0, 38):
            assert audit.root_at(conn, size) == audit.root_hash(leaves[:size])
        root = audit.tree_head(conn).root
        for seq in range(1, 38):
            proof = audit.prove_inclusion(conn, seq, 37)
            assert proof == audit.inclusion_proof(leaves, seq - 1)
            assert audit.verify_inclusion(leaves[seq - 1], seq - 1, 37, proof, root)
        for old in range(1, 38):
            proof = audit.prove_consistency(conn, old, 37)
            assert proof == audit.consistency_proof(leaves, old)
            assert audit.verify_consistency(old, 37, audit.root_at(conn, old), root, proof)
        with pytest.raises(ValueError, match="outside"):
            audit.prove_inclusion(conn, 1, 38)


def test_node_cache_holds_each_complete_subtree_once(engine):
    append(engine, 8)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT level, idx FROM audit_nodes ORDER BY level, idx"))
        assert [tuple(r) for r in rows] == [(1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (2, 1), (3, 0)]


def test_filters(engine):
    append(engine, 6)
    with engine.begin() as conn:
        audit.append_entry(conn, actor="admin", action="project.approved", project="proj9")
    with engine.connect() as conn:
        assert [e.seq for e in audit.read_entries(conn, actor="researcher1")] == [2, 5]
        assert [e.seq for e in audit.read_entries(conn, project="proj9")] == [7]
        assert [e.seq for e in audit.read_entries(conn, action="project.*")] == [7]
        assert [e.seq for e in audit.read_entries(conn, action="query.released")] == list(
            range(1, 7)
        )
        assert [e.seq for e in audit.read_entries(conn, limit=2, newest_first=True)] == [7, 6]
        assert len(audit.read_entries(conn, since=date.today())) == 7
        assert audit.read_entries(conn, since=date(2999, 1, 1)) == []
        first = audit.get_entry(conn, 1)
        assert first is not None
        at = datetime.strptime(first.time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert [e.seq for e in audit.read_entries(conn, since=at)][:1] == [1]
        later = at.astimezone(timezone(timedelta(hours=2))) + timedelta(microseconds=1)
        assert 1 not in [e.seq for e in audit.read_entries(conn, since=later)]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET actor = 'mallory' WHERE seq = 1",
        "DELETE FROM audit_entries WHERE seq = 1",
        "DELETE FROM audit_entries",
        "UPDATE audit_nodes SET hash = x'00'",
        "DELETE FROM audit_nodes",
        "UPDATE audit_checkpoints SET note = ''",
        "DELETE FROM audit_checkpoints",
    ],
)
def test_update_and_delete_are_refused(engine, key, statement):
    append(engine, 2, key)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql(statement)
    assert audit.verify_log(engine, public_key=str(key.verifier)).ok


def test_threads_get_gap_free_unique_seqs(engine, key):
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            append(engine, 15, key)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        assert [e.seq for e in audit.read_entries(conn)] == list(range(1, 91))
    result = audit.verify_log(engine, public_key=str(key.verifier))
    assert result.ok
    assert result.checkpoints == (("stored", 90),)
