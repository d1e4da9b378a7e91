"""S-CLIP losses: Sinkhorn against POT and its marginals, caption and keyword losses against plain
reference computations, candidate selection, degenerate inputs."""
from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F

from gentleclip.losses.sclip import (
    SClipCaptionLoss,
    SClipKeywordLoss,
    caption_pseudo_labels,
    nearest_paired_rows,
    sinkhorn,
)


def unit(n: int, d: int, seed: int, requires_grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    return z.requires_grad_(requires_grad)


def ref_sinkhorn(cost: np.ndarray, a: np.ndarray, b: np.ndarray, eps: float, n_iter: int) -> np.ndarray:
    """Plain (non-log) Sinkhorn-Knopp with explicit scalar loops."""
    n, m = cost.shape
    k = [[math.exp(-cost[i, j] / eps) for j in range(m)] for i in range(n)]
    u = [1.0 / n] * n
    v = [1.0 / m] * m
    for _ in range(n_iter):
        v = [b[j] / sum(k[i][j] * u[i] for i in range(n)) for j in range(m)]
        u = [a[i] / sum(k[i][j] * v[j] for j in range(m)) for i in range(n)]
    return np.array([[u[i] * k[i][j] * v[j] for j in range(m)] for i in range(n)])


# --------------------------------------------------------------------------------------- sinkhorn

def test_sinkhorn_marginals_non_uniform() -> None:
    rng = np.random.default_rng(0)
    cost = torch.from_numpy(rng.uniform(0, 2, size=(7, 5)))
    a = torch.from_numpy(rng.uniform(0.5, 2, size=7))
    a = a / a.sum()
    b = torch.from_numpy(rng.uniform(0.5, 2, size=5))
    b = b / b.sum()
    plan = sinkhorn(cost, a, b, eps=0.2, n_iter=300)
    assert plan.shape == (7, 5) and plan.dtype == torch.float64
    assert (plan >= 0).all()
    torch.testing.assert_close(plan.sum(1), a, atol=1e-12, rtol=0)  # last update is on the rows
    torch.testing.assert_close(plan.sum(0), b, atol=1e-8, rtol=0)


def test_sinkhorn_default_marginals_are_uniform() -> None:
    cost = torch.rand(6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plan = sinkhorn(cost, eps=0.2, n_iter=1000)
    torch.testing.assert_close(plan.sum(1), torch.full((6,), 1 / 6, dtype=torch.float64))
    torch.testing.assert_close(plan.sum(0), torch.full((4,), 1 / 4, dtype=torch.float64))


@pytest.mark.parametrize("n_iter", [1, 3, 10])
def test_sinkhorn_same_iterates_as_pot_and_reference(n_iter: int) -> None:
    rng = np.random.default_rng(n_iter)
    cost = rng.uniform(0, 2, size=(5, 4))
    a = rng.uniform(0.5, 1.5, size=5)
    a /= a.sum()
    b = rng.uniform(0.5, 1.5, size=4)
    b /= b.sum()
    with pytest.warns(UserWarning):  # stopThr=0: POT runs exactly n_iter iterations and says so
        pot_plan = ot.sinkhorn(a, b, cost, reg=0.3, numItermax=n_iter, stopThr=0.0)
    ours = sinkhorn(torch.from_numpy(cost), torch.from_numpy(a), torch.from_numpy(b), eps=0.3, n_iter=n_iter)
    np.testing.assert_allclose(ours.numpy(), pot_plan, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ours.numpy(), ref_sinkhorn(cost, a, b, 0.3, n_iter), rtol=1e-10, atol=1e-14)


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_sinkhorn_small_epsilon_is_stable_and_matches_pot_log() -> None:
    rng = np.random.default_rng(3)
    cost = rng.uniform(0, 2, size=(6, 6))
    a = np.full(6, 1 / 6)
    ours = sinkhorn(torch.from_numpy(cost), eps=2e-3, n_iter=300)
    assert torch.isfinite(ours).all()
    ref = ot.sinkhorn(a, a, cost, reg=2e-3, method="sinkhorn_log", numItermax=300, stopThr=0.0)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-9)
    # exp(-2/2e-3) underflows in plain Sinkhorn; the log-domain plan is still a transport plan
    torch.testing.assert_close(ours.sum(1), torch.from_numpy(a))


def test_sinkhorn_keeps_float32_and_has_no_grad() -> None:
    cost = torch.rand(3, 4, requires_grad=True)
    plan = sinkhorn(cost, eps=0.5, n_iter=5)
    assert plan.dtype == torch.float32 and not plan.requires_grad


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cost": torch.rand(3)}, "2-d"),
        ({"cost": torch.rand(0, 3)}, "at least one"),
        ({"cost": torch.rand(3, 3), "eps": 0.0}, "eps"),
        ({"cost": torch.rand(3, 3), "n_iter": 0}, "n_iter"),
        ({"cost": torch.rand(3, 3), "a": torch.ones(2) / 2}, "shape"),
        ({"cost": torch.rand(3, 3), "a": torch.tensor([0.5, 0.5, 0.5])}, "same mass"),
        ({"cost": torch.rand(3, 3), "b": torch.tensor([1.5, -0.5, 0.0])}, "non-negative"),
        ({"cost": torch.tensor([[0.0, float("nan")], [1.0, 1.0]])}, "NaN"),
    ],
)
def test_sinkhorn_rejects_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sinkhorn(**kwargs)


