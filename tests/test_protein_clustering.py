"""Near-identical sequence grouping (bottom-k MinHash + union-find) and group-aware splits."""
from __future__ import annotations

import numpy as np
import pytest

from domains.protein import UnionFind, cluster_sequences, group_split

AA = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


def mutate(seq: str, identity: float, rng: np.random.Generator) -> str:
    s = np.array(list(seq))
    n = int(round((1 - identity) * len(s)))
    pos = rng.choice(len(s), size=n, replace=False)
    for p in pos:
        s[p] = rng.choice(AA[AA != s[p]])
    return "".join(s)


def test_union_find():
    uf = UnionFind(5)
    assert uf.union(3, 4) and uf.union(0, 4) and not uf.union(3, 0)
    assert uf.labels().tolist() == [0, 1, 2, 0, 0]


def test_near_identical_sequences_share_a_group_and_random_ones_do_not():
    rng = np.random.default_rng(0)
    parents = ["".join(rng.choice(AA, size=n)) for n in (300, 400, 250, 500)]
    seqs, family = [], []
    for f, p in enumerate(parents):
        seqs.append(p)
        family.append(f)
        for _ in range(3):
            seqs.append(mutate(p, 0.95, rng))
            family.append(f)
    seqs.append(parents[0][:290])  # a near-complete fragment of family 0
    family.append(0)
    seqs.append(mutate(parents[1], 0.5, rng))  # 50% identity: not a near duplicate
    family.append(99)
    seqs += ["MK", "MK", "ACD"]  # short sequences: identical ones group, others do not
    family += [100, 100, 101]
    groups = cluster_sequences(seqs)
    fam = np.array(family)
    for f in np.unique(fam):
        assert len(np.unique(groups[fam == f])) == 1, f"family {f} split over groups"
    # different families never merge
    assert len(np.unique(groups)) == len(np.unique(fam))
    assert groups[0] == 0  # ids numbered by first appearance


def test_threshold_controls_merging():
    rng = np.random.default_rng(1)
    a = "".join(rng.choice(AA, size=400))
    b = mutate(a, 0.80, rng)  # J(5-mers) ~ 0.2
    assert len(set(cluster_sequences([a, b], threshold=0.1))) == 1
    assert len(set(cluster_sequences([a, b], threshold=0.5))) == 2
    with pytest.raises(ValueError, match="threshold"):
        cluster_sequences([a], threshold=0)


def test_group_split_keeps_groups_whole():
    groups = np.repeat(np.arange(50), np.arange(1, 51) % 4 + 1)
    train, test = group_split(groups, test_fraction=0.2, seed=3)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(groups)
    assert not set(groups[train]) & set(groups[test])
    assert 0.1 < len(test) / len(groups) < 0.35
    again = group_split(groups, test_fraction=0.2, seed=3)
    assert np.array_equal(again[1], test)
    with pytest.raises(ValueError, match="at least 2 groups"):
        group_split(np.zeros(5, dtype=int))


# ---------------------------------------------------------------- MMseqs2 identity clusters
def _random_protein(rng, n: int) -> str:
    return "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=n))


def test_mmseqs_clusters_follow_sequence_identity() -> None:
    from domains.protein.mmseqs import mmseqs_clusters

    rng = np.random.default_rng(0)
    base = [_random_protein(rng, 180) for _ in range(4)]
    near = []
    for s in base:  # about 5 % of the residues changed: far above 30 % identity
        chars = list(s)
        for pos in rng.choice(len(chars), size=9, replace=False):
            chars[pos] = "W" if chars[pos] != "W" else "A"
        near.append("".join(chars))
    seqs = base + near + [base[0]]
    labels = mmseqs_clusters(seqs, min_seq_id=0.3, threads=1)
    assert labels.tolist()[:4] == [0, 1, 2, 3], "labels in order of first appearance"
    assert (labels[4:8] == labels[:4]).all(), "a 95 %-identical copy joins its original's cluster"
    assert labels[8] == labels[0], "identical sequences share a cluster"
    assert len(set(labels[:4].tolist())) == 4, "unrelated random proteins stay apart"
    strict = mmseqs_clusters(seqs, min_seq_id=0.99, threads=1)
    assert strict[8] == strict[0] and len(set(strict.tolist())) == 8


def test_mmseqs_missing_binary_says_how_to_get_it(monkeypatch) -> None:
    from domains.protein.mmseqs import MMseqsError, mmseqs_clusters

    monkeypatch.setenv("MMSEQS2_PATH", "/nonexistent/mmseqs")
    with pytest.raises(MMseqsError, match="MMSEQS2_PATH"):
        mmseqs_clusters(["ACDEFGHIK"])
    with pytest.raises(ValueError, match="min_seq_id"):
        mmseqs_clusters(["ACDEFGHIK"], min_seq_id=0.0)
