"""RFC 9162 Merkle tree hashing and proofs: plain functions over bytes (SHA-256).

Leaves hash as ``SHA-256(0x00 || data)``, interior nodes as ``SHA-256(0x01 || left || right)``,
the empty tree as ``SHA-256("")``. Proofs are produced from a *perfect-subtree lookup*
``(level, index) -> hash`` (the hash of leaves ``[index * 2**level, (index + 1) * 2**level)``),
so the same code serves an in-memory list of leaf hashes and the stored node cache of
``audit.store``. Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 and insists on 32-byte
hashes (a literal transcription accepts an empty leaf against an empty root).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: ``(level, index) -> hash`` of a perfect subtree of ``2**level`` leaves.
NodeLookup = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """The RFC 9162 leaf hash ``SHA-256(0x00 || data)``.

    >>> leaf_hash(b"").hex()[:16]
    '6e340b9cffb37a98'
    """
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 interior node hash ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def fold_frontier(frontier: Sequence[bytes]) -> bytes:
    """Root of a tree from its perfect-subtree roots, largest (leftmost) first.

    A tree of ``n`` leaves is the perfect subtrees given by the set bits of ``n``; RFC 9162
    combines them right to left.

    >>> fold_frontier([]) == EMPTY_ROOT
    True
    """
    if not frontier:
        return EMPTY_ROOT
    acc = frontier[-1]
    for h in reversed(frontier[:-1]):
        acc = node_hash(h, acc)
    return acc


def extend_frontier(frontier: list[bytes], size: int, leaf: bytes) -> list[tuple[int, int, bytes]]:
    """Append ``leaf`` (leaf ``size``) to ``frontier`` in place; O(log n).

    Returns the perfect subtrees completed by this leaf as ``(level, index, hash)`` with
    ``level >= 1``, so callers can cache them.
    """
    created: list[tuple[int, int, bytes]] = []
    acc, level, n = leaf, 0, size
    while n & 1:
        acc = node_hash(frontier.pop(), acc)
        level += 1
        n >>= 1
        created.append((level, ((size + 1) >> level) - 1, acc))
    frontier.append(acc)
    return created


def _levels(leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
    """Every perfect subtree hash, bottom-up: ``levels[l][i]`` covers ``2**l`` leaves."""
    levels = [list(leaf_hashes)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return levels


def node_lookup(leaf_hashes: Sequence[bytes]) -> NodeLookup:
    """A perfect-subtree lookup over an in-memory list of leaf hashes (built in O(n))."""
    levels = _levels(leaf_hashes)
    return lambda level, index: levels[level][index]


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def range_hash(node: NodeLookup, start: int, size: int) -> bytes:
    """MTH of leaves ``[start, start + size)``, where ``start`` is aligned as RFC 9162's
    recursion leaves it (a multiple of the largest power of two not above ``size``)."""
    if size == 0:
        return EMPTY_ROOT
    parts: list[bytes] = []
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            parts.append(node(level, start >> level))
            start += 1 << level
    return fold_frontier(parts)


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 Merkle tree hash of a list of leaf hashes.

    >>> root_hash([]) == EMPTY_ROOT
    True
    >>> root_hash([leaf_hash(b"")]) == leaf_hash(b"")
    True
    """
    frontier: list[bytes] = []
    for size, h in enumerate(leaf_hashes):
        extend_frontier(frontier, size, h)
    return fold_frontier(frontier)


def inclusion_path(node: NodeLookup, index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[0:tree_size]) from a perfect-subtree lookup, leaf to root."""
    if not 0 <= index < tree_size:
        raise ValueError(f"leaf index {index} is outside a tree of {tree_size} leaves")
    path: list[bytes] = []
    start, size, m = 0, tree_size, index
    while size > 1:
        k = _largest_power_of_two_below(size)
        if m < k:
            path.append(range_hash(node, start + k, size - k))
            size = k
        else:
            path.append(range_hash(node, start, k))
            start, size, m = start + k, size - k, m - k
    path.reverse()
    return path


def consistency_path(node: NodeLookup, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 PROOF(old_size, D[0:new_size]) from a perfect-subtree lookup."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"cannot prove size {old_size} against size {new_size}")
    if old_size in (0, new_size):
        return []
    path: list[bytes] = []
    start, size, m, whole = 0, new_size, old_size, True
    while m != size:
        k = _largest_power_of_two_below(size)
        if m <= k:
            path.append(range_hash(node, start + k, size - k))
            size = k
        else:
            path.append(range_hash(node, start, k))
            start, size, m, whole = start + k, size - k, m - k, False
    if not whole:
        path.append(range_hash(node, start, m))
    path.reverse()
    return path


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path for leaf ``index`` in the tree of ``leaf_hashes`` (RFC 9162 §2.1.3.1)."""
    return inclusion_path(node_lookup(leaf_hashes), index, len(leaf_hashes))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Proof that the first ``old_size`` leaves are a prefix of ``leaf_hashes`` (§2.1.4.1)."""
    return consistency_path(node_lookup(leaf_hashes), old_size, len(leaf_hashes))


def _all_hashes(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True when ``proof`` shows leaf ``index`` with ``leaf_hash`` in the tree ``root``.

    >>> h = leaf_hash(b"x")
    >>> verify_inclusion(h, 0, 1, [], h), verify_inclusion(b"", 0, 1, [], b"")
    (True, False)
    """
    if not 0 <= index < tree_size or not _all_hashes(leaf_hash, root, *proof):
        return False
    fn, sn, r = index, tree_size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True when ``proof`` shows the tree ``old_root`` is a prefix of the tree ``new_root``.

    Size 0 is refused, as by the reference verifier (transparency-dev/merkle): proving
    against an empty tree proves nothing, so a caller that treats the empty tree as
    trivially consistent decides that itself.
    """
    if old_size <= 0 or new_size < old_size:
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if not proof or not _all_hashes(old_root, new_root, *proof):
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a perfect subtree: its root is the first component
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)