# --------------------------------------------------------------------------------- caption loss

def test_caption_loss_equals_hand_computation() -> None:
    tau, eps, n_iter = 0.5, 0.2, 7
    za_u = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    zb_p = torch.tensor([[0.8, 0.6], [-0.6, 0.8]], dtype=torch.float64)
    loss = SClipCaptionLoss(temperature=tau, ot_epsilon=eps, n_iter=n_iter)(za_u, zb_p)

    u, s = za_u.detach().numpy(), zb_p.numpy()
    cost = np.array([[1 - float(u[i] @ s[j]) for j in range(2)] for i in range(3)])
    plan = ref_sinkhorn(cost, np.full(3, 1 / 3), np.full(2, 1 / 2), eps, n_iter)
    total = 0.0
    for i in range(3):
        logits = [float(u[i] @ s[j]) / tau for j in range(2)]
        log_norm = math.log(sum(math.exp(x) for x in logits))
        q = plan[i] / plan[i].sum()
        total += -sum(q[j] * (logits[j] - log_norm) for j in range(2))
    assert loss.item() == pytest.approx(total / 3, rel=1e-12)

    # the targets are constants: d loss / d za_u = (softmax - q) zb / (tau * U)
    loss.backward()
    p = torch.softmax(za_u.detach() @ zb_p.T / tau, dim=1)
    q = torch.from_numpy(plan / plan.sum(1, keepdims=True))
    torch.testing.assert_close(za_u.grad, (p - q) @ zb_p / (tau * 3))


def test_caption_loss_paired_a_support_and_default_epsilon() -> None:
    za_u, za_p, zb_p = unit(5, 4, 0), unit(3, 4, 1), unit(3, 4, 2)
    tau = 0.1
    loss = SClipCaptionLoss(temperature=tau)(za_u, zb_p, za_paired=za_p)  # eps = tau, 10 iterations
    plan = ref_sinkhorn((1 - za_u @ za_p.T).numpy(), np.full(5, 0.2), np.full(3, 1 / 3), tau, 10)
    q = torch.from_numpy(plan / plan.sum(1, keepdims=True))
    expected = -(q * torch.log_softmax(za_u @ zb_p.T / tau, dim=1)).sum(1).mean()
    torch.testing.assert_close(loss, expected)
    # and it differs from the paired-B support on generic inputs
    assert not torch.isclose(loss, SClipCaptionLoss(temperature=tau)(za_u, zb_p))


def test_caption_pot_backend_agrees() -> None:
    za_u, zb_p = unit(6, 8, 3), unit(4, 8, 4)
    torch_loss = SClipCaptionLoss(0.07, 0.05, 20, backend="torch")(za_u, zb_p)
    pot_loss = SClipCaptionLoss(0.07, 0.05, 20, backend="pot")(za_u, zb_p)
    torch.testing.assert_close(torch_loss, pot_loss)


