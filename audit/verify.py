"""Verify the whole log: every leaf, every cached node, the head, and signed checkpoints.

What is checked, in one pass over the entries in seq order:

* seqs run 1, 2, 3 … with no gap (a deleted entry is named);
* each entry's stored leaf hash is the hash of its canonical bytes, and the seq, time,
  actor, action and project inside those bytes match the row (a moved, reordered or
  edited entry is named);
* the cached subtree nodes and the head row match what the entries hash to;
* the running ε totals (the head's, and each project's in ``audit_epsilon``) equal the ε
  the entries carry;
* the latest stored checkpoint and any given (published) checkpoint carry a valid
  signature by the log's key and match the recomputed root at their size; a checkpoint
  larger than the log means entries were cut off the end;
* each key rotation (a ``key.rotated`` entry, see ``audit.keys``) hands over from the key
  then in force, and its checkpoint is signed by both keys and matches the root there; a
  checkpoint is checked with the key in force at its size, so the log's first key, any
  later one or the current one may be the one given.

When a checkpoint's root does not match but no single entry looks wrong (someone rewrote an
entry *and* its hashes), the stored signed checkpoints are searched for the first size
whose signed root disagrees: with a checkpoint per commit, that names the entry.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from audit import store
from audit.canonical import micro_to_epsilon
from audit.checkpoint import Checkpoint, CheckpointError, VerifierKey, open_checkpoint
from audit.keys import ROTATED, KeyHistory, KeyPeriod, Rotation, note_at
from audit.merkle import (
    EMPTY_ROOT,
    extend_frontier,
    fold_frontier,
    leaf_hash,
    node_lookup,
    range_hash,
)

MAX_PROBLEMS = 50
_DECODE = json.JSONDecoder().decode
_COLUMNS = ("time", "actor", "action", "project")


@dataclass(frozen=True)
class Problem:
    """One finding; ``seq`` names the entry when one can be named."""

    seq: int | None
    code: str
    message: str


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of ``verify_log``: ``ok`` only if every check passed."""

    size: int
    root: bytes
    problems: tuple[Problem, ...]
    #: (``"stored"`` or ``"given"``, tree size) of each checkpoint whose signature and root held
    checkpoints: tuple[tuple[str, int], ...] = ()
    public_key: str | None = None
    #: the keys the log was checked with, and the sizes each signs (see ``audit.keys``)
    keys: tuple[KeyPeriod, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        named = [p.seq for p in self.problems if p.seq is not None]
        return min(named) if named else None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tree_size": self.size,
            "root_hash": self.root.hex(),
            "first_bad_seq": self.first_bad_seq,
            "problems": [
                {"seq": p.seq, "code": p.code, "message": p.message} for p in self.problems
            ],
            "checkpoints_verified": [{"source": s, "tree_size": n} for s, n in self.checkpoints],
            "public_key": self.public_key,
            "keys": [k.to_json() for k in self.keys],
        }


@dataclass
class _Scan:
    problems: list[Problem] = field(default_factory=list)
    leaves: list[bytes] = field(default_factory=list)
    frontier: list[bytes] = field(default_factory=list)
    roots: dict[int, bytes] = field(default_factory=lambda: {0: EMPTY_ROOT})
    epsilon_micro: int = 0  # the ε the entries carry, in all and per project
    epsilon_by_project: dict[str, int] = field(default_factory=dict)
    rotations: list[tuple[int, Any]] = field(default_factory=list)  # (seq, request)

    def add(self, seq: int | None, code: str, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(seq, code, message))


