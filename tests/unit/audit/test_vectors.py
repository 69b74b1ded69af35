"""The Merkle and JCS code against test vectors written by other projects (tests/vectors)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from audit import (
    canonical_json,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

# Copied into the repository with their sources and licences (tests/vectors/README.md).
VECTORS = Path(__file__).resolve().parents[2] / "vectors"
MERKLE = VECTORS / "merkle"
JCS = VECTORS / "jcs" / "testdata"


def _cases(kind: str) -> list[Path]:
    return sorted((MERKLE / "testdata" / kind).rglob("*.json"))


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _id(path: Path) -> str:
    return str(path.relative_to(MERKLE / "testdata"))


def test_all_196_vector_files_are_found():
    assert len(_cases("inclusion")) + len(_cases("consistency")) == 196


@pytest.mark.parametrize("path", _cases("inclusion"), ids=_id)
def test_inclusion_vector(path: Path):
    case = json.loads(path.read_text())
    ok = verify_inclusion(
        _b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        [_b64(p) for p in case["proof"] or []],
        _b64(case["root"]),
    )
    assert ok is not case["wantErr"], case["desc"]


@pytest.mark.parametrize("path", _cases("consistency"), ids=_id)
def test_consistency_vector(path: Path):
    case = json.loads(path.read_text())
    ok = verify_consistency(
        case["size1"],
        case["size2"],
        _b64(case["root1"]),
        _b64(case["root2"]),
        [_b64(p) for p in case["proof"] or []],
    )
    assert ok is not case["wantErr"], case["desc"]


ROOTS = json.loads((MERKLE / "roots.json").read_text())
LEAVES = [leaf_hash(bytes.fromhex(x)) for x in ROOTS["leaf_inputs_hex"]]


@pytest.mark.parametrize("size", range(9))
def test_root_for_every_size(size: int):
    assert root_hash(LEAVES[:size]).hex() == ROOTS["root_hex_by_tree_size"][size]


@pytest.mark.parametrize("size", range(1, 9))
def test_generated_proofs_verify_against_reference_roots(size: int):
    root = bytes.fromhex(ROOTS["root_hex_by_tree_size"][size])
    for index in range(size):
        proof = inclusion_proof(LEAVES[:size], index)
        assert verify_inclusion(LEAVES[index], index, size, proof, root)
    for old in range(1, size + 1):
        old_root = bytes.fromhex(ROOTS["root_hex_by_tree_size"][old])
        proof = consistency_proof(LEAVES[:size], old)
        assert verify_consistency(old, size, old_root, root, proof)


def test_happy_path_inclusion_vectors_are_what_we_generate():
    # The happy-path files use the roots.json tree: our proofs must equal theirs exactly.
    compared = 0
    for path in _cases("inclusion"):
        case = json.loads(path.read_text())
        if case["wantErr"] or case["treeSize"] > len(LEAVES) or not case["proof"]:
            continue
        mine = inclusion_proof(LEAVES[: case["treeSize"]], case["leafIdx"])
        assert [base64.b64encode(p).decode() for p in mine] == case["proof"], _id(path)
        compared += 1
    assert compared >= 4


def _jcs_names() -> list[str]:
    return sorted(p.name for p in (JCS / "input").glob("*.json"))


@pytest.mark.parametrize("name", _jcs_names())
def test_jcs_vector(name: str):
    value = json.loads((JCS / "input" / name).read_text(encoding="utf-8"))
    expected = (JCS / "output" / name).read_bytes()
    assert canonical_json(value) == expected


def test_jcs_vectors_present():
    assert len(_jcs_names()) == 6
