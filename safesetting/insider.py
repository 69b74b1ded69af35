"""What a careful insider could do to a COPY of the control database: the demo's tamper scene.

Never the live log. :func:`tamper_copy` takes a consistent ``sqlite3`` backup of a home's
control database, rewrites one ``query.accepted`` entry in the copy so that the log is
self-consistent again (:func:`tamper_epsilon`), and verifies the copy with the home's key:
only the signed checkpoints can still tell, and verification names the edited entry.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

import audit
from audit.merkle import extend_frontier
from safesetting.control import Control


def tamper_copy(control: Control, copy: Path, query_id: str) -> tuple[int, audit.VerifyResult]:
    """Back up ``control``'s SQLite control database to ``copy`` (replacing it), claim in
    the copy that ``query_id`` cost ε = 0.1, and verify the copy with the key in force.

    Returns the seq of the edited entry and the verification result (which should name it).
    """
    copy.unlink(missing_ok=True)
    src = sqlite3.connect(control.home.control_db)
    dst = sqlite3.connect(copy)
    try:
        src.backup(dst)  # a consistent copy, WAL included
    finally:
        src.close()
        dst.close()
    engine = sa.create_engine(f"sqlite:///{copy}")
    try:
        seq = tamper_epsilon(engine, query_id)
        key = control.signing_key
        result = audit.verify_log(engine, None, str(key.verifier))
    finally:
        engine.dispose()
    return seq, result


def tamper_epsilon(engine: sa.Engine, query_id: str) -> int:
    """In a COPY, do what a careful insider with the file could: drop the triggers, rewrite
    the ``query.accepted`` entry of ``query_id`` to claim ε = 0.1, then recompute every leaf
    hash, cached node, the head and its running ε totals so the log is self-consistent
    again. Returns the seq. Only the signed checkpoints (and any published copy) can still
    tell."""
    with engine.begin() as conn:
        triggers = conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        for name in triggers.scalars().all():
            conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
        target = next(
            (
                e
                for e in audit.read_entries(conn, action="query.accepted")
                if (e.request or {}).get("query_id") == query_id
            ),
            None,
        )
        if target is None:
            raise ValueError(f"no query.accepted entry for {query_id}")
        edited = target.canonical.replace(
            f'"epsilon_micro":{target.epsilon_micro}'.encode(), b'"epsilon_micro":100000'
        )
        conn.execute(
            sa.text("UPDATE audit_entries SET canonical = :c WHERE seq = :s"),
            {"c": edited, "s": target.seq},
        )
        conn.exec_driver_sql("DELETE FROM audit_nodes")
        frontier: list[bytes] = []
        rows = conn.execute(sa.text("SELECT seq, canonical FROM audit_entries ORDER BY seq"))
        for n, (seq, canonical) in enumerate(rows.all()):
            leaf = audit.leaf_hash(bytes(canonical))
            conn.execute(
                sa.text("UPDATE audit_entries SET leaf_hash = :h WHERE seq = :s"),
                {"h": leaf, "s": seq},
            )
            for level, idx, h in extend_frontier(frontier, n, leaf):
                conn.execute(
                    sa.text("INSERT INTO audit_nodes VALUES (:l, :i, :h)"),
                    {"l": level, "i": idx, "h": h},
                )
        conn.execute(
            sa.text("UPDATE audit_head SET tree_size = :n, frontier = :f"),
            {"n": n + 1, "f": b"".join(frontier)},
        )
        audit.store.rebuild_epsilon_totals(conn)
    return target.seq
