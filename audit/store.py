"""Append-only storage of the log in the control database (SQLAlchemy Core).

Tables:

* ``audit_entries`` — one row per entry: seq (1-based; entry ``seq`` is leaf ``seq - 1``),
  the columns the CLI filters on, the canonical bytes and the leaf hash.
* ``audit_nodes`` — every complete perfect subtree of two or more leaves, keyed
  ``(level, idx)``: proofs read O(log n) of these instead of rehashing the log.
* ``audit_checkpoints`` — every signed checkpoint, keyed by tree size.
* ``audit_head`` — one row: the tree size and its *frontier* (the perfect-subtree roots
  that make up the tree), and the running total of the ε the entries carry. Appenders lock
  it, so appends are O(log n) and seqs gap-free.
* ``audit_epsilon`` — the running total of the ε the entries carry, per project: a row for
  each project with an entry carrying ε > 0 (``query.accepted`` in practice).

The first three refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) with triggers. The
head and the running totals are derived state, rewritten by the append that changes them
(under the head's lock); ``verify`` recomputes them from the entries. The totals let a
reader compare the ε the log accounts for with another record of it (the service's budget
ledger) in O(1), without reading the entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from audit.entry import AuditEntry, check_entry, entry_from_canonical, seal_entry
from audit.merkle import (
    HASH_SIZE,
    consistency_path,
    extend_frontier,
    fold_frontier,
    inclusion_path,
    range_hash,
)

metadata = sa.MetaData()

entries = sa.Table(
    "audit_entries",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", sa.String(32), nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False, index=True),
    sa.Column("action", sa.String(100), nullable=False, index=True),
    sa.Column("project", sa.String(200), nullable=True, index=True),
    sa.Column("canonical", sa.LargeBinary, nullable=False),
    sa.Column("leaf_hash", sa.LargeBinary(HASH_SIZE), nullable=False),
)

nodes = sa.Table(
    "audit_nodes",
    metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(HASH_SIZE), nullable=False),
)

checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root_hash", sa.LargeBinary(HASH_SIZE), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("signed_at", sa.String(32), nullable=False),
)

head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tree_size", sa.BigInteger, nullable=False),
    sa.Column("frontier", sa.LargeBinary, nullable=False),
    # Added after the first release: a server default, so ALTER TABLE can add it to old logs.
    sa.Column("epsilon_micro", sa.BigInteger, nullable=False, server_default=sa.text("0")),
)

epsilon_totals = sa.Table(
    "audit_epsilon",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("epsilon_micro", sa.BigInteger, nullable=False),
)

APPEND_ONLY_TABLES = ("audit_entries", "audit_nodes", "audit_checkpoints")
_PG_LOCK_KEY = 0x5AFE_A0D1  # advisory lock serialising create_schema on PostgreSQL


def _sqlite_triggers(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} refused'); END"
        for op in ("UPDATE", "DELETE")
    ]


# "%%": the driver applies its paramstyle to every statement it is given.
_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '%% is append-only: %% refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$
"""


def _pg_triggers(table: str) -> list[str]:
    return [
        f"CREATE OR REPLACE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
        f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
        # ALWAYS: also fire under session_replication_role = replica.
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_change",
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM PUBLIC",
    ]


def append_only_statements(dialect: str, tables: tuple[str, ...]) -> list[str]:
    """The statements that make ``tables`` refuse UPDATE and DELETE (and TRUNCATE on
    PostgreSQL); idempotent. The service uses them for its ledger too."""
    if dialect == "sqlite":
        return [s for t in tables for s in _sqlite_triggers(t)]
    if dialect == "postgresql":
        return [_PG_FUNCTION, *(s for t in tables for s in _pg_triggers(t))]
    raise NotImplementedError(f"append-only triggers for {dialect} are not written")


def create_schema(engine: sa.Engine) -> None:
    """Create the audit tables, the head row and the append-only triggers (idempotent)."""
    with engine.begin() as conn:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        metadata.create_all(conn)
        for statement in append_only_statements(dialect, APPEND_ONLY_TABLES):
            conn.exec_driver_sql(statement)
        add_epsilon_totals(conn)  # a log from before the running totals
        if conn.execute(sa.select(head.c.id)).first() is None:
            conn.execute(head.insert().values(id=1, tree_size=0, frontier=b"", epsilon_micro=0))


