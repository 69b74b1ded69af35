"""Tampering: the triggers stop the easy edits; verify catches the rest and names the entry."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import audit
from audit.entry import build_entry
from audit.merkle import extend_frontier

from .conftest import append

N = 12


@pytest.fixture
def log(engine, key):
    append(engine, N, key)
    result = audit.verify_log(engine, public_key=str(key.verifier))
    assert result.ok, result.problems
    assert result.checkpoints == (("stored", N),)
    return engine


def drop_triggers(conn: sa.Connection) -> None:
    names = conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
    for name in names.scalars().all():
        conn.exec_driver_sql(f"DROP TRIGGER {name}")


def rehash(conn: sa.Connection) -> None:
    """What a careful intruder does after editing entries: recompute leaves, nodes, head
    (and the running ε totals)."""
    conn.exec_driver_sql("DELETE FROM audit_nodes")
    frontier: list[bytes] = []
    rows = conn.execute(sa.text("SELECT seq, canonical FROM audit_entries ORDER BY seq")).all()
    for n, (seq, canonical) in enumerate(rows):
        leaf = audit.leaf_hash(canonical)
        conn.execute(
            sa.text("UPDATE audit_entries SET leaf_hash = :h WHERE seq = :s"), {"h": leaf, "s": seq}
        )
        for level, idx, h in extend_frontier(frontier, n, leaf):
            conn.execute(
                sa.text("INSERT INTO audit_nodes VALUES (:l, :i, :h)"),
                {"l": level, "i": idx, "h": h},
            )
    conn.execute(
        sa.text("UPDATE audit_head SET tree_size = :n, frontier = :f"),
        {"n": len(rows), "f": b"".join(frontier)},
    )
    audit.store.rebuild_epsilon_totals(conn)


def verify(engine, key, **kwargs) -> audit.VerifyResult:
    return audit.verify_log(engine, public_key=str(key.verifier), **kwargs)


def forged(seq: int, actor: str = "mallory") -> bytes:
    return build_entry(
        seq=seq, time="2020-01-01T00:00:00.000000Z", actor=actor, action="x.y"
    ).canonical


def test_changed_entry_is_named(log, key):
    with log.begin() as conn:
        drop_triggers(conn)
        canonical = conn.execute(
            sa.text("SELECT canonical FROM audit_entries WHERE seq = 5")
        ).scalar()
        edited = bytes(canonical).replace(b'"epsilon_micro":100000', b'"epsilon_micro":1', 1)
        assert edited != canonical
        conn.execute(
            sa.text("UPDATE audit_entries SET canonical = :c WHERE seq = 5"), {"c": edited}
        )
    result = verify(log, key)
    assert not result.ok
    assert result.first_bad_seq == 5


def test_changed_entry_with_recomputed_hashes_is_named_by_the_signed_checkpoints(log, key):
    with log.begin() as conn:
        drop_triggers(conn)
        conn.execute(
            sa.text("UPDATE audit_entries SET canonical = :c, actor = 'mallory' WHERE seq = 7"),
            {"c": forged(7)},
        )
        rehash(conn)
    result = verify(log, key)
    assert not result.ok
    assert result.first_bad_seq == 7
    assert any("differs from the stored checkpoint" in p.message for p in result.problems)


def test_deleted_entry_is_named(log, key):
    with log.begin() as conn:
        drop_triggers(conn)
        conn.exec_driver_sql("DELETE FROM audit_entries WHERE seq = 4")
    result = verify(log, key)
    assert result.first_bad_seq == 4
    assert "entry 4 is missing" in result.problems[0].message


def test_deleted_entry_with_renumbering_and_rehash_is_named(log, key):
    with log.begin() as conn:
        drop_triggers(conn)
        conn.exec_driver_sql("DELETE FROM audit_entries WHERE seq = 4")
        for seq in range(5, N + 1):
            conn.execute(
                sa.text("UPDATE audit_entries SET seq = :new WHERE seq = :old"),
                {"new": seq - 1, "old": seq},
            )
        rehash(conn)
    result = verify(log, key)
    assert result.first_bad_seq == 4


def test_inserted_entry_is_named(log, key):
    with log.begin() as conn:
        drop_triggers(conn)
        for seq in range(N, 5, -1):  # make room at seq 6
            conn.execute(
                sa.text("UPDATE audit_entries SET seq = :new WHERE seq = :old"),
                {"new": seq + 1, "old": seq},
            )
        conn.execute(
            sa.text(
                "INSERT INTO audit_entries VALUES (6, '2020-01-01T00:00:00.000000Z', 'mallory',"
                " 'x.y', NULL, :c, :h)"
            ),
            {"c": forged(6), "h": audit.leaf_hash(forged(6))},
        )
        rehash(conn)
    result = verify(log, key)
    assert result.first_bad_seq == 6
    assert any("entry 7: its contents say seq 6" in p.message for p in result.problems)


def test_entry_appended_behind_the_logs_back_is_named(log, key):
    with log.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO audit_entries VALUES (:s, '2020-01-01T00:00:00.000000Z', 'mallory',"
                " 'x.y', NULL, :c, :h)"
            ),
            {"s": N + 1, "c": forged(N + 1), "h": audit.leaf_hash(forged(N + 1))},
        )
    result = verify(log, key)
    assert result.first_bad_seq == N + 1
    assert "the head records 12 entries but the log holds 13" in result.problems[0].message


def test_reordered_entries_are_named(log, key):
    with log.begin() as conn:
        drop_triggers(conn)
        conn.exec_driver_sql("UPDATE audit_entries SET seq = -1 WHERE seq = 8")
        conn.exec_driver_sql("UPDATE audit_entries SET seq = 8 WHERE seq = 9")
        conn.exec_driver_sql("UPDATE audit_entries SET seq = 9 WHERE seq = -1")
        rehash(conn)
    result = verify(log, key)
    assert result.first_bad_seq == 8
    assert "its contents say seq 9" in result.problems[0].message


def test_truncation_is_caught_against_a_published_checkpoint(log, key):
    published = audit.latest_checkpoint(log)
    with log.begin() as conn:
        drop_triggers(conn)
        conn.exec_driver_sql(f"DELETE FROM audit_entries WHERE seq > {N - 3}")
        conn.exec_driver_sql(f"DELETE FROM audit_checkpoints WHERE tree_size > {N - 3}")
        rehash(conn)
    # Without outside evidence the shortened log is self-consistent: that is the point of
    # publishing checkpoints.
    assert verify(log, key).ok
    result = verify(log, key, checkpoint_text=published)
    assert not result.ok
    assert result.first_bad_seq == N - 2
    assert "entries 10..12 are gone" in result.problems[0].message


def test_checkpoint_signed_by_another_key_is_rejected(log, key):
    other = audit.SigningKey.generate(key.name)
    with log.connect() as conn:
        tree = audit.tree_head(conn)
    note = other.sign_note(audit.checkpoint_body(key.name, tree.size, tree.root))
    result = verify(log, key, checkpoint_text=note)
    assert not result.ok
    assert "given checkpoint rejected" in result.problems[0].message


def test_stored_checkpoint_replaced_by_an_intruders_key_is_rejected(log, key):
    other = audit.SigningKey.generate(key.name)
    with log.begin() as conn:
        drop_triggers(conn)
        tree = audit.tree_head(conn)
        note = other.sign_note(audit.checkpoint_body(key.name, tree.size, tree.root))
        conn.execute(
            sa.text("UPDATE audit_checkpoints SET note = :n WHERE tree_size = :s"),
            {"n": note, "s": tree.size},
        )
    result = verify(log, key)
    assert "stored checkpoint rejected" in result.problems[0].message


def test_tampered_node_cache_is_reported(log, key):
    with log.begin() as conn:
        drop_triggers(conn)
        conn.exec_driver_sql(
            "UPDATE audit_nodes SET hash = zeroblob(32) WHERE level = 1 AND idx = 2"
        )
    result = verify(log, key)
    assert not result.ok
    assert "cached subtree over entries 5..6 does not match" in result.problems[0].message


def test_checkpoint_for_another_log_by_the_same_key_is_rejected(log, key):
    with log.connect() as conn:
        tree = audit.tree_head(conn)
    note = key.sign_note(audit.checkpoint_body("other.example/log", tree.size, tree.root))
    result = verify(log, key, checkpoint_text=note)
    assert "given checkpoint is for other.example/log" in result.problems[0].message


def test_a_row_with_a_retyped_seq_is_reported(log, key):
    with log.begin() as conn:
        drop_triggers(conn)
        conn.exec_driver_sql("UPDATE audit_entries SET seq = 'x' WHERE seq = 12")
    result = verify(log, key)
    assert result.first_bad_seq == 12


@pytest.mark.parametrize(
    ("column", "value"), [("actor", "'mallory'"), ("action", "'query.cached'"), ("project", "'p9'")]
)
def test_a_filter_column_edited_apart_from_the_hashed_entry_is_named(log, key, column, value):
    """``audit log --action/--project`` read the table's columns: an intruder who edits only
    those (the hashed entry untouched) must not hide an entry from an auditor's filter."""
    with log.begin() as conn:
        drop_triggers(conn)
        conn.exec_driver_sql(f"UPDATE audit_entries SET {column} = {value} WHERE seq = 4")  # noqa: S608
    result = verify(log, key)
    assert not result.ok
    assert [(p.seq, p.code) for p in result.problems] == [(4, "column_mismatch")]