def test_caption_pseudo_labels_are_balanced_over_captions() -> None:
    # all unpaired rows sit next to paired row 0; OT still spreads the mass over the captions
    zb_p = torch.eye(3, dtype=torch.float64)
    za_u = F.normalize(torch.tensor([[1.0, 0.1, 0.0], [1.0, 0.0, 0.1], [1.0, 0.05, 0.05]], dtype=torch.float64), dim=1)
    q = caption_pseudo_labels(za_u, zb_p, eps=0.05, n_iter=500)
    torch.testing.assert_close(q.sum(1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(q.sum(0), torch.ones(3, dtype=torch.float64), atol=1e-6, rtol=0)
    assert (za_u @ zb_p.T).argmax(1).tolist() == [0, 0, 0]  # nearest neighbour would collapse


# --------------------------------------------------------------------------------- keyword loss

def keyword_reference(za_u, za_p, multi_hot, z_kw, tau) -> float:
    """Plain loops: nearest paired row, candidate set, -log of the candidate mass."""
    u, p, y, k = (t.detach().tolist() for t in (za_u, za_p, multi_hot, z_kw))
    dot = lambda x, w: sum(xi * wi for xi, wi in zip(x, w))  # noqa: E731
    losses = []
    for row in u:
        sims = [dot(row, q) / math.sqrt(dot(row, row) * dot(q, q)) for q in p]
        nearest = max(range(len(p)), key=lambda j: (sims[j], -j))
        cands = [kk for kk in range(len(k)) if y[nearest][kk]]
        if not cands:
            continue
        logits = [dot(row, kw) / tau for kw in k]
        denom = sum(math.exp(x) for x in logits)
        losses.append(-math.log(sum(math.exp(logits[kk]) for kk in cands) / denom))
    return sum(losses) / len(losses)


def test_keyword_loss_matches_loop_reference() -> None:
    za_u, za_p, z_kw = unit(9, 6, 10, True), unit(4, 6, 11), unit(7, 6, 12, True)
    multi_hot = torch.tensor([[1, 0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0],
                              [1, 1, 1, 1, 0, 1, 0]], dtype=torch.bool)
    tau = 0.2
    nearest = (za_u @ za_p.T).argmax(1)
    assert 2 in nearest.tolist()  # at least one unpaired row lands on the keyword-less caption
    loss = SClipKeywordLoss(tau)(za_u, za_p, multi_hot, z_kw)
    assert loss.item() == pytest.approx(keyword_reference(za_u, za_p, multi_hot, z_kw, tau), rel=1e-10)
    loss.backward()
    assert torch.isfinite(za_u.grad).all() and torch.isfinite(z_kw.grad).all()
    assert z_kw.grad.abs().sum() > 0
    # float multi-hot gives the same loss
    loss_f = SClipKeywordLoss(tau)(za_u, za_p, multi_hot.double(), z_kw)
    torch.testing.assert_close(loss_f, loss.detach())
    # any non-zero entry marks membership (e.g. a weighted multi-hot)
    loss_w = SClipKeywordLoss(tau)(za_u, za_p, multi_hot.double() * 0.25, z_kw)
    torch.testing.assert_close(loss_w, loss.detach())


def test_keyword_loss_single_candidate_is_cross_entropy() -> None:
    za_u, za_p, z_kw = unit(5, 4, 20), unit(2, 4, 21), unit(3, 4, 22)
    multi_hot = torch.tensor([[0, 1, 0], [0, 0, 1]], dtype=torch.bool)
    nearest = (za_u @ za_p.T).argmax(1)
    target = torch.tensor([1, 2])[nearest]
    expected = F.cross_entropy(za_u @ z_kw.T / 0.1, target)
    torch.testing.assert_close(SClipKeywordLoss(0.1)(za_u, za_p, multi_hot, z_kw), expected)


def test_keyword_loss_nearest_index_override() -> None:
    za_u, za_p, z_kw = unit(4, 4, 30), unit(3, 4, 31), unit(3, 4, 32)
    multi_hot = torch.eye(3, dtype=torch.bool)
    forced = torch.tensor([2, 2, 0, 1])
    expected = F.cross_entropy(za_u @ z_kw.T / 0.3, forced)
    torch.testing.assert_close(SClipKeywordLoss(0.3)(za_u, za_p, multi_hot, z_kw, nearest_index=forced), expected)
    with pytest.raises(ValueError, match="nearest_index"):
        SClipKeywordLoss(0.3)(za_u, za_p, multi_hot, z_kw, nearest_index=torch.tensor([0, 1, 2, 3]))


def test_nearest_paired_rows_picks_the_nearest() -> None:
    za_p = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]), dim=1)
    za_u = F.normalize(torch.tensor([[0.1, 0.0, 0.9], [0.9, 0.8, 0.0], [0.0, 1.0, 0.2], [1.0, 0.05, 0.0]]), dim=1)
    assert nearest_paired_rows(za_u, za_p).tolist() == [2, 3, 1, 0]
    # and on random data, brute force over unnormalised inputs (cosine, not dot product)
    g = torch.Generator().manual_seed(5)
    u, p = torch.randn(20, 5, generator=g), torch.randn(6, 5, generator=g) * torch.rand(6, 1, generator=g) * 10
    brute = [max(range(6), key=lambda j: float(F.cosine_similarity(u[i], p[j], dim=0))) for i in range(20)]
    assert nearest_paired_rows(u, p).tolist() == brute


