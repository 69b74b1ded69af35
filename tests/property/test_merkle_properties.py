"""Hypothesis: random trees against a literal transcription of RFC 9162's recursive definitions."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from audit import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, recursively, over leaf hashes."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH."""
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF."""
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


trees = st.lists(st.binary(max_size=8), min_size=1, max_size=70).map(
    lambda xs: [leaf_hash(x) for x in xs]
)


def _flip(h: bytes, bit: int) -> bytes:
    return bytes(b ^ (1 << (bit % 8)) if i == bit // 8 % len(h) else b for i, b in enumerate(h))


@settings(max_examples=150)
@given(trees, st.data())
def test_inclusion_proofs_match_rfc_and_verify(leaves, data):
    n = len(leaves)
    root = root_hash(leaves)
    assert root == mth(leaves)
    index = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(leaves, index)
    assert proof == path(index, leaves)
    assert verify_inclusion(leaves[index], index, n, proof, root)


@settings(max_examples=150)
@given(trees, st.data())
def test_tampered_inclusion_proofs_fail(leaves, data):
    n = len(leaves)
    root = root_hash(leaves)
    index = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(leaves, index)
    bit = data.draw(st.integers(0, 255))
    assert not verify_inclusion(_flip(leaves[index], bit), index, n, proof, root)
    assert not verify_inclusion(leaves[index], index, n, proof, _flip(root, bit))
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]]
        assert not verify_inclusion(leaves[index], index, n, bad, root)
        assert not verify_inclusion(leaves[index], index, n, proof[:-1], root)
    assert not verify_inclusion(leaves[index], index, n, [*proof, root], root)
    other = data.draw(st.integers(0, n - 1))
    if leaves[other] != leaves[index]:
        assert not verify_inclusion(leaves[other], index, n, proof, root)
    if n > 1:
        wrong = data.draw(st.integers(0, n - 1).filter(lambda j: j != index))
        # The same proof at another index fails unless the tree is symmetric at that spot.
        if path(wrong, leaves) != proof:
            assert not verify_inclusion(leaves[index], wrong, n, proof, root)


@settings(max_examples=150)
@given(trees, st.data())
def test_consistency_between_random_sizes(leaves, data):
    n = len(leaves)
    old = data.draw(st.integers(1, n))
    proof = consistency_proof(leaves, old)
    assert proof == subproof(old, leaves, True)
    old_root, new_root = root_hash(leaves[:old]), root_hash(leaves)
    assert verify_consistency(old, n, old_root, new_root, proof)
    bit = data.draw(st.integers(0, 255))
    assert not verify_consistency(old, n, _flip(old_root, bit), new_root, proof)
    assert not verify_consistency(old, n, old_root, _flip(new_root, bit), proof)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]]
        assert not verify_consistency(old, n, old_root, new_root, bad)
    if old < n:
        assert not verify_consistency(old, n, old_root, new_root, [*proof, new_root])


@given(trees)
def test_consistency_from_empty_tree_is_refused_by_the_verifier(leaves):
    # The reference verifier refuses size 0; audit.verify treats it as trivially consistent.
    assert consistency_proof(leaves, 0) == []
    assert not verify_consistency(0, len(leaves), root_hash([]), root_hash(leaves), [])
