"""`safesetting admin key rotate`: a new signing key, vouched for by the old one in the log.

The rotation is an audit entry (``key.rotated``, both public keys) whose checkpoint both keys
sign; smaller sizes are the old key's, larger ones the new key's. `audit verify` follows the
handover from any of the log's keys; a key the log never introduced is refused as before; a
rotation that fails midway leaves the home as it was; running processes follow the rotation.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

import audit
from policies.load import write_default_policy
from safesetting import control as control_module
from safesetting import key_rotation
from safesetting.client import HttpBackend
from safesetting.control import open_control
from safesetting.db import make_engine
from safesetting.home import Home
from tests.functional.admin_helpers import add_researcher, engine, entries, run, run_json

README = Path(__file__).resolve().parents[2] / "README.md"
ROTATE = ("admin", "key", "rotate")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, monkeypatch):
    """Each test on the home's SQLite database and on PostgreSQL (SAFESETTING_DB_URL)."""
    if request.param == "sqlite":
        monkeypatch.delenv("SAFESETTING_DB_URL", raising=False)
        yield None
        return
    url = request.getfixturevalue("pg_url")()
    monkeypatch.setenv("SAFESETTING_DB_URL", url)
    yield url
    make_engine(url).dispose()


@pytest.fixture
def home(tmp_path, runner, db):  # noqa: ARG001 - db sets the environment
    home = tmp_path / "home"
    run(runner, home, "init")
    add_researcher(runner, home, "ada")
    return home


def key_of(home: Path) -> audit.SigningKey:
    return audit.load_key(home / "checkpoint.key")


def public_key(runner, home: Path) -> str:
    return run(runner, home, "audit", "checkpoint", "--public-key").stdout.strip()