# ------------------------------------------------------------------------------- degenerate input

def _assert_zero_with_grad(loss: torch.Tensor, *leaves: torch.Tensor) -> None:
    assert loss.dim() == 0 and loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and (leaf.grad == 0).all()


@pytest.mark.parametrize("n_unpaired, n_paired", [(0, 3), (4, 0), (0, 0)])
def test_caption_loss_empty_is_zero(n_unpaired: int, n_paired: int) -> None:
    za_u, zb_p = unit(n_unpaired, 4, 0, True), unit(n_paired, 4, 1, True)
    _assert_zero_with_grad(SClipCaptionLoss()(za_u, zb_p), za_u, zb_p)


@pytest.mark.parametrize("n_unpaired, n_paired, n_kw", [(0, 3, 4), (3, 0, 4), (3, 2, 0)])
def test_keyword_loss_empty_is_zero(n_unpaired: int, n_paired: int, n_kw: int) -> None:
    za_u, za_p, z_kw = unit(n_unpaired, 4, 0, True), unit(n_paired, 4, 1, True), unit(n_kw, 4, 2, True)
    multi_hot = torch.ones(n_paired, n_kw, dtype=torch.bool)
    _assert_zero_with_grad(SClipKeywordLoss()(za_u, za_p, multi_hot, z_kw), za_u, za_p, z_kw)


def test_keyword_loss_no_candidates_is_zero() -> None:
    za_u, za_p, z_kw = unit(3, 4, 0, True), unit(2, 4, 1, True), unit(5, 4, 2, True)
    _assert_zero_with_grad(SClipKeywordLoss()(za_u, za_p, torch.zeros(2, 5, dtype=torch.bool), z_kw), za_u, z_kw)


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="temperature"):
        SClipCaptionLoss(temperature=0.0)
    with pytest.raises(ValueError, match="ot_epsilon"):
        SClipCaptionLoss(ot_epsilon=-1.0)
    with pytest.raises(ValueError, match="backend"):
        SClipCaptionLoss(backend="numpy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same dim"):
        SClipCaptionLoss()(unit(2, 4, 0), unit(2, 5, 1))
    with pytest.raises(ValueError, match="same paired rows"):
        SClipCaptionLoss()(unit(2, 4, 0), unit(3, 4, 1), za_paired=unit(2, 4, 2))
    with pytest.raises(ValueError, match=r"\[n_paired, n_keywords\]"):
        SClipKeywordLoss()(unit(2, 4, 0), unit(3, 4, 1), torch.ones(3, 2, dtype=torch.bool), unit(5, 4, 2))
    with pytest.raises(ValueError, match="non-negative"):
        SClipKeywordLoss()(unit(2, 4, 0), unit(1, 4, 1), -torch.ones(1, 5), unit(5, 4, 2))