def _as_bytes(value: object) -> bytes:
    """Stored bytes as bytes, whatever an intruder left in the column (SQLite columns are
    dynamically typed: ``canonical || ' '`` turns a BLOB into TEXT)."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return repr(value).encode()


def _scan_entries(conn: sa.Connection, scan: _Scan, sizes: set[int]) -> None:
    rows = conn.execute(sa.select(store.nodes)).all()  # one fetch, not a round trip per row
    stored_nodes = {(lv, i): h if type(h) is bytes else _as_bytes(h) for lv, i, h in rows}
    expected = 1
    for seq, *cols, canonical, stored_leaf in store.iter_rows(conn):
        if not isinstance(seq, int):  # SQLite lets an intruder store any type in any column
            scan.add(
                expected, "malformed_entry", f"a row after entry {expected - 1} has seq {seq!r}"
            )
            continue
        if seq != expected:
            scan.add(
                expected,
                "missing_entry",
                f"entry {expected} is missing (the next stored entry is {seq})",
            )
            expected = seq
        if type(canonical) is not bytes:  # the fast path is the common one: 100k rows/s
            canonical = _as_bytes(canonical)
        leaf = leaf_hash(canonical)
        if stored_leaf != leaf and _as_bytes(stored_leaf) != leaf:
            scan.add(
                seq,
                "leaf_hash_mismatch",
                f"entry {seq}: stored leaf hash does not match its contents",
            )
        try:
            body = _DECODE(canonical.decode())
            recorded = (body["seq"], *(body[c] for c in _COLUMNS))
            micro = body["epsilon_micro"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            scan.add(seq, "malformed_entry", f"entry {seq}: contents are not a well-formed entry")
        else:
            if recorded[3] == ROTATED:
                scan.rotations.append((seq, body.get("request")))
                sizes.add(len(scan.leaves) + 1)  # its checkpoint's root is checked too
            if type(micro) is int and micro > 0:  # as append_entry counts it
                scan.epsilon_micro += micro
                if type(project := recorded[4]) is str:
                    totals = scan.epsilon_by_project
                    totals[project] = totals.get(project, 0) + micro
            if recorded[0] != seq:
                scan.add(
                    seq,
                    "moved_entry",
                    f"entry {seq}: its contents say seq {recorded[0]} (moved/reordered)",
                )
            elif tuple(recorded[1:]) != tuple(cols):
                scan.add(
                    seq,
                    "column_mismatch",
                    f"entry {seq}: table columns differ from its hashed contents",
                )
        n = len(scan.leaves)
        for level, index, h in extend_frontier(scan.frontier, n, leaf):
            if stored_nodes.pop((level, index), None) != h:
                first = index * (1 << level) + 1
                scan.add(
                    None,
                    "node_mismatch",
                    f"cached subtree over entries {first}..{n + 1} does not match",
                )
        scan.leaves.append(leaf)
        if n + 1 in sizes:
            scan.roots[n + 1] = fold_frontier(scan.frontier)
        expected += 1
    if stored_nodes:
        scan.add(
            None,
            "node_mismatch",
            f"{len(stored_nodes)} cached subtree(s) lie beyond the log's entries",
        )


def _check_head(conn: sa.Connection, scan: _Scan) -> None:
    row = conn.execute(sa.select(store.head.c.tree_size, store.head.c.frontier)).one()
    size, n = int(row.tree_size), len(scan.leaves)
    if size != n:
        first = min(size, n) + 1
        scan.add(first, "head_mismatch", f"the head records {size} entries but the log holds {n}")
    elif store.split_frontier(row.frontier) != scan.frontier:
        scan.add(None, "head_mismatch", "the head's cached frontier does not match the entries")


def _shown(micro: int) -> str:
    return f"ε {micro_to_epsilon(micro):f}"


def _check_epsilon(conn: sa.Connection, scan: _Scan) -> None:
    """The running ε totals against the ε the entries carry (what the budget ledger is
    compared with before each debit, so a total edited to match an edited ledger shows)."""
    total, per_project = store.stored_epsilon(conn)
    if total != scan.epsilon_micro:
        scan.add(
            None,
            "epsilon_total_mismatch",
            f"the head's running total records {_shown(total)} but the entries carry "
            f"{_shown(scan.epsilon_micro)}",
        )
    for project in sorted(set(per_project) | set(scan.epsilon_by_project)):
        stored, carried = per_project.get(project, 0), scan.epsilon_by_project.get(project, 0)
        if stored != carried:
            scan.add(
                None,
                "epsilon_total_mismatch",
                f"the running total for project {project} records {_shown(stored)} but its "
                f"entries carry {_shown(carried)}",
            )


def _localise(
    conn: sa.Connection, scan: _Scan, history: KeyHistory, verifier: VerifierKey
) -> int | None:
    """The first entry a stored, validly signed checkpoint disagrees with (bisection).

    If checkpoint ``s`` disagrees and the one before it, ``p``, agrees, the change lies in
    entries ``p + 1 .. s``: with a checkpoint per commit that is exactly one entry;
    otherwise ``p + 1`` is the earliest entry that may be bad.
    """
    lookup = node_lookup(scan.leaves)
    notes = conn.execute(
        sa.select(store.checkpoints.c.tree_size, store.checkpoints.c.note)
        .where(store.checkpoints.c.tree_size <= len(scan.leaves))
        .order_by(store.checkpoints.c.tree_size)
    ).all()

    def disagrees(i: int) -> bool:
        size, note = int(notes[i][0]), notes[i][1]
        try:
            cp, _ = history.open(note, verifier)
        except CheckpointError:
            return False  # an unsigned/forged row proves nothing either way
        return cp.size != size or cp.root != range_hash(lookup, 0, size)

    lo = bisect.bisect_left(range(len(notes)), True, key=disagrees)
    if lo == len(notes):
        return None
    return int(notes[lo - 1][0]) + 1 if lo else 1


def verify_log(
    engine: sa.Engine,
    checkpoint_text: str | None = None,
    public_key: str | VerifierKey | None = None,
) -> VerifyResult:
    """Recompute the log from its entries and check it against the stored head and nodes,
    the latest stored checkpoint and ``checkpoint_text`` (a published checkpoint, if given).

    ``public_key`` is the log's verifier key (``name+id+base64``); without it any
    checkpoint present is a problem, since its signature cannot be checked.
    """
    verifier = VerifierKey.parse(public_key) if isinstance(public_key, str) else public_key
    scan = _Scan()
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # One snapshot for the whole pass, so appends made meanwhile are not half-seen.
            # (SQLite engines from safesetting.db begin IMMEDIATE: writers wait meanwhile.)
            conn.execution_options(isolation_level="REPEATABLE READ")
        stored = store.latest_note(conn)
        notes = [("stored", stored)] if stored else []
        if checkpoint_text is not None:
            notes.append(("given", checkpoint_text))
        # Which key checks a checkpoint depends on the rotations the entries record, so the
        # signatures are checked after the pass; the roots it keeps are at the claimed sizes.
        _scan_entries(conn, scan, {s for _, note in notes if (s := _claimed_size(note))})
        _check_head(conn, scan)
        _check_epsilon(conn, scan)
        history = _rotations(scan)
        checkpoints: list[tuple[str, Checkpoint]] = []
        for label, note in notes:
            if verifier is None:
                scan.add(
                    None,
                    "no_public_key",
                    f"no public key given: cannot check the {label} checkpoint",
                )
                continue
            try:
                cp, key = history.open(note, verifier)
            except CheckpointError as exc:
                scan.add(None, "checkpoint_rejected", f"{label} checkpoint rejected: {exc}")
                continue
            if cp.origin != key.name:
                scan.add(None, "checkpoint_rejected", f"{label} checkpoint is for {cp.origin}")
                continue
            checkpoints.append((label, cp))
        n, good = len(scan.leaves), _check_rotations(conn, scan, history)
        for label, cp in checkpoints:
            if cp.size > n:
                gone = f"entries {n + 1}..{cp.size} are gone"
                scan.add(n + 1, "log_truncated", f"the {label} checkpoint covers {cp.size} "
                         f"entries but the log holds {n}: {gone}")  # fmt: skip
            elif cp.root != scan.roots[cp.size]:
                seq = _localise(conn, scan, history, verifier) if verifier else None
                scan.add(
                    seq,
                    "checkpoint_mismatch",
                    f"the log's root at size {cp.size} differs from the {label} checkpoint",
                )
            else:
                good.append((label, cp.size))
    return VerifyResult(
        size=len(scan.leaves),
        root=fold_frontier(scan.frontier),
        problems=tuple(scan.problems),
        checkpoints=tuple(good),
        public_key=str(verifier) if verifier else None,
        keys=history.periods(verifier),
    )


def _claimed_size(note: str) -> int | None:
    """The tree size a checkpoint says it covers, before its signature is checked."""
    lines = note.split("\n", 2)
    return int(lines[1]) if len(lines) > 2 and lines[1].isdigit() else None


def _rotations(scan: _Scan) -> KeyHistory:
    """The key rotations the entries record; malformed ones and ones that do not hand over
    from the key then in force are problems."""
    found = []
    for seq, request in scan.rotations:
        try:
            found.append(Rotation.from_request(seq, request))
        except CheckpointError as exc:
            scan.add(seq, "rotation_rejected", str(exc))
    history = KeyHistory(tuple(found))
    for seq, message in history.breaks():
        scan.add(seq, "rotation_rejected", message)
    return history


def _check_rotations(
    conn: sa.Connection, scan: _Scan, history: KeyHistory
) -> list[tuple[str, int]]:
    """Each rotation's checkpoint: signed by the key handing over (which vouches for a tree
    naming its successor) and by the new key, at the rotation's size, over the log's root
    there. Returns ``("rotation", size)`` for each that holds."""
    good = []
    for rotation in history.rotations:
        size = rotation.seq
        note = note_at(conn, size)
        what = f"entry {size}: the key rotation's checkpoint"
        if note is None:
            scan.add(size, "rotation_rejected", f"{what} is missing")
            continue
        try:
            old = open_checkpoint(note, rotation.previous)
            new = open_checkpoint(note, rotation.new)
        except CheckpointError as exc:
            scan.add(size, "rotation_rejected", f"{what} is not signed by both keys: {exc}")
            continue
        if old.size != size or new.size != size:
            scan.add(size, "rotation_rejected", f"{what} is for size {old.size}")
        elif size in scan.roots and old.root != scan.roots[size]:
            scan.add(size, "checkpoint_mismatch", f"{what} does not match the log's root there")
        elif size in scan.roots:
            good.append(("rotation", size))
    return good
