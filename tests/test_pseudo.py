"""Nearest-neighbour pseudo-pairs: selection against brute force, loss against a plain reference."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gentleclip.losses.pseudo_nn import PseudoNNLoss, nearest_neighbour_pairs


def rows(n: int, d: int, seed: int, requires_grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1).requires_grad_(requires_grad)


def brute_pairs(za, zb, mutual=False, threshold=None) -> list[tuple[int, int]]:
    a, b = za.detach().tolist(), zb.detach().tolist()

    def cos(x, y):
        return sum(p * q for p, q in zip(x, y)) / math.sqrt(sum(p * p for p in x) * sum(q * q for q in y))

    sim = [[cos(x, y) for y in b] for x in a]
    out = []
    for i in range(len(a)):
        j = max(range(len(b)), key=lambda jj: (sim[i][jj], -jj))
        if mutual and max(range(len(a)), key=lambda ii: (sim[ii][j], -ii)) != i:
            continue
        if threshold is not None and sim[i][j] < threshold:
            continue
        out.append((i, j))
    return out


@pytest.mark.parametrize("mutual", [False, True])
@pytest.mark.parametrize("threshold", [None, 0.3])
def test_pairs_equal_brute_force(mutual: bool, threshold: float | None) -> None:
    za = rows(25, 4, 0) * 3.0  # unnormalised: selection is by cosine
    zb = rows(10, 4, 1)
    idx_a, idx_b = nearest_neighbour_pairs(za, zb, mutual=mutual, threshold=threshold)
    assert list(zip(idx_a.tolist(), idx_b.tolist())) == brute_pairs(za, zb, mutual, threshold)


def test_mutual_and_threshold_actually_filter() -> None:
    za, zb = rows(25, 4, 0), rows(10, 4, 1)
    n_all = len(nearest_neighbour_pairs(za, zb)[0])
    assert n_all == 25
    idx_a, idx_b = nearest_neighbour_pairs(za, zb, mutual=True)
    assert 0 < len(idx_a) <= 10 and len(set(idx_b.tolist())) == len(idx_b)  # one-to-one
    assert len(nearest_neighbour_pairs(za, zb, threshold=0.9)[0]) < n_all


def reference_loss(za, zb, pairs, tau) -> float:
    """Plain loops over the pseudo-pairs: A->B cross-entropy, B->A uniform soft target."""
    a, b = za.detach().tolist(), zb.detach().tolist()
    logit = [[sum(p * q for p, q in zip(x, y)) / tau for y in b] for x in a]
    ab = []
    for i, j in pairs:
        ab.append(-(logit[i][j] - math.log(sum(math.exp(v) for v in logit[i]))))
    ba = []
    for j in sorted({j for _, j in pairs}):
        partners = [i for i, jj in pairs if jj == j]
        col = [logit[i][j] for i in range(len(a))]
        lse = math.log(sum(math.exp(v) for v in col))
        ba.append(-sum((col[i] - lse) / len(partners) for i in partners))
    return 0.5 * (sum(ab) / len(ab) + sum(ba) / len(ba))


@pytest.mark.parametrize("mutual", [False, True])
def test_loss_matches_reference(mutual: bool) -> None:
    za, zb = rows(12, 5, 2, True), rows(7, 5, 3, True)
    tau = 0.2
    pairs = brute_pairs(za, zb, mutual)
    if not mutual:
        assert len({j for _, j in pairs}) < len(pairs)  # shared neighbours are exercised
    loss = PseudoNNLoss(tau, mutual=mutual)(za, zb)
    assert loss.item() == pytest.approx(reference_loss(za, zb, pairs, tau), rel=1e-10)
    loss.backward()
    assert torch.isfinite(za.grad).all() and torch.isfinite(zb.grad).all()


def test_mutual_pairs_give_plain_clip_loss() -> None:
    # well-separated one-to-one neighbours: the loss is symmetric InfoNCE on the pseudo-pairs
    zb = F.normalize(torch.eye(4, dtype=torch.float64) + 0.05, dim=1)
    perm = torch.tensor([2, 0, 3, 1])
    za = F.normalize(zb[perm] + 0.01 * rows(4, 4, 9), dim=1)
    logits = za @ zb.T / 0.1
    expected = 0.5 * (F.cross_entropy(logits, perm) + F.cross_entropy(logits.T[perm], torch.arange(4)))
    torch.testing.assert_close(PseudoNNLoss(0.1, mutual=True)(za, zb), expected)


@pytest.mark.parametrize("n_a, n_b", [(0, 4), (4, 0), (0, 0)])
def test_empty_pools_give_zero(n_a: int, n_b: int) -> None:
    za, zb = rows(n_a, 3, 0, True), rows(n_b, 3, 1, True)
    loss = PseudoNNLoss()(za, zb)
    assert loss.dim() == 0 and loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.isfinite(za.grad).all() and torch.isfinite(zb.grad).all()


def test_threshold_rejecting_everything_gives_zero() -> None:
    za, zb = rows(3, 4, 0, True), rows(3, 4, 1, True)
    loss = PseudoNNLoss(threshold=1.0)(za, zb)
    assert loss.item() == 0.0
    loss.backward()
    assert (za.grad == 0).all()


def test_validation() -> None:
    with pytest.raises(ValueError, match="temperature"):
        PseudoNNLoss(temperature=-1)
    with pytest.raises(ValueError, match="threshold"):
        PseudoNNLoss(threshold=1.5)
    with pytest.raises(ValueError, match="same dim"):
        nearest_neighbour_pairs(rows(2, 3, 0), rows(2, 4, 1))
    with pytest.raises(ValueError, match="2-D"):
        nearest_neighbour_pairs(torch.zeros(3), rows(2, 3, 1))
