"""`safesetting audit …` as a user runs it, including the README's offline verifier."""

from __future__ import annotations

import base64
import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import audit
from policies.load import write_default_policy
from safesetting.cli import cli
from safesetting.db import engine_for
from safesetting.home import Home

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home with an empty log (made by hand: `init` would log its policy)."""
    home = tmp_path / "home"
    home.mkdir()
    write_default_policy(home / "policy.toml")
    audit.load_or_create_key(home / "checkpoint.key")
    return home


def run(runner, home: Path, *args: str, code: int = 0):
    result = runner.invoke(cli, ["--home", str(home), "audit", *args], catch_exceptions=False)
    assert result.exit_code == code, (result.output, result.stderr)
    return result


def fill(home: Path, n: int = 6) -> sa.Engine:
    """Append entries the way the service does: commit, then sign a checkpoint."""
    engine = engine_for(Home.resolve(home))
    audit.create_schema(engine)
    key = audit.load_or_create_key(Home.resolve(home).signing_key)
    for i in range(n):
        with engine.begin() as conn:
            audit.append_entry(
                conn,
                actor="alice" if i % 2 else "bob",
                action="query.released" if i % 3 else "project.approved",
                project=f"P{i % 2}",
                request={"sql": "SELECT COUNT(*) FROM census"},
                decision="allow",
                epsilon_micro=250_000,
            )
        audit.sign_checkpoint(engine, key)
    return engine


def test_fresh_home_log_verify_checkpoint(runner, home):
    assert "Audit log (0 entries)" in run(runner, home, "log").output
    assert "OK: 0 entries" in run(runner, home, "verify").output
    note = run(runner, home, "checkpoint").output
    assert note.startswith(f"{audit.DEFAULT_ORIGIN}\n0\n")
    assert stat.S_IMODE((home / "checkpoint.key").stat().st_mode) == 0o600
    vkey = run(runner, home, "checkpoint", "--public-key").output.strip()
    assert audit.open_checkpoint(note, audit.VerifierKey.parse(vkey)).size == 0


def test_log_filters_and_json(runner, home):
    fill(home)
    out = json.loads(run(runner, home, "log", "--json", "--actor", "alice").stdout)
    assert [e["seq"] for e in out] == [2, 4, 6]
    out = json.loads(run(runner, home, "log", "--json", "--action", "project.*").stdout)
    assert [e["seq"] for e in out] == [1, 4]
    out = json.loads(run(runner, home, "log", "--json", "--project", "P0", "--limit", "2").stdout)
    assert [e["seq"] for e in out] == [3, 5]
    assert run(runner, home, "log", "--json", "--since", "2999-01-01").output.strip() == "[]"
    table = run(runner, home, "log").output
    assert "Audit log (6 entries)" in table
    assert "query.released" in table
    run(runner, home, "log", "--since", "yesterday", code=2)


def test_verify_json_and_prove_checkable_by_an_outsider(runner, home):
    fill(home)
    result = json.loads(run(runner, home, "verify", "--json").stdout)
    assert result["ok"] is True
    assert result["tree_size"] == 6
    assert result["checkpoints_verified"] == [{"source": "stored", "tree_size": 6}]
    bundle = json.loads(run(runner, home, "prove", "3", "--json").stdout)
    leaf = audit.leaf_hash(bundle["entry"].encode())
    assert base64.b64encode(leaf).decode() == bundle["leaf_hash"]
    checkpoint = audit.open_checkpoint(
        bundle["checkpoint"], audit.VerifierKey.parse(bundle["public_key"])
    )
    proof = [base64.b64decode(p) for p in bundle["proof"]]
    assert audit.verify_inclusion(leaf, 2, checkpoint.size, proof, checkpoint.root)
    older = json.loads(run(runner, home, "prove", "3", "--size", "4", "--json").stdout)
    assert older["tree_size"] == 4
    assert "proof[0]" in run(runner, home, "prove", "1").output
    run(runner, home, "prove", "7", code=2)
    run(runner, home, "prove", "0", code=2)
    assert "outside" in run(runner, home, "prove", "3", "--size", "99", code=2).stderr
    run(runner, home, "export", "--out", str(home / "no" / "such" / "dir.jsonl"), code=2)


def test_consistency(runner, home):
    fill(home)
    out = json.loads(run(runner, home, "consistency", "2", "5", "--json").stdout)
    assert audit.verify_consistency(
        2,
        5,
        base64.b64decode(out["old_root_hash"]),
        base64.b64decode(out["new_root_hash"]),
        [base64.b64decode(p) for p in out["proof"]],
    )
    assert json.loads(run(runner, home, "consistency", "0", "--json").stdout)["consistent"]
    run(runner, home, "consistency", "5", "2", code=2)


def _offline_verifier() -> str:
    text = README.read_text()
    block = re.search(r"<!-- offline-verifier -->\n```python\n(.*?)```", text, re.S)
    assert block, "README lost its offline verifier snippet"
    return block.group(1)


def test_readme_offline_verifier_accepts_an_export_and_rejects_tampering(runner, home, tmp_path):
    fill(home, 11)
    export = tmp_path / "log.jsonl"
    run(runner, home, "export", "--format", "jsonl", "--out", str(export))
    vkey = run(runner, home, "checkpoint", "--public-key").output.strip()
    script = tmp_path / "check_export.py"
    script.write_text(_offline_verifier())
    assert len([x for x in script.read_text().splitlines() if x.strip()]) <= 20

    def check(path: Path, key: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, str(script), str(path), key]
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    ok = check(export, vkey)
    assert ok.returncode == 0, ok.stderr
    assert "OK: 11 entries" in ok.stdout

    lines = export.read_text().splitlines()
    edited = lines[:4] + [lines[4].replace("250000", "1")] + lines[5:]
    assert edited != lines
    bad = tmp_path / "edited.jsonl"
    bad.write_text("\n".join(edited) + "\n")
    assert "FAILED: entries do not match" in check(bad, vkey).stderr
    bad.write_text("\n".join(lines[:-1]) + "\n")  # last entry dropped
    assert check(bad, vkey).returncode != 0
    other = str(audit.SigningKey.generate().verifier)
    assert "not signed by this key" in check(export, other).stderr


def test_tampering_exits_3_and_names_the_entry(runner, home):
    engine = fill(home)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_entries_no_update")
        conn.exec_driver_sql("UPDATE audit_entries SET canonical = canonical || ' ' WHERE seq = 4")
    result = run(runner, home, "verify", code=3)
    assert "first bad entry: 4" in result.stderr
    assert "leaf_hash_mismatch" in result.stderr
    envelope = json.loads(run(runner, home, "verify", "--json", code=3).stdout)
    assert envelope["error"]["kind"] == "integrity"
    assert {r["code"] for r in envelope["reasons"]} >= {"leaf_hash_mismatch"}


def test_truncation_caught_with_published_checkpoint(runner, home, tmp_path):
    engine = fill(home)
    published = tmp_path / "published.txt"
    published.write_text(run(runner, home, "checkpoint").output)
    with engine.begin() as conn:
        for name in (
            "audit_entries_no_delete",
            "audit_nodes_no_delete",
            "audit_checkpoints_no_delete",
        ):
            conn.exec_driver_sql(f"DROP TRIGGER {name}")
        conn.exec_driver_sql("DELETE FROM audit_entries WHERE seq > 4")
        conn.exec_driver_sql("DELETE FROM audit_nodes WHERE level = 1 AND idx = 2")
        conn.exec_driver_sql("DELETE FROM audit_checkpoints WHERE tree_size > 4")
        frontier = audit.root_hash([e.leaf_hash for e in audit.read_entries(conn)])
        conn.execute(sa.text("UPDATE audit_head SET tree_size = 4, frontier = :f"), {"f": frontier})
        audit.store.rebuild_epsilon_totals(conn)  # and the running ε totals
    run(runner, home, "verify")  # self-consistent without outside evidence
    result = run(runner, home, "verify", "--checkpoint", str(published), code=3)
    assert "first bad entry: 5" in result.stderr
    assert "log_truncated" in result.stderr


def test_verify_with_a_wrong_public_key(runner, home):
    fill(home, 2)
    other = str(audit.SigningKey.generate().verifier)
    result = run(runner, home, "verify", "--public-key", other, code=3)
    assert "checkpoint_rejected" in result.stderr
    run(runner, home, "verify", "--public-key", "not-a-key", code=2)


def test_verify_without_the_key_fails_rather_than_skipping_signatures(runner, home):
    fill(home, 2)
    (home / "checkpoint.key").unlink()
    result = run(runner, home, "verify", code=3)
    assert "no_public_key" in result.stderr
    assert not (home / "checkpoint.key").exists()


def test_group_readable_key_is_refused(runner, home):
    fill(home, 1)
    (home / "checkpoint.key").chmod(0o644)
    result = run(runner, home, "checkpoint", code=3)
    assert "chmod 600" in result.stderr


def test_prove_refuses_to_hand_out_a_proof_the_log_cannot_back(runner, home):
    engine = fill(home)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_nodes_no_update")
        conn.exec_driver_sql("UPDATE audit_nodes SET hash = zeroblob(32) WHERE level = 2")
    result = run(runner, home, "prove", "1", "--size", "4", code=3)
    assert "does not prove entry 1" in result.stderr
