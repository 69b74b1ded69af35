"""The log's signing keys over time, read from the log itself.

A key rotation is an ordinary entry, action ``key.rotated``, whose request names the key
that hands over (``previous_public_key``) and the key that takes over (``public_key``), both
as verifier keys (``name+id+base64``). The checkpoint at that entry's size is signed by
both keys: the old key vouches for a tree that names its successor, and the new key shows
it exists. Checkpoints of smaller sizes are the old key's, larger ones the new key's::

    sizes  0 ........ r ........ s ........
    keys   K0 ------- K0+K1 ---- K1 ------- (K1+K2 at the next rotation, and so on)

So whoever holds any one of the log's keys, published at any time, can follow the chain
forwards and backwards; a checkpoint signed by a key the log never introduced, or by an old
key after it handed over, is rejected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from audit import store
from audit.checkpoint import Checkpoint, CheckpointError, VerifierKey, open_checkpoint

ROTATED = "key.rotated"


@dataclass(frozen=True)
class Rotation:
    """Entry ``seq`` hands signing over from ``previous`` to ``new``."""

    seq: int
    previous: VerifierKey
    new: VerifierKey

    @classmethod
    def from_request(cls, seq: int, request: Any) -> Rotation:
        """The rotation a ``key.rotated`` entry records (``CheckpointError`` if malformed)."""
        if not isinstance(request, dict):
            raise CheckpointError(f"entry {seq}: a key rotation without its keys")
        try:
            previous = VerifierKey.parse(str(request["previous_public_key"]))
            new = VerifierKey.parse(str(request["public_key"]))
        except (KeyError, CheckpointError) as exc:
            raise CheckpointError(f"entry {seq}: a key rotation with a malformed key") from exc
        if new == previous or new.name != previous.name:
            raise CheckpointError(f"entry {seq}: a key rotation must keep the name, not the key")
        return cls(seq, previous, new)


@dataclass(frozen=True)
class KeyPeriod:
    """``key`` signs the checkpoints of sizes ``start`` to ``end`` (inclusive; ``None``: it is
    the key in force). ``rotation`` is the entry that introduced it (``None`` for the first)."""

    key: VerifierKey
    start: int
    end: int | None
    rotation: int | None = None

    def covers(self, size: int) -> bool:
        return self.start <= size and (self.end is None or size <= self.end)

    def to_json(self) -> dict[str, Any]:
        return {
            "public_key": str(self.key),
            "from_size": self.start,
            "until_size": self.end,
            "rotation_seq": self.rotation,
        }


@dataclass(frozen=True)
class KeyHistory:
    """The rotations a log records, oldest first."""

    rotations: tuple[Rotation, ...] = ()

    @property
    def current(self) -> VerifierKey | None:
        """The key the last rotation put in force (``None`` if the log never rotated)."""
        return self.rotations[-1].new if self.rotations else None

    def breaks(self) -> list[tuple[int, str]]:
        """Rotations that do not hand over from the key then in force: (seq, message)."""
        found = []
        for before, after in zip(self.rotations, self.rotations[1:], strict=False):
            if after.previous != before.new:
                found.append(
                    (after.seq, f"entry {after.seq}: the key rotation hands over from "
                     f"{after.previous.key_id.hex()}, not from the key in force "
                     f"({before.new.key_id.hex()}, since entry {before.seq})")
                )  # fmt: skip
        return found

    def keys(self) -> list[VerifierKey]:
        if not self.rotations:
            return []
        return [self.rotations[0].previous, *(r.new for r in self.rotations)]

    def periods(self, anchor: VerifierKey | None) -> tuple[KeyPeriod, ...]:
        """The keys someone holding ``anchor`` can check the log with, and when each signs.

        Without rotations that is ``anchor`` alone, for every size (the log's one key). With
        rotations it is the log's chain of keys, provided ``anchor`` is one of them (each
        link is signed by both its keys, so any one key vouches for the whole chain); a key
        outside the chain gets itself alone, so nothing signed by the log's keys verifies.
        """
        if not self.rotations or (anchor is not None and anchor not in self.keys()):
            return () if anchor is None else (KeyPeriod(anchor, 0, None),)
        first = self.rotations[0]
        found = [KeyPeriod(first.previous, 0, first.seq)]
        for i, rotation in enumerate(self.rotations):
            end = self.rotations[i + 1].seq if i + 1 < len(self.rotations) else None
            found.append(KeyPeriod(rotation.new, rotation.seq, end, rotation.seq))
        return tuple(found)

    def open(self, note: str, anchor: VerifierKey) -> tuple[Checkpoint, VerifierKey]:
        """Open ``note`` with a key, trusted through ``anchor``, that signs its size (the
        newest such key first).

        ``CheckpointError`` otherwise: naming an old key that signed a size after it handed
        over (what a stolen retired key would do), else why the signature failed.
        """
        periods = self.periods(anchor)
        misplaced: list[str] = []
        failed: list[CheckpointError] = []
        for period in reversed(periods):
            try:
                cp = open_checkpoint(note, period.key)
            except CheckpointError as exc:
                failed.append(exc)
                continue
            if period.covers(cp.size):
                return cp, period.key
            until = "now" if period.end is None else str(period.end)
            misplaced.append(
                f"checkpoint at size {cp.size} is signed by key {period.key.key_id.hex()}, "
                f"which signs sizes {period.start} to {until} only"
            )
        if misplaced:
            raise CheckpointError(misplaced[0])
        if len(failed) == 1:
            raise failed[0]
        bad = [e for e in failed if "is not signed by" not in str(e)]
        if bad:
            raise bad[0]
        ids = ", ".join(p.key.key_id.hex() for p in periods)
        raise CheckpointError(f"checkpoint is not signed by any of the log's keys ({ids})")


def read_history(conn: sa.Connection) -> KeyHistory:
    """The rotations recorded in the log (its ``action`` index makes this cheap).

    ``CheckpointError`` if a rotation entry is malformed: ``verify_log`` says which.
    """
    rows = conn.execute(
        sa.select(store.entries.c.seq, store.entries.c.canonical)
        .where(store.entries.c.action == ROTATED)
        .order_by(store.entries.c.seq)
    ).all()
    rotations = []
    for seq, canonical in rows:
        try:
            request = json.loads(bytes(canonical))["request"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"entry {seq}: a malformed key rotation") from exc
        rotations.append(Rotation.from_request(int(seq), request))
    return KeyHistory(tuple(rotations))


def note_at(conn: sa.Connection, size: int) -> str | None:
    """The stored signed checkpoint for ``size``, if any."""
    note: str | None = conn.execute(
        sa.select(store.checkpoints.c.note).where(store.checkpoints.c.tree_size == size)
    ).scalar_one_or_none()
    return note
