"""Merkle trees as RFC 9162 §2.1 defines them (the hashing of RFC 6962): leaf hash
``SHA-256(0x00 ‖ leaf)``, node hash ``SHA-256(0x01 ‖ left ‖ right)``, inclusion and consistency
proofs, their verification, and a compact range that grows a tree leaf by leaf.

Pure: trees are given as a function ``subtree(start, level)``, the hash of the complete subtree
of ``2**level`` leaves from ``start``, so a proof reads only the subtrees it needs, from memory
or from the store (:mod:`tollbook.store.tree`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from hashlib import sha256

Subtree = Callable[[int, int], bytes]
EMPTY_ROOT = sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (> 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def range_hash(subtree: Subtree, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range that begins on a boundary of its largest subtree, as every
    range a proof asks for does: the complete subtrees of its size's binary digits, folded from
    the right."""
    if end == start:
        return EMPTY_ROOT
    parts = []
    while start < end:
        level = (end - start).bit_length() - 1
        parts.append(subtree(start, level))
        start += 1 << level
    found = parts.pop()
    while parts:
        found = node_hash(parts.pop(), found)
    return found


def inclusion_proof(subtree: Subtree, index: int, size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size])."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            proof.append(range_hash(subtree, start + k, end))
            end = start + k
        else:
            proof.append(range_hash(subtree, start, start + k))
            start += k
    return proof[::-1]


def consistency_proof(subtree: Subtree, old: int, new: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(old, D[0:new]); empty for old = 0 or old = new."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    if old in (0, new):
        return []
    proof: list[bytes] = []
    start, end, whole = 0, new, True
    m = old
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(range_hash(subtree, start + k, end))
            end = start + k
        else:
            proof.append(range_hash(subtree, start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append(range_hash(subtree, start, end))
    return proof[::-1]


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof leads to (RFC 9162 §2.1.3.2), or None when its length does
    not fit the tree."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    return root_from_inclusion(index, size, leaf, proof) == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: the tree of ``new`` leaves extends the one of ``old``. Refuses old > new
    and a proof with a hash too many or too few."""
    if not 0 <= old <= new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof  # every tree extends the empty one
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


class CompactRange:
    """The right edge of a tree of ``size`` leaves: the roots of its complete subtrees, largest
    first (one per binary digit of the size). Appending a leaf merges equal subtrees; each merge
    whose level is a multiple of ``keep`` is reported to ``on_node(level, index, hash)``."""

    __slots__ = ("size", "hashes", "keep", "on_node")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = (), keep: int = 8,
                 on_node: Callable[[int, int, bytes], None] | None = None):
        assert len(hashes) == bin(size).count("1")
        self.size, self.hashes, self.keep, self.on_node = size, list(hashes), keep, on_node

    def append(self, leaf: bytes) -> None:
        hashes, size, level, found = self.hashes, self.size, 0, leaf
        while size & 1:
            found = node_hash(hashes.pop(), found)
            size >>= 1
            level += 1
            if level % self.keep == 0 and self.on_node is not None:
                self.on_node(level, size, found)  # the merged subtree's index at its level
        hashes.append(found)
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        found = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            found = node_hash(left, found)
        return found

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.hashes, self.keep, self.on_node)


def subtrees_of(size: int) -> list[tuple[int, int]]:
    """The complete subtrees (start, level) a tree of ``size`` leaves is made of, largest first."""
    found, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            found.append((start, level))
            start += 1 << level
    return found


def in_memory(leaves: Sequence[bytes]) -> Subtree:
    """``subtree`` over a list of leaf hashes (for tests and small trees)."""

    def subtree(start: int, level: int) -> bytes:
        if level == 0:
            return leaves[start]
        half = 1 << (level - 1)
        return node_hash(subtree(start, level - 1), subtree(start + half, level - 1))

    return subtree