def add_epsilon_totals(conn: sa.Connection) -> bool:
    """Give a log that predates the running ε totals its ``audit_head.epsilon_micro``
    column and ``audit_epsilon`` table, filled from its entries, in the caller's transaction.
    Idempotent: returns False, doing nothing, when the head already has the column (the
    column and the backfill commit together). The head table must exist."""
    if conn.dialect.name == "postgresql":  # re-entrant: create_schema may hold it already
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    if "epsilon_micro" in {c["name"] for c in sa.inspect(conn).get_columns(head.name)}:
        return False
    conn.exec_driver_sql(
        f"ALTER TABLE {head.name} ADD COLUMN epsilon_micro BIGINT NOT NULL DEFAULT 0"
    )
    epsilon_totals.create(conn, checkfirst=True)
    rebuild_epsilon_totals(conn)
    return True


def entry_epsilon(canonical: bytes) -> tuple[str | None, int]:
    """``(project, micro-ε)`` as the canonical bytes of one entry record them; ``(None, 0)``
    for bytes that are not a well-formed entry (``verify`` reports those separately)."""
    try:
        body = json.loads(canonical)
        project, micro = body["project"], body["epsilon_micro"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None, 0
    if isinstance(micro, bool) or not isinstance(micro, int) or micro <= 0:
        return None, 0
    return (project if isinstance(project, str) else None), micro


def count_epsilon(conn: sa.Connection) -> tuple[int, dict[str, int]]:
    """The ε the stored entries carry, recomputed from their canonical bytes: in all, and
    per project (projects with none left out). O(n), for the backfill (``verify`` counts the
    same way in its own pass)."""
    total, per_project = 0, dict[str, int]()
    for row in iter_rows(conn):
        project, micro = entry_epsilon(_as_bytes(row[5]))
        total += micro
        if micro and project is not None:
            per_project[project] = per_project.get(project, 0) + micro
    return total, per_project


def stored_epsilon(conn: sa.Connection) -> tuple[int, dict[str, int]]:
    """The running ε totals as stored (head and ``audit_epsilon``): in all, and per project."""
    total = conn.execute(sa.select(head.c.epsilon_micro).where(head.c.id == 1)).scalar()
    rows = conn.execute(sa.select(epsilon_totals.c.project, epsilon_totals.c.epsilon_micro))
    return int(total or 0), {str(p): int(micro) for p, micro in rows}


def rebuild_epsilon_totals(conn: sa.Connection) -> int:
    """Recompute the running ε totals from the entries and store them (the backfill of an
    older log), holding the head's lock as an append does; returns the total."""
    conn.execute(_TOUCH_HEAD)
    total, per_project = count_epsilon(conn)
    conn.execute(epsilon_totals.delete())
    if per_project:
        conn.execute(
            epsilon_totals.insert(),
            [{"project": p, "epsilon_micro": micro} for p, micro in sorted(per_project.items())],
        )
    conn.execute(head.update().where(head.c.id == 1).values(epsilon_micro=total))
    return total


def _as_bytes(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else b""


@lru_cache(maxsize=8)
def insert_ignoring_duplicates(table: sa.Table, key: str, dialect: str) -> sa.Insert:
    """``INSERT … ON CONFLICT (key) DO NOTHING`` for SQLite and PostgreSQL (built once)."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=[key])
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=[key])


TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> str:
    """UTC time with microseconds, ISO 8601 with a ``Z`` (sorts as text)."""
    return datetime.now(UTC).strftime(TIME_FORMAT)


# Built once: SQLAlchemy then only looks them up in its compiled cache on each append.
_LOCK_HEAD = (
    head.update()
    .where(head.c.id == 1)
    .values(tree_size=head.c.tree_size + 1)
    .returning(head.c.tree_size, head.c.frontier)
)
# The same for an entry carrying ε: the dataset-wide running total grows with the tree.
_LOCK_HEAD_CHARGED = (
    head.update()
    .where(head.c.id == 1)
    .values(
        tree_size=head.c.tree_size + 1,
        epsilon_micro=head.c.epsilon_micro + sa.bindparam("charged", type_=sa.BigInteger),
    )
    .returning(head.c.tree_size, head.c.frontier)
)
_TOUCH_HEAD = head.update().where(head.c.id == 1).values(tree_size=head.c.tree_size)
_SET_FRONTIER = head.update().where(head.c.id == 1).values(frontier=sa.bindparam("new_frontier"))
_READ_HEAD = sa.select(head.c.tree_size, head.c.frontier).where(head.c.id == 1)
_INSERT_ENTRY = entries.insert()
_INSERT_NODE = nodes.insert()


@lru_cache(maxsize=4)
def _add_project_epsilon(dialect: str) -> sa.Insert:
    """``audit_epsilon[project] += epsilon_micro`` as one upsert (built once per dialect)."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(epsilon_totals)
    upsert: sa.Insert = insert.on_conflict_do_update(
        index_elements=[epsilon_totals.c.project],
        set_={"epsilon_micro": epsilon_totals.c.epsilon_micro + insert.excluded.epsilon_micro},
    )
    return upsert


def split_frontier(blob: bytes) -> list[bytes]:
    return [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]


def append_entry(
    conn: sa.Connection,
    *,
    actor: str,
    action: str,
    project: str | None = None,
    request: Mapping[str, Any] | None = None,
    decision: str | None = None,
    reasons: Sequence[str] = (),
    epsilon_micro: int = 0,
    result_digest: str | None = None,
    data_version: str | None = None,
    policy_digest: str | None = None,
) -> AuditEntry:
    """Append one entry inside the caller's transaction and return it.

    The entry commits or rolls back with the caller's other writes (a budget debit, say).
    Content is checked first (``ForbiddenContentError`` for rows, true values, identifiers).
    The head row is locked by an ``UPDATE … RETURNING`` before anything is read, so
    concurrent appenders, threads or processes, queue there and get gap-free unique seqs.
    An entry carrying ε adds it to the running totals (the head's and its project's) under
    that same lock.
    """
    body = check_entry(  # refuse bad content before taking the lock
        actor=actor,
        action=action,
        project=project,
        request=request,
        decision=decision,
        reasons=reasons,
        epsilon_micro=epsilon_micro,
        result_digest=result_digest,
        data_version=data_version,
        policy_digest=policy_digest,
    )
    if epsilon_micro:
        locked = conn.execute(_LOCK_HEAD_CHARGED, {"charged": epsilon_micro}).one()
    else:
        locked = conn.execute(_LOCK_HEAD).one()
    seq, frontier = int(locked.tree_size), split_frontier(locked.frontier)
    entry = seal_entry(body, seq, utc_now())
    created = extend_frontier(frontier, seq - 1, entry.leaf_hash)
    conn.execute(
        _INSERT_ENTRY,
        {
            "seq": seq,
            "time": entry.time,
            "actor": entry.actor,
            "action": entry.action,
            "project": entry.project,
            "canonical": entry.canonical,
            "leaf_hash": entry.leaf_hash,
        },
    )
    if created:
        conn.execute(_INSERT_NODE, [{"level": lv, "idx": i, "hash": h} for lv, i, h in created])
    conn.execute(_SET_FRONTIER, {"new_frontier": b"".join(frontier)})
    if epsilon_micro and project is not None:
        conn.execute(
            _add_project_epsilon(conn.dialect.name),
            {"project": project, "epsilon_micro": epsilon_micro},
        )
    return entry


@dataclass(frozen=True)
class TreeHead:
    """The stored tree size and root."""

    size: int
    root: bytes


def tree_head(conn: sa.Connection) -> TreeHead:
    """Size and root of the log as committed (from the head row's frontier)."""
    row = conn.execute(_READ_HEAD).one()
    return TreeHead(int(row.tree_size), fold_frontier(split_frontier(row.frontier)))


def latest_note(conn: sa.Connection) -> str | None:
    """The signed checkpoint note with the largest tree size, or None."""
    note: str | None = conn.execute(
        sa.select(checkpoints.c.note).order_by(checkpoints.c.tree_size.desc()).limit(1)
    ).scalar_one_or_none()
    return note


def _row_entry(row: Any) -> AuditEntry:
    return entry_from_canonical(bytes(row.canonical), bytes(row.leaf_hash))


def read_entries(
    conn: sa.Connection,
    *,
    since: date | datetime | None = None,
    actor: str | None = None,
    project: str | None = None,
    action: str | None = None,
    limit: int | None = None,
    newest_first: bool = False,
    after_seq: int = 0,
) -> list[AuditEntry]:
    """Entries matching the filters, by seq. ``action`` may end in ``.*`` (``query.*``);
    ``after_seq`` skips the entries up to and including that seq."""
    query = sa.select(entries.c.canonical, entries.c.leaf_hash)
    if after_seq:
        query = query.where(entries.c.seq > after_seq)
    if since is not None:
        if isinstance(since, datetime):
            aware = since if since.tzinfo else since.replace(tzinfo=UTC)
            bound = aware.astimezone(UTC).strftime(TIME_FORMAT)
        else:
            bound = since.isoformat()  # "2026-01-01" sorts before that day's times
        query = query.where(entries.c.time >= bound)
    if actor is not None:
        query = query.where(entries.c.actor == actor)
    if project is not None:
        query = query.where(entries.c.project == project)
    if action is not None:
        if action.endswith(".*"):
            query = query.where(entries.c.action.startswith(action[:-1], autoescape=True))
        else:
            query = query.where(entries.c.action == action)
    query = query.order_by(entries.c.seq.desc() if newest_first else entries.c.seq)
    if limit is not None:
        query = query.limit(limit)
    return [_row_entry(r) for r in conn.execute(query)]


def get_entry(conn: sa.Connection, seq: int) -> AuditEntry | None:
    """The entry with this seq, or None."""
    row = conn.execute(
        sa.select(entries.c.canonical, entries.c.leaf_hash).where(entries.c.seq == seq)
    ).first()
    return None if row is None else _row_entry(row)


def iter_rows(conn: sa.Connection, batch: int = 5000) -> Iterator[tuple[Any, ...]]:
    """Every stored entry row ``(seq, time, actor, action, project, canonical, leaf_hash)``
    in seq order, in batches (keyset pagination keeps memory flat)."""
    last = -1
    cols = [entries.c[n] for n in ("seq", "time", "actor", "action", "project")]
    while True:
        rows = conn.execute(
            sa.select(*cols, entries.c.canonical, entries.c.leaf_hash)
            .where(entries.c.seq > last)
            .order_by(entries.c.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        for row in rows:
            yield tuple(row)
        last = rows[-1][0]


class _StoredNodes:
    """A ``(level, index) -> hash`` lookup over the stored leaves and node cache."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def __call__(self, level: int, index: int) -> bytes:
        if level == 0:
            value = self.conn.execute(
                sa.select(entries.c.leaf_hash).where(entries.c.seq == index + 1)
            ).scalar_one_or_none()
        else:
            value = self.conn.execute(
                sa.select(nodes.c.hash).where(nodes.c.level == level, nodes.c.idx == index)
            ).scalar_one_or_none()
        if value is None:
            raise LookupError(f"the log has no subtree ({level}, {index}): it is incomplete")
        return bytes(value)


def _check_size(conn: sa.Connection, size: int) -> None:
    current = tree_head(conn).size
    if not 0 <= size <= current:
        raise ValueError(f"tree size {size} is outside 0..{current}")


def root_at(conn: sa.Connection, size: int) -> bytes:
    """Root of the first ``size`` entries, from the node cache (O(log n) lookups)."""
    _check_size(conn, size)
    return range_hash(_StoredNodes(conn), 0, size)


def prove_inclusion(conn: sa.Connection, seq: int, size: int) -> list[bytes]:
    """Inclusion proof for entry ``seq`` (leaf ``seq - 1``) in the tree of ``size`` entries."""
    _check_size(conn, size)
    return inclusion_path(_StoredNodes(conn), seq - 1, size)


def prove_consistency(conn: sa.Connection, old_size: int, new_size: int) -> list[bytes]:
    """Consistency proof that the log at ``old_size`` is a prefix of the log at ``new_size``."""
    _check_size(conn, new_size)
    return consistency_path(_StoredNodes(conn), old_size, new_size)
