"""Signed checkpoints (C2SP signed-note / tlog-checkpoint) and the signing key file."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

import audit
from audit.checkpoint import EM_DASH, checkpoint_body, open_checkpoint

from .conftest import append


def test_key_is_created_once_with_mode_0600(tmp_path: Path):
    path = tmp_path / "home" / "checkpoint.key"
    key = audit.load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith(f"PRIVATE+KEY+{audit.DEFAULT_ORIGIN}+")
    again = audit.load_or_create_key(path)
    assert str(again.verifier) == str(key.verifier)
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.key"]  # no temp file left


def test_key_is_never_world_readable_even_with_a_lax_umask(tmp_path: Path):
    old = os.umask(0)
    try:
        path = tmp_path / "checkpoint.key"
        audit.load_or_create_key(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_racing_creators_share_one_key(tmp_path: Path):
    path = tmp_path / "checkpoint.key"
    keys: list[str] = []
    threads = [
        threading.Thread(target=lambda: keys.append(str(audit.load_or_create_key(path).verifier)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1
    assert len(keys) == 8


def test_a_group_readable_key_is_refused(tmp_path: Path):
    path = tmp_path / "checkpoint.key"
    audit.load_or_create_key(path)
    path.chmod(0o640)
    with pytest.raises(audit.KeyFileError, match="chmod 600"):
        audit.load_or_create_key(path)


def test_verifier_key_format_and_key_id():
    key = audit.SigningKey.generate("log.example/x")
    name, hex_id, encoded = str(key.verifier).split("+", 2)
    raw = base64.b64decode(encoded)
    assert name == "log.example/x"
    assert raw[0] == 1
    assert len(raw) == 33
    assert hex_id == hashlib.sha256(b"log.example/x\n\x01" + raw[1:]).digest()[:4].hex()
    assert audit.VerifierKey.parse(str(key.verifier)) == key.verifier
    with pytest.raises(audit.CheckpointError):
        audit.VerifierKey.parse(f"{name}+00000000+{encoded}")


def test_checkpoint_note_layout_and_round_trip():
    key = audit.SigningKey.generate()
    root = hashlib.sha256(b"r").digest()
    note = key.sign_note(checkpoint_body(key.name, 42, root))
    lines = note.split("\n")
    assert lines[:3] == [key.name, "42", base64.b64encode(root).decode()]
    assert lines[3] == ""
    assert lines[4].startswith(f"{EM_DASH} {key.name} ")
    assert lines[5] == ""
    sig = base64.b64decode(lines[4].split(" ")[2])
    assert sig[:4] == key.verifier.key_id
    assert len(sig) == 68
    cp = open_checkpoint(note, key.verifier)
    assert (cp.origin, cp.size, cp.root) == (key.name, 42, root)


def test_checkpoint_signed_by_another_key_is_rejected():
    mine, other = audit.SigningKey.generate(), audit.SigningKey.generate()
    note = other.sign_note(checkpoint_body(mine.name, 1, bytes(32)))
    with pytest.raises(audit.CheckpointError, match="not signed by"):
        open_checkpoint(note, mine.verifier)


def test_checkpoint_with_forged_signature_or_edited_body_is_rejected():
    key = audit.SigningKey.generate()
    note = key.sign_note(checkpoint_body(key.name, 5, bytes(32)))
    with pytest.raises(audit.CheckpointError, match="does not verify"):
        open_checkpoint(note.replace("\n5\n", "\n6\n", 1), key.verifier)
    # Same name and key id, another key's signature bytes.
    impostor = audit.SigningKey(key.name, audit.SigningKey.generate().private_key)
    forged = impostor.sign_note(checkpoint_body(key.name, 5, bytes(32)))
    head, sig = forged.rsplit(" ", 1)
    blob = base64.b64decode(sig)
    forged = f"{head} {base64.b64encode(key.verifier.key_id + blob[4:]).decode()}\n"
    with pytest.raises(audit.CheckpointError, match="does not verify"):
        open_checkpoint(forged, key.verifier)
    for junk in ("", "no signature\n", note.replace(EM_DASH, "--")):
        with pytest.raises(audit.CheckpointError):
            open_checkpoint(junk, key.verifier)


def test_witness_cosignatures_are_ignored():
    key, witness = audit.SigningKey.generate(), audit.SigningKey.generate("witness.example")
    body = checkpoint_body(key.name, 3, bytes(32))
    note = key.sign_note(body)
    extra = witness.sign_note(body).rsplit("\n\n", 1)[1]
    assert open_checkpoint(note + extra, key.verifier).size == 3


def test_sign_checkpoint_after_each_commit(engine, key):
    cp0 = audit.sign_checkpoint(engine, key)
    assert cp0.size == 0
    assert cp0.root == audit.root_hash([])
    append(engine, 3, key)
    note = audit.latest_checkpoint(engine)
    cp = open_checkpoint(note, key.verifier)
    with engine.connect() as conn:
        assert cp.size == 3
        assert cp.root == audit.tree_head(conn).root
    assert audit.sign_checkpoint(engine, key).note == note  # idempotent for the same size


def test_sign_checkpoint_inside_the_transaction_commits_or_rolls_back_with_it(engine, key):
    with engine.begin() as conn:
        audit.append_entry(conn, actor="a", action="query.released")
        cp = audit.sign_checkpoint(conn, key)
    assert cp.size == 1
    assert audit.latest_checkpoint(engine) == cp.note

    def append_sign_fail() -> None:
        with engine.begin() as conn:
            audit.append_entry(conn, actor="a", action="query.released")
            assert audit.sign_checkpoint(conn, key).size == 2
            raise RuntimeError("the query failed after signing")

    with pytest.raises(RuntimeError):
        append_sign_fail()
    assert audit.latest_checkpoint(engine) == cp.note
    assert audit.verify_log(engine, public_key=str(key.verifier)).checkpoints == (("stored", 1),)