def checkpoint(runner, home: Path, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text(run(runner, home, "audit", "checkpoint").stdout)
    return path


def opens(note: str, key: str) -> bool:
    try:
        audit.open_checkpoint(note, audit.VerifierKey.parse(key))
    except audit.CheckpointError:
        return False
    return True


def leftovers(home: Path) -> list[str]:
    """Key files other than checkpoint.key: a set-aside old key or a staged new one."""
    return sorted(p.name for p in home.iterdir() if "checkpoint.key" in p.name and
                  p.name != "checkpoint.key")  # fmt: skip


# --- a rotation, and what it leaves --------------------------------------------------------


def test_rotation_is_logged_signed_by_both_keys_and_verify_follows_it(runner, home, tmp_path):
    k0 = public_key(runner, home)
    before = checkpoint(runner, home, tmp_path, "before.txt")
    size_before = int(before.read_text().split("\n")[1])

    body = run_json(runner, home, *ROTATE)
    assert set(body) == {"audit_seq", "tree_size", "previous_public_key", "public_key",
                         "checkpoint"}  # fmt: skip
    k1, seq = body["public_key"], body["audit_seq"]
    assert body["previous_public_key"] == k0 != k1
    assert body["tree_size"] == seq == size_before + 1
    assert str(key_of(home).verifier) == k1 == public_key(runner, home)
    assert (home / "checkpoint.key").stat().st_mode & 0o777 == 0o600
    assert leftovers(home) == []

    # What an auditor sees in the log: the handover, by the operator, public keys only.
    entry = entries(home)[-1]
    assert (entry.seq, entry.action) == (seq, "key.rotated")
    assert entry.actor.startswith("admin:")
    assert dict(entry.request or {}) == {"previous_public_key": k0, "public_key": k1}
    # ... and its checkpoint, signed by the old key (vouching) and the new one.
    assert opens(body["checkpoint"], k0)
    assert opens(body["checkpoint"], k1)
    assert body["checkpoint"].split("\n")[1] == str(seq)

    add_researcher(runner, home, "bob")  # later checkpoints are the new key's alone
    after = checkpoint(runner, home, tmp_path, "after.txt")
    assert opens(after.read_text(), k1)
    assert not opens(after.read_text(), k0)

    out = run(runner, home, "audit", "verify").stdout
    assert f"key rotation at entry {seq}: signed by the old and the new key" in out
    for key, published in ((k0, before), (k1, after), (k0, after), (k1, before)):
        run(runner, home, "audit", "verify", "--public-key", key, "--checkpoint", str(published))
    result = run_json(runner, home, "audit", "verify", "--public-key", k0)
    assert result["ok"]
    assert {"source": "rotation", "tree_size": seq} in result["checkpoints_verified"]
    assert [(k["public_key"], k["from_size"], k["until_size"]) for k in result["keys"]] == [
        (k0, 0, seq),
        (k1, seq, None),
    ]

    # Proofs name the key that signed the checkpoint they come with.
    old = run_json(runner, home, "audit", "prove", "2", "--size", str(size_before))
    assert old["public_key"] == k0
    assert opens(old["checkpoint"], k0)
    new = run_json(runner, home, "audit", "prove", "2")
    assert new["public_key"] == k1
    assert opens(new["checkpoint"], k1)


def test_text_output_names_both_keys(runner, home):
    k0 = public_key(runner, home)
    out = run(runner, home, *ROTATE).stdout
    k1 = public_key(runner, home)
    assert re.search(r"Rotated the audit signing key at audit entry \d+", out)
    assert f"retired:  {k0}" in out
    assert f"in force: {k1}" in out


def test_two_rotations_in_a_row(runner, home, tmp_path):
    k0 = public_key(runner, home)
    first = run_json(runner, home, *ROTATE)
    second = run_json(runner, home, *ROTATE)
    k1, k2 = first["public_key"], second["public_key"]
    assert second["previous_public_key"] == k1
    assert second["audit_seq"] == first["audit_seq"] + 1
    assert len({k0, k1, k2}) == 3
    assert opens(second["checkpoint"], k1)
    assert opens(second["checkpoint"], k2)
    assert not opens(second["checkpoint"], k0)
    latest = checkpoint(runner, home, tmp_path, "latest.txt")
    for key in (k0, k1, k2):  # whichever key someone kept, the chain leads to the latest
        run(runner, home, "audit", "verify", "--public-key", key, "--checkpoint", str(latest))
    keys = run_json(runner, home, "audit", "keys")["keys"]
    assert [
        (k["public_key"], k["from_size"], k["until_size"], k["rotation_seq"]) for k in keys
    ] == [
        (k0, 0, first["audit_seq"], None),
        (k1, first["audit_seq"], second["audit_seq"], first["audit_seq"]),
        (k2, second["audit_seq"], None, second["audit_seq"]),
    ]
    assert keys[0]["checkpoint"] is None
    assert keys[2]["checkpoint"] == second["checkpoint"]


def test_rotation_is_allowed_before_anything_was_logged(runner, tmp_path, db):  # noqa: ARG001
    """Decided: allowed. A log is never empty when the rotation runs — opening the home
    records its policy first — and a rotation is no special case on a short log."""
    home = tmp_path / "home"
    home.mkdir()
    write_default_policy(home / "policy.toml")
    k0 = str(audit.load_or_create_key(home / "checkpoint.key").verifier)
    body = run_json(runner, home, *ROTATE)
    assert [e.action for e in entries(home)] == ["policy.changed", "key.rotated"]
    assert body["previous_public_key"] == k0
    run(runner, home, "audit", "verify", "--public-key", k0)


# --- what is still refused ------------------------------------------------------------------


@pytest.mark.parametrize("rotated_first", [False, True], ids=["never-rotated", "rotated"])
def test_a_key_swapped_by_hand_is_still_refused(runner, home, rotated_first):
    """A "rotation" without the log — a fresh key dropped in place of checkpoint.key — is
    refused by every command (rotate included) and fails verification, as before."""
    if rotated_first:
        run(runner, home, *ROTATE)
    k_real = public_key(runner, home)
    count = len(entries(home))
    (home / "checkpoint.key").unlink()
    forged = str(audit.load_or_create_key(home / "checkpoint.key").verifier)
    for command in (ROTATE, ("admin", "researcher", "list"), ("audit", "checkpoint")):
        result = run(runner, home, *command, code=3)
        (line,) = result.stderr.strip().splitlines()
        assert str(home / "checkpoint.key") in line
        assert "is not the key" in line
    assert len(entries(home)) == count  # nothing logged, nothing signed
    for key in ([], ["--public-key", forged]):
        assert "checkpoint_rejected" in run(runner, home, "audit", "verify", *key, code=3).stderr
    run(runner, home, "audit", "verify", "--public-key", k_real)  # the log itself is intact


def test_a_rotation_forged_in_the_database_is_rejected(runner, home):
    """Someone who can write to the database but holds no key appends a `key.rotated`
    entry naming their own key, signs its checkpoint with that key, and installs it."""
    k0 = public_key(runner, home)
    intruder = audit.SigningKey.generate()
    eng = engine(home)
    with eng.begin() as conn:
        seq = audit.append_entry(
            conn,
            actor="admin:mallory",
            action="key.rotated",
            request={"previous_public_key": k0, "public_key": str(intruder.verifier)},
        ).seq
        audit.sign_checkpoint(conn, intruder)
    (home / "checkpoint.key").write_text(intruder.encode())
    for key in ([], ["--public-key", k0], ["--public-key", str(intruder.verifier)]):
        result = run(runner, home, "audit", "verify", *key, code=3)
        assert "rotation_rejected" in result.stderr
        assert f"entry {seq}: the key rotation's checkpoint is not signed by both keys" in (
            result.stderr
        )


def test_an_old_key_signing_after_the_handover_is_rejected(runner, home, tmp_path):
    """A retired key that leaked can sign whatever it likes: not a size after its rotation.
    Nor may the new key sign the history before it took over."""
    old = key_of(home)
    seq = run_json(runner, home, *ROTATE)["audit_seq"]
    new = key_of(home)
    add_researcher(runner, home, "bob")
    with engine(home).connect() as conn:
        roots = {n: audit.root_at(conn, n) for n in (seq - 1, seq + 1)}
    forged = tmp_path / "forged.txt"
    forged.write_text(old.sign_note(audit.checkpoint_body(old.name, seq + 1, roots[seq + 1])))
    result = run(runner, home, "audit", "verify", "--checkpoint", str(forged), code=3)
    assert "checkpoint_rejected" in result.stderr
    assert f"signs sizes 0 to {seq} only" in result.stderr
    early = tmp_path / "early.txt"
    early.write_text(new.sign_note(audit.checkpoint_body(new.name, seq - 1, roots[seq - 1])))
    result = run(runner, home, "audit", "verify", "--checkpoint", str(early), code=3)
    assert f"signs sizes {seq} to now only" in result.stderr


# --- failures midway ----------------------------------------------------------------------


def assert_home_as_it_was(runner, home: Path, key_text: str, count: int) -> None:
    assert (home / "checkpoint.key").read_text() == key_text
    assert leftovers(home) == []
    assert len(entries(home)) == count
    assert "key.rotated" not in [e.action for e in entries(home)]
    run(runner, home, "audit", "verify")
    add_researcher(runner, home, "bob")  # the old key still signs
    run(runner, home, "audit", "verify")


def test_a_rotation_whose_key_cannot_be_installed_changes_nothing(runner, home, monkeypatch):
    key_text, count = (home / "checkpoint.key").read_text(), len(entries(home))

    def refuse(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", refuse)
        result = run(runner, home, *ROTATE, code=2)
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        "Error: cannot rotate the audit signing key (No space left on device): nothing "
        "changed, the old key still signs"
    )
    assert_home_as_it_was(runner, home, key_text, count)
    run(runner, home, *ROTATE)  # and a rotation can be tried again


def test_a_failure_after_the_new_key_is_in_place_puts_the_old_one_back(runner, home, monkeypatch):
    key_text, count = (home / "checkpoint.key").read_text(), len(entries(home))

    def fail(_folder):
        assert (home / "checkpoint.key").read_text() != key_text  # the new key is in place
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(key_rotation, "_fsync_dir", fail)
        result = run(runner, home, *ROTATE, code=2)
    assert "Input/output error" in result.stderr
    assert_home_as_it_was(runner, home, key_text, count)


def test_a_commit_that_fails_keeps_whichever_key_the_log_names(runner, home, monkeypatch):
    key_text, count = (home / "checkpoint.key").read_text(), len(entries(home))

    def lost(_trans):  # the database never got the commit
        raise ConnectionError("server closed the connection unexpectedly")

    with monkeypatch.context() as m:
        m.setattr(key_rotation, "_commit", lost)
        result = run(runner, home, *ROTATE, code=2)
    assert "its commit failed: ConnectionError" in result.stderr
    assert_home_as_it_was(runner, home, key_text, count)

    def unacknowledged(trans):  # committed, but the acknowledgement was lost
        trans.commit()
        raise ConnectionError("server closed the connection unexpectedly")

    with monkeypatch.context() as m:
        m.setattr(key_rotation, "_commit", unacknowledged)
        body = run_json(runner, home, *ROTATE)
    assert str(key_of(home).verifier) == body["public_key"]
    assert leftovers(home) == []
    run(runner, home, "audit", "verify")


def test_a_rotation_killed_before_its_commit_names_the_key_to_put_back(runner, home, monkeypatch):
    """`kill -9` between installing the new key and committing: the log never heard of the
    new key, and the old one is in checkpoint.key.prev. Every command says so."""
    monkeypatch.setattr(control_module, "KEY_SETTLE_SECONDS", 0)
    key_file, prev = home / "checkpoint.key", home / "checkpoint.key.prev"
    os.link(key_file, prev)
    staged = audit.stage_key(key_file, audit.SigningKey.generate())
    os.replace(staged, key_file)
    result = run(runner, home, "admin", "researcher", "list", code=3)
    (line,) = result.stderr.strip().splitlines()
    assert f"left it in {prev}: move it back" in line
    os.replace(prev, key_file)
    run(runner, home, "admin", "researcher", "list")
    run(runner, home, "audit", "verify")


# --- processes already running ------------------------------------------------------------


def test_a_process_started_before_the_rotation_signs_with_the_new_key(runner, home):
    control = open_control(Home.resolve(home))
    assert str(control.signing_key.verifier) == public_key(runner, home)
    k1 = run_json(runner, home, *ROTATE)["public_key"]
    with control.transaction() as conn:
        control.record(conn, "policy.changed")
    latest = audit.latest_checkpoint(control.engine)
    assert opens(latest, k1)
    assert str(control.signing_key.verifier) == k1
    run(runner, home, "audit", "verify")


def test_rotations_while_another_process_writes(runner, home):
    """A writer that opened the home before (a server worker, say) keeps appending while
    the key is rotated three times: every checkpoint it signs is by the key then in force."""
    from safesetting.key_rotation import rotate_key

    worker = open_control(Home.resolve(home), actor="service")
    stop, written, failures = threading.Event(), [], []

    def write() -> None:
        while not stop.is_set():
            try:
                with worker.transaction() as conn:
                    written.append(worker.record(conn, "policy.changed").seq)
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
                return

    thread = threading.Thread(target=write)
    thread.start()
    try:
        rotations = []
        for _ in range(3):
            time.sleep(0.05)
            rotations.append(rotate_key(open_control(Home.resolve(home))))
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert written[-1] > rotations[-1].seq  # the writer went on after the last rotation
    run(runner, home, "audit", "verify", "--public-key", str(rotations[0].previous))
    with worker.engine.connect() as conn:  # every checkpoint, not only those verify reads
        history = audit.read_history(conn)
        notes = conn.execute(sa.select(audit.store.checkpoints.c.note)).scalars().all()
    assert len(notes) > len(written)
    for note in notes:
        history.open(note, rotations[0].previous)  # by the key in force at its size
    assert opens(audit.latest_checkpoint(worker.engine), str(rotations[-1].new))


def test_the_server_publishes_every_key_and_follows_the_rotation(runner, home):
    from safesetting.server import create_app
    from tests.server.conftest import InProcessTransport

    k0 = public_key(runner, home)
    transport = InProcessTransport(create_app(Home.resolve(home)))
    with httpx.Client(transport=transport, base_url="http://safesetting.test") as client:
        assert client.get("/v1/audit/public-key").text.strip() == k0
        only = client.get("/v1/audit/public-keys").json()
        assert only == {"keys": [{"public_key": k0, "from_size": 0, "until_size": None,
                                  "rotation_seq": None, "checkpoint": None}]}  # fmt: skip

        body = run_json(runner, home, *ROTATE)  # while the server runs
        k1, seq = body["public_key"], body["audit_seq"]
        assert client.get("/v1/audit/public-key").text.strip() == k1
        keys = client.get("/v1/audit/public-keys").json()["keys"]
        assert [(k["public_key"], k["from_size"], k["until_size"]) for k in keys] == [
            (k0, 0, seq),
            (k1, seq, None),
        ]
        assert keys[1]["rotation_seq"] == seq
        assert opens(keys[1]["checkpoint"], k0)
        assert opens(keys[1]["checkpoint"], k1)
        assert opens(client.get("/v1/audit/checkpoint").text, k1)

        # The server's next write is signed with the new key.
        assert client.get("/v1/audit/entries").status_code == 401  # audited: auth.failed
        latest = client.get("/v1/audit/checkpoint").text
        assert int(latest.split("\n")[1]) == seq + 1
        assert opens(latest, k1)
        assert not opens(latest, k0)
        proof = client.get("/v1/audit/proof/consistency", params={"old": seq - 1}).json()
        assert proof["consistent"]
        assert proof["public_key"] == k1
        assert HttpBackend("http://safesetting.test", None, client=client).public_keys() == {
            "keys": client.get("/v1/audit/public-keys").json()["keys"]
        }
    run(runner, home, "audit", "verify", "--public-key", k0)


def test_the_server_signs_with_the_rotated_key_when_a_proof_needs_a_new_checkpoint(runner, home):
    """A server started before a rotation, asked to prove against a head nobody has signed
    yet (an entry committed without its checkpoint), signs it with the key now in force,
    not the one it started with."""
    from safesetting.server import create_app
    from tests.server.conftest import InProcessTransport

    k0 = public_key(runner, home)
    transport = InProcessTransport(create_app(Home.resolve(home)))
    with httpx.Client(transport=transport, base_url="http://safesetting.test") as client:
        k1 = run_json(runner, home, *ROTATE)["public_key"]
        with engine(home).begin() as conn:  # appended, its checkpoint never signed
            seq = audit.append_entry(conn, actor="admin:test", action="policy.changed").seq
        assert int(client.get("/v1/audit/checkpoint").text.split("\n")[1]) == seq - 1
        proof = client.get("/v1/audit/proof/consistency", params={"old": 1})
        assert proof.status_code == 200, proof.text
        assert proof.json()["new_size"] == seq
        assert proof.json()["public_key"] == k1
        assert opens(proof.json()["checkpoint"], k1)
        assert not opens(proof.json()["checkpoint"], k0)
    run(runner, home, "audit", "verify", "--public-key", k0)


# --- the export, checked offline ----------------------------------------------------------

# The README's verifier, extended to follow key rotations (proposed for the README: when it
# is adopted there, read it from the README as tests/functional/test_cli_audit.py does).
FOLLOWING_VERIFIER = r"""
import base64, hashlib, json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

sha = lambda b: hashlib.sha256(b).digest()  # noqa: E731
head, *rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
key = sys.argv[2]  # any verifier key the log published (name+id+base64), old or new

def check(note, key, n):  # signed by key, over the root of the first n entries
    name, key_id, pub = key.split("+", 2)
    text, lines = note.rstrip("\n").rsplit("\n\n", 1)
    sigs = [base64.b64decode(s.split(" ")[2]) for s in lines.split("\n") if f" {name} " in s]
    sig = next((s for s in sigs if s[:4].hex() == key_id), None)
    if sig is None:
        sys.exit(f"FAILED: checkpoint not signed by {key}")
    pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(pub)[1:])
    pub.verify(sig[4:], (text + "\n").encode())  # raises InvalidSignature
    level = [sha(b"\x00" + r["entry"].encode()) for r in rows[:n]]
    while len(level) > 1:  # RFC 9162: hash pairs, carry an odd last node up unchanged
        pairs = [level[i : i + 2] for i in range(0, len(level), 2)]
        level = [sha(b"\x01" + p[0] + p[1]) if len(p) == 2 else p[0] for p in pairs]
    _, size, root = text.split("\n")
    seqs = [json.loads(r["entry"])["seq"] for r in rows[:n]]
    want = (n, list(range(1, n + 1)), (level or [sha(b"")])[0])
    if (int(size), seqs, base64.b64decode(root)) != want:
        sys.exit("FAILED: entries do not match the signed root")

for rotation in head.get("rotations", []):  # follow each handover by the key you hold
    entry = json.loads(rows[rotation["seq"] - 1]["entry"])
    if entry["action"] == "key.rotated" and entry["request"]["previous_public_key"] == key:
        check(rotation["checkpoint"], key, rotation["seq"])  # it vouched for the next key
        key = entry["request"]["public_key"]
check(head["checkpoint"], key, len(rows))
print(f"OK: {len(rows)} entries match the checkpoint signed by {key}")
"""


def readme_verifier() -> str:
    block = re.search(r"<!-- offline-verifier -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README lost its offline verifier snippet"
    return block.group(1)


def offline(script: Path, export: Path, key: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(script), str(export), key]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def test_an_export_after_rotations_checks_offline(runner, home, tmp_path):
    k0 = public_key(runner, home)
    k1 = run_json(runner, home, *ROTATE)["public_key"]
    export = tmp_path / "log.jsonl"
    run(runner, home, "audit", "export", "--out", str(export))  # the head is the rotation's
    head = json.loads(export.read_text().splitlines()[0])
    assert head["public_key"] == k1
    assert head["checkpoint"].count("\u2014") == 1  # the key in force's signature alone
    assert [r["seq"] for r in head["rotations"]] == [len(entries(home))]

    readme = tmp_path / "check_export.py"
    readme.write_text(readme_verifier())
    ok = offline(readme, export, k1)  # the README's verifier, with the key now published
    assert ok.returncode == 0, ok.stderr
    assert "not signed by this key" in offline(readme, export, k0).stderr  # it cannot follow

    add_researcher(runner, home, "bob")
    k2 = run_json(runner, home, *ROTATE)["public_key"]
    add_researcher(runner, home, "cy")
    run(runner, home, "audit", "export", "--out", str(export))
    following = tmp_path / "check_export_following.py"
    following.write_text(FOLLOWING_VERIFIER)
    for key in (k0, k1, k2):
        ok = offline(following, export, key)
        assert ok.returncode == 0, ok.stderr
        assert f"signed by {k2}" in ok.stdout
    assert offline(readme, export, k2).returncode == 0

    stranger = str(audit.SigningKey.generate().verifier)
    assert "FAILED: checkpoint not signed by" in offline(following, export, stranger).stderr
    lines = export.read_text().splitlines()
    first = json.loads(lines[0])["rotations"][0]["seq"]
    forged = lines[first].replace(k1, k2)  # the first rotation now hands over to k2 directly
    bad = tmp_path / "forged.jsonl"
    bad.write_text("\n".join([*lines[:first], forged, *lines[first + 1 :]]) + "\n")
    assert "FAILED: entries do not match" in offline(following, bad, k0).stderr
