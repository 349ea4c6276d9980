"""RFC 9162 §2.1 hashing and proofs (store/merkle.py): the published test vectors (RFC 6962's,
as transparency-dev/merkle's testonly package and proof tests give them), then every proof of
every tree of 1..64 leaves against a reference MTH, and verifiers that refuse what they must."""

from __future__ import annotations

import pytest

from tollbook.store import merkle

LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                      "606162636465666768696a6b6c6d6e6f")]
ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")]
H = bytes.fromhex
# (leaf index, tree size, proof)
INCLUSION = [
    (0, 1, []),
    (0, 8, [H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (5, 8, [H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 3, [H("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (1, 5, [H("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
]
# (old size, new size, proof)
CONSISTENCY = [
    (1, 1, []),
    (1, 8, [H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (6, 7, [H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            H("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
]

HASHED = [merkle.leaf_hash(leaf) for leaf in LEAVES]


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH as RFC 9162 writes it, recursively."""
    if not leaves:
        return merkle.EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def test_roots_match_the_published_vectors():
    assert merkle.leaf_hash(b"") == ROOTS[1]
    for size, root in enumerate(ROOTS):
        assert reference_root(HASHED[:size]) == root
        assert merkle.range_hash(merkle.in_memory(HASHED), 0, size) == root
        grown = merkle.CompactRange()
        for leaf in HASHED[:size]:
            grown.append(leaf)
        assert grown.root() == root


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_the_published_vectors(index, size, proof):
    assert merkle.inclusion_proof(merkle.in_memory(HASHED), index, size) == proof
    assert merkle.verify_inclusion(index, size, HASHED[index], proof, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_proofs_match_the_published_vectors(old, new, proof):
    assert merkle.consistency_proof(merkle.in_memory(HASHED), old, new) == proof
    assert merkle.verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


def leaves_of(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


LEAVES_64 = leaves_of(64)
ROOTS_64 = [reference_root(LEAVES_64[:n]) for n in range(65)]
TREE_64 = merkle.in_memory(LEAVES_64)


def test_every_inclusion_proof_up_to_64_leaves():
    for size in range(1, 65):
        for index in range(size):
            proof = merkle.inclusion_proof(TREE_64, index, size)
            assert merkle.verify_inclusion(index, size, LEAVES_64[index], proof, ROOTS_64[size])
            assert not merkle.verify_inclusion(index, size, LEAVES_64[(index + 1) % 64], proof, ROOTS_64[size])
            assert not merkle.verify_inclusion(index, size, LEAVES_64[index], [*proof, ROOTS_64[1]], ROOTS_64[size])
            if proof:
                assert not merkle.verify_inclusion(index, size, LEAVES_64[index], proof[:-1], ROOTS_64[size])
            assert not merkle.verify_inclusion(size, size, LEAVES_64[index], proof, ROOTS_64[size])


def test_every_consistency_proof_up_to_64_leaves():
    for new in range(1, 65):
        for old in range(0, new + 1):
            proof = merkle.consistency_proof(TREE_64, old, new)
            assert merkle.verify_consistency(old, new, ROOTS_64[old], ROOTS_64[new], proof), (old, new)
            if 0 < old < new:
                other = merkle.leaf_hash(b"other")
                assert not merkle.verify_consistency(old, new, other, ROOTS_64[new], proof)
                assert not merkle.verify_consistency(old, new, ROOTS_64[old], other, proof)
                # a hash too many, or too few, anywhere
                assert not merkle.verify_consistency(old, new, ROOTS_64[old], ROOTS_64[new], [*proof, other])
                assert not merkle.verify_consistency(old, new, ROOTS_64[old], ROOTS_64[new], [other, *proof])
                assert not merkle.verify_consistency(old, new, ROOTS_64[old], ROOTS_64[new], proof[:-1])
                assert not merkle.verify_consistency(old, new, ROOTS_64[old], ROOTS_64[new], proof[1:])
                assert not merkle.verify_consistency(old, new, ROOTS_64[old], ROOTS_64[new], [])


def test_consistency_refuses_a_smaller_new_tree():
    for old in range(2, 65):
        new = old - 1
        proof = merkle.consistency_proof(TREE_64, new, old)
        assert not merkle.verify_consistency(old, new, ROOTS_64[old], ROOTS_64[new], proof)
    with pytest.raises(ValueError):
        merkle.consistency_proof(TREE_64, 5, 4)
    assert not merkle.verify_consistency(3, 3, ROOTS_64[3], ROOTS_64[3], [ROOTS_64[1]])
    assert not merkle.verify_consistency(0, 3, merkle.EMPTY_ROOT, ROOTS_64[3], [ROOTS_64[1]])


def test_compact_range_reports_the_nodes_it_completes():
    kept: dict[tuple[int, int], bytes] = {}
    grown = merkle.CompactRange(keep=2, on_node=lambda level, index, found: kept.__setitem__((level, index), found))
    for n, leaf in enumerate(LEAVES_64, 1):
        grown.append(leaf)
        assert grown.root() == ROOTS_64[n]
    assert kept == {(level, index): TREE_64(index << level, level)
                    for level in (2, 4, 6) for index in range(64 >> level)}
