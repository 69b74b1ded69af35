"""What the log hands to outsiders: inclusion and consistency proofs, and a JSONL export.

Everything here is plain JSON with base64 hashes (as in C2SP checkpoints), checkable with
``hashlib`` and an Ed25519 library: see the README's "Verify an export offline".
"""

from __future__ import annotations

import base64
import json
from typing import Any, TextIO

import sqlalchemy as sa

from audit import store
from audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    SigningKey,
    VerifierKey,
    only_signed_by,
    sign_checkpoint,
)
from audit.keys import note_at, read_history
from audit.merkle import verify_consistency, verify_inclusion

EXPORT_FORMAT = "safesetting-audit-export/1"


class ProofError(RuntimeError):
    """The stored log failed to prove something it should (it has been tampered with)."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _signed(
    engine: sa.Engine, key: SigningKey, size: int | None
) -> tuple[Checkpoint, VerifierKey] | None:
    """The signed checkpoint for ``size`` (default: the current head, signed now if needed)
    and the key that signed it: the key in force at that size, which after a key rotation
    need not be ``key`` (see ``audit.keys``)."""
    with engine.connect() as conn:
        history = read_history(conn)
        at = store.tree_head(conn).size if size is None else size
        note = conn.execute(
            sa.select(store.checkpoints.c.note).where(store.checkpoints.c.tree_size == at)
        ).scalar_one_or_none()
    if note is not None:
        return history.open(note, key.verifier)
    if size is not None:
        return None
    if history.current not in (None, key.verifier):
        raise CheckpointError(f"{key.verifier} is no longer the log's key: it may not sign")
    return sign_checkpoint(engine, key), key.verifier


def inclusion_bundle(
    engine: sa.Engine, key: SigningKey, seq: int, size: int | None = None
) -> dict[str, Any]:
    """Entry ``seq``, its inclusion proof in the tree of ``size`` entries (default: the
    latest, freshly signed) and the signed checkpoint for that size when one is stored."""
    signed = _signed(engine, key, size)
    checkpoint, signer = signed if signed else (None, key.verifier)
    with engine.connect() as conn:
        tree_size = checkpoint.size if checkpoint else int(size or 0)
        entry = store.get_entry(conn, seq)
        if entry is None or seq > tree_size:
            raise LookupError(f"no entry {seq} in a log of {tree_size} entries")
        proof = store.prove_inclusion(conn, seq, tree_size)
        root = store.root_at(conn, tree_size)
    if not verify_inclusion(entry.leaf_hash, seq - 1, tree_size, proof, root):
        raise ProofError(f"the stored log does not prove entry {seq}: run audit verify")
    return {
        "seq": seq,
        "leaf_index": seq - 1,
        "tree_size": tree_size,
        "entry": entry.canonical.decode(),
        "leaf_hash": b64(entry.leaf_hash),
        "proof": [b64(p) for p in proof],
        "root_hash": b64(root),
        "checkpoint": checkpoint.note if checkpoint else None,
        "public_key": str(signer),
    }


def consistency_bundle(
    engine: sa.Engine, key: SigningKey, old_size: int, new_size: int | None = None
) -> dict[str, Any]:
    """Proof that the log at ``old_size`` is a prefix of the log at ``new_size``.

    From size 0 every log is consistent (nothing to prove): the proof is empty and
    ``consistent`` is true, which the RFC verifier itself would refuse to say.
    """
    signed = _signed(engine, key, new_size)
    checkpoint, signer = signed if signed else (None, key.verifier)
    with engine.connect() as conn:
        size = checkpoint.size if checkpoint else int(new_size or 0)
        proof = store.prove_consistency(conn, old_size, size)
        old_root, new_root = store.root_at(conn, old_size), store.root_at(conn, size)
    ok = old_size == 0 or verify_consistency(old_size, size, old_root, new_root, proof)
    return {
        "old_size": old_size,
        "new_size": size,
        "old_root_hash": b64(old_root),
        "new_root_hash": b64(new_root),
        "proof": [b64(p) for p in proof],
        "consistent": ok,
        "checkpoint": checkpoint.note if checkpoint else None,
        "public_key": str(signer),
    }


def export_jsonl(engine: sa.Engine, key: SigningKey, out: TextIO) -> Checkpoint:
    """Write the log as JSON lines: a header with the signed checkpoint and public key, then
    one ``{"seq", "entry", "leaf_hash"}`` line per entry up to the checkpoint's size.

    The header's checkpoint carries the signature of the key in force alone (so a reader
    that expects one signature line gets one); after key rotations, ``rotations`` lists
    each rotation's entry and its checkpoint, signed by the old key and the new, so someone
    holding an older key can follow the handovers (see README, "Verify an export offline").
    """
    signed = _signed(engine, key, None)
    assert signed is not None  # the head is always signed here
    checkpoint, signer = signed
    with engine.connect() as conn:
        rotations = [
            {"seq": r.seq, "checkpoint": note_at(conn, r.seq)}
            for r in read_history(conn).rotations
            if r.seq <= checkpoint.size
        ]
    header: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "origin": checkpoint.origin,
        "tree_size": checkpoint.size,
        "root_hash": b64(checkpoint.root),
        "checkpoint": only_signed_by(checkpoint.note, signer),
        "public_key": str(signer),
    }
    if rotations:
        header["rotations"] = rotations
    out.write(json.dumps(header, ensure_ascii=False) + "\n")
    with engine.connect() as conn:
        for seq, *_cols, canonical, leaf in store.iter_rows(conn):
            if seq > checkpoint.size:
                break
            line = {"seq": seq, "entry": bytes(canonical).decode(), "leaf_hash": b64(bytes(leaf))}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return checkpoint
