"""Each loss against a plain reference computation written out with loops, plus degenerate inputs."""
from __future__ import annotations

import math
import statistics

import pytest
import torch
import torch.nn.functional as F

from gentleclip.losses import (
    CentroidUniformityLoss,
    CLIPLoss,
    MKMMDLoss,
    NTXentLoss,
    PairAlignmentLoss,
    SDDLoss,
    squared_distances,
)
from gentleclip.losses import _fused as fused_module

# ----------------------------------------------------------------------------- helpers


def unit(n: int, d: int = 6, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


def sqdist(x: list[float], y: list[float]) -> float:
    return sum((xi - yi) ** 2 for xi, yi in zip(x, y))


def dot(x: list[float], y: list[float]) -> float:
    return sum(xi * yi for xi, yi in zip(x, y))


def ref_variance(rows: list[list[float]]) -> float:
    n, d = len(rows), len(rows[0])
    means = [sum(r[k] for r in rows) / n for k in range(d)]
    return sum(sum((r[k] - means[k]) ** 2 for k in range(d)) for r in rows) / n


def finite_grads(loss: torch.Tensor, *inputs: torch.Tensor) -> bool:
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return bool(torch.isfinite(loss)) and all(g is None or bool(torch.isfinite(g).all()) for g in grads)


def degenerate_inputs() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Sets that break naive implementations: duplicates, zero vectors, one row, zero variance."""
    a = unit(5, seed=1)
    dup = a[[0, 0, 0, 1, 1]]
    return {
        "duplicates": (dup, dup.flip(0)),
        "duplicates_vs_other": (dup, unit(4, seed=2)),
        "zeros": (torch.zeros(4, 6, dtype=torch.float64), torch.zeros(3, 6, dtype=torch.float64)),
        "zeros_vs_unit": (torch.zeros(4, 6, dtype=torch.float64), unit(3, seed=3)),
        "one_row": (unit(1, seed=4), unit(1, seed=5)),
        "one_row_vs_many": (unit(1, seed=4), unit(6, seed=5)),
        "zero_variance": (a[[2] * 4], a[[3] * 4]),
        "same_point": (a[[2] * 4], a[[2] * 3]),
    }


# ----------------------------------------------------------------------------- CLIP


def ref_clip(za: torch.Tensor, zb: torch.Tensor, n: int, tau: float) -> float:
    A, B = za.tolist(), zb.tolist()
    total = 0.0
    for i in range(n):  # a -> b: row i of A against every row of B
        logits = [dot(A[i], b) / tau for b in B]
        total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    for i in range(n):  # b -> a
        logits = [dot(B[i], a) / tau for a in A]
        total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    return total / (2 * n)


@pytest.mark.parametrize("n_paired", [1, 3, 5])
def test_clip_matches_loop_reference_with_extra_negatives(n_paired):
    za, zb = unit(7, seed=0), unit(5, seed=1)
    got = CLIPLoss(temperature=0.07)(za, zb, n_paired)
    assert got.item() == pytest.approx(ref_clip(za, zb, n_paired, 0.07), rel=1e-6)  # tau stored as float32


def test_clip_equals_torch_cross_entropy_by_hand():
    za, zb = unit(6, seed=3), unit(6, seed=4)
    tau = 0.05
    logits = zb @ za.t() / tau  # b rows against a rows, as in the design
    labels = torch.arange(6)
    expected = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    torch.testing.assert_close(CLIPLoss(tau)(za, zb, 6), expected)
    # unpaired rows are extra negatives: changing one changes the loss, dropping it changes it back
    za2 = torch.cat([za, unit(2, seed=9)])
    assert CLIPLoss(tau)(za2, zb, 6).item() > expected.item()


def test_clip_zero_pairs_is_exact_zero_with_graph():
    za, zb = unit(4, seed=0).requires_grad_(), unit(3, seed=1).requires_grad_()
    loss = CLIPLoss(learnable=True)(za, zb, 0)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(za.grad, torch.zeros_like(za)) and torch.equal(zb.grad, torch.zeros_like(zb))


def test_clip_learnable_temperature_is_clamped_and_trained():
    loss_fn = CLIPLoss(temperature=0.05, learnable=True, min_temperature=0.02, max_temperature=0.5)
    assert isinstance(loss_fn.log_temperature, torch.nn.Parameter)
    za, zb = unit(5, seed=0), unit(5, seed=1)
    loss = loss_fn(za, zb, 5)
    loss.backward()
    assert loss_fn.log_temperature.grad is not None and loss_fn.log_temperature.grad.abs() > 0
    assert loss.item() == pytest.approx(ref_clip(za, zb, 5, 0.05), rel=1e-5)
    with torch.no_grad():
        loss_fn.log_temperature.fill_(math.log(10.0))
    assert loss_fn.temperature.item() == pytest.approx(0.5)
    assert loss_fn(za, zb, 5).item() == pytest.approx(ref_clip(za, zb, 5, 0.5), rel=1e-5)
    fixed = CLIPLoss(0.05)
    assert list(fixed.parameters()) == [] and "log_temperature" in dict(fixed.named_buffers())


def test_clip_gradcheck():
    za, zb = unit(4, seed=0).requires_grad_(), unit(5, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: CLIPLoss(0.1)(a, b, 3), (za, zb))


@pytest.mark.parametrize("name", list(degenerate_inputs()))
def test_clip_degenerate_inputs_have_finite_grads(name):
    za, zb = (t.clone().requires_grad_() for t in degenerate_inputs()[name])
    n = min(len(za), len(zb))
    for k in (0, n):
        assert finite_grads(CLIPLoss()(za, zb, k), za, zb)


def test_clip_errors():
    za, zb = unit(3), unit(4)
    with pytest.raises(ValueError, match="n_paired"):
        CLIPLoss()(za, zb, 4)
    with pytest.raises(ValueError, match="n_paired"):
        CLIPLoss()(za, zb, -1)
    with pytest.raises(ValueError, match="same dim"):
        CLIPLoss()(za, unit(3, d=5), 1)
    with pytest.raises(ValueError, match="2-D"):
        CLIPLoss()(za[0], zb, 1)
    with pytest.raises(ValueError, match="temperature"):
        CLIPLoss(temperature=2.0)
    with pytest.raises(ValueError, match="unpaired_negatives"):
        CLIPLoss(unpaired_negatives="no")


@pytest.mark.parametrize("n_paired", [1, 3])
def test_clip_without_unpaired_negatives_is_clip_on_the_pairs(n_paired):
    za, zb = unit(7, seed=0), unit(5, seed=1)
    loss_fn = CLIPLoss(temperature=0.07, unpaired_negatives=False)
    got = loss_fn(za, zb, n_paired)
    # the loop reference restricted to the pairs: the unpaired rows play no part ...
    assert got.item() == pytest.approx(ref_clip(za[:n_paired], zb[:n_paired], n_paired, 0.07), rel=1e-6)
    za_other = torch.cat([za[:n_paired], unit(4, seed=9)])
    assert loss_fn(za_other, zb, n_paired).item() == pytest.approx(got.item(), rel=1e-12)
    # ... while the default (the design's) counts them as extra negatives
    with_negatives = CLIPLoss(temperature=0.07)(za, zb, n_paired)
    assert with_negatives.item() == pytest.approx(ref_clip(za, zb, n_paired, 0.07), rel=1e-6)
    assert with_negatives.item() > got.item()
    # no gradient reaches an unpaired row; zero pairs is still an exact 0 with a graph
    za_g = za.clone().requires_grad_()
    loss_fn(za_g, zb, n_paired).backward()
    assert torch.equal(za_g.grad[n_paired:], torch.zeros_like(za_g.grad[n_paired:]))
    if n_paired > 1:  # one pair without negatives is a softmax over one logit: loss 0, no gradient
        assert za_g.grad[:n_paired].abs().sum() > 0
    else:
        assert got.item() == pytest.approx(0.0, abs=1e-12)
    zero = loss_fn(za_g, zb, 0)
    assert zero.item() == 0.0 and zero.requires_grad
    assert "unpaired_negatives=False" in repr(loss_fn)


# ----------------------------------------------------------------------------- SDD


def ref_sdd(za, zb, bandwidth="variance", normalize=True, spread="variance", eps=1e-8) -> float:
    A, B = za.tolist(), zb.tolist()
    var_a, var_b = ref_variance(A), ref_variance(B)
    h_a, h_b = (max(var_a, eps), max(var_b, eps)) if bandwidth == "variance" else (bandwidth, bandwidth)

    def density(x, rows, h):
        return sum(math.exp(-sqdist(x, r) / h) for r in rows) / len(rows)

    total = 0.0
    for points in (A, B):
        p = [density(x, A, h_a) for x in points]
        q = [density(x, B, h_b) for x in points]
        if normalize:
            sp, sq = sum(p), sum(q)
            p, q = [v / sp for v in p], [v / sq for v in q]
        total += sum((pi - qi) * math.log(pi / qi) for pi, qi in zip(p, q))
    if spread == "none":
        return total

    def spread_of(rows, var):
        if spread == "variance":
            return max(var, eps)
        d = len(rows[0])
        return max(sum((max(r[k] for r in rows) - min(r[k] for r in rows)) ** 2 for k in range(d)), eps)

    return total * (1 / spread_of(A, var_a) + 1 / spread_of(B, var_b))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"normalize": False},
        {"spread": "range"},
        {"spread": "none", "normalize": False},
        {"bandwidth": 0.7},
        {"bandwidth": 0.3, "normalize": False, "spread": "range"},
    ],
)
def test_sdd_matches_loop_reference(kwargs):
    za = unit(6, seed=0)
    zb = F.normalize(unit(4, seed=1) + 0.3, dim=1)  # different sizes and a shifted set
    got = SDDLoss(**kwargs)(za, zb)
    assert got.item() == pytest.approx(ref_sdd(za, zb, **kwargs), rel=1e-9, abs=1e-12)


def test_sdd_gradcheck():
    za, zb = unit(4, seed=0).requires_grad_(), unit(3, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: SDDLoss()(a, b), (za, zb))


@pytest.mark.parametrize("chunk", [1, 150, 10**9])
@pytest.mark.parametrize("kwargs", [{}, {"normalize": False, "spread": "range"}, {"bandwidth": 0.4}])
def test_sdd_fused_kernels_match_the_plain_formula(monkeypatch, chunk, kwargs):
    """The fused CPU path (row blocks of 1, of a few rows not dividing either set, and the whole
    matrix) gives the value and gradients of the plain formula (autograd through logsumexp)."""
    monkeypatch.setattr(fused_module, "CPU_CHUNK_ELEMENTS", chunk)
    g = torch.Generator().manual_seed(12)
    a0 = F.normalize(torch.randn(13, 8, generator=g, dtype=torch.float64), dim=1)
    b0 = F.normalize(torch.randn(20, 8, generator=g, dtype=torch.float64) + 0.3, dim=1)
    results = []
    for fused in (True, False):
        a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        value = SDDLoss(**kwargs, fused=fused)(a, b)
        (2.5 * value).backward()
        results.append((value.detach(), a.grad, b.grad))
    (v1, ga1, gb1), (v2, ga2, gb2) = results
    assert abs(float(v1 - v2)) <= 1e-12 * max(1.0, abs(float(v2)))
    assert float((ga1 - ga2).abs().max()) <= 1e-10 and float((gb1 - gb2).abs().max()) <= 1e-10


def test_sdd_second_order_gradients():
    za, zb = unit(4, seed=0).requires_grad_(), unit(3, seed=1).requires_grad_()
    for kw in ({}, {"bandwidth": 0.6, "spread": "none"}):
        assert torch.autograd.gradgradcheck(lambda a, b, kw=kw: SDDLoss(**kw)(a, b), (za, zb))
        # the create_graph path computes the same first-order gradient as the blocked one
        first = torch.autograd.grad(SDDLoss(**kw)(za, zb), (za, zb))
        graphed = torch.autograd.grad(SDDLoss(**kw)(za, zb), (za, zb), create_graph=True)
        for f, gr in zip(first, graphed):
            torch.testing.assert_close(gr.detach(), f, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("normalize", [True, False])
def test_sdd_zero_for_identical_sets_and_grows_with_shift(normalize):
    za = unit(8, seed=2)
    loss = SDDLoss(normalize=normalize)
    assert loss(za, za.clone()).item() == pytest.approx(0.0, abs=1e-12)
    values = [loss(za, za + s).item() for s in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)]
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_sdd_invariant_to_row_order():
    za, zb = unit(7, seed=3), unit(5, seed=4)
    loss = SDDLoss()
    base = loss(za, zb)
    torch.testing.assert_close(loss(za[torch.randperm(7)], zb[torch.randperm(5)]), base)


def test_sdd_collapsing_both_sets_is_not_a_minimum():
    za = unit(6, seed=5)
    zb = F.normalize(unit(6, seed=6) + 0.5, dim=1)
    centre = torch.cat([za, zb]).mean(0)
    loss = SDDLoss()
    values = [loss(centre + s * (za - centre), centre + s * (zb - centre)).item() for s in (1.0, 0.5, 0.1, 0.01)]
    assert all(b > a for a, b in zip(values, values[1:])), values


@pytest.mark.parametrize("name", list(degenerate_inputs()))
@pytest.mark.parametrize("normalize", [True, False])
def test_sdd_degenerate_inputs_are_finite(name, normalize):
    za, zb = (t.clone().requires_grad_() for t in degenerate_inputs()[name])
    for dtype in (torch.float64, torch.float32):
        a, b = za.to(dtype), zb.to(dtype)
        assert finite_grads(SDDLoss(normalize=normalize)(a, b), za, zb), name


def test_sdd_errors():
    with pytest.raises(ValueError, match="bandwidth"):
        SDDLoss(bandwidth="median")
    with pytest.raises(ValueError, match="bandwidth"):
        SDDLoss(bandwidth=-1.0)
    with pytest.raises(ValueError, match="spread"):
        SDDLoss(spread="iqr")
    with pytest.raises(ValueError, match="at least one row"):
        SDDLoss()(unit(3), unit(3)[:0])


# ----------------------------------------------------------------------------- MK-MMD


def ref_mmd(za, zb, kernel_mul=2.0, kernel_num=5, bandwidth=None, unbiased=False) -> float:
    A, B = za.tolist(), zb.tolist()
    joint = A + B
    if bandwidth is None:
        d = [sqdist(joint[i], joint[j]) for i in range(len(joint)) for j in range(i + 1, len(joint))]
        centre = max(statistics.median_low(d), 1e-8)  # torch.median returns the lower middle value
    else:
        centre = bandwidth
    sigmas = [centre * kernel_mul ** (i - (kernel_num - 1) / 2) for i in range(kernel_num)]

    def k(x, y):
        return sum(math.exp(-sqdist(x, y) / s) for s in sigmas)

    def mean_k(X, Y, skip_diag):
        vals = [k(x, y) for i, x in enumerate(X) for j, y in enumerate(Y) if not (skip_diag and i == j)]
        return sum(vals) / len(vals)

    return mean_k(A, A, unbiased) + mean_k(B, B, unbiased) - 2 * mean_k(A, B, False)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"unbiased": True}, {"kernel_num": 1}, {"kernel_num": 4, "kernel_mul": 3.0},
     {"bandwidth": 0.5}, {"bandwidth": 0.5, "unbiased": True}],
)
def test_mmd_matches_loop_reference(kwargs):
    za = unit(6, seed=0)
    zb = F.normalize(unit(5, seed=1) + 0.2, dim=1)
    got = MKMMDLoss(**kwargs)(za, zb)
    assert got.item() == pytest.approx(ref_mmd(za, zb, **kwargs), rel=1e-9, abs=1e-12)


def test_mmd_gradcheck_fixed_bandwidth():
    za, zb = unit(4, seed=0).requires_grad_(), unit(3, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: MKMMDLoss(bandwidth=0.8)(a, b), (za, zb))


def test_mmd_zero_for_identical_sets_and_grows_with_shift():
    za = unit(8, seed=2)
    assert MKMMDLoss()(za, za.clone()).item() == pytest.approx(0.0, abs=1e-12)
    for unbiased in (False, True):  # (the unbiased estimate of identical sets is slightly negative)
        loss = MKMMDLoss(unbiased=unbiased)
        values = [loss(za, za + s).item() for s in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)]
        assert all(b > a for a, b in zip(values, values[1:])), values


def test_mmd_invariant_to_row_order():
    za, zb = unit(7, seed=3), unit(5, seed=4)
    for loss in (MKMMDLoss(), MKMMDLoss(unbiased=True)):
        torch.testing.assert_close(loss(za[torch.randperm(7)], zb[torch.randperm(5)]), loss(za, zb))


@pytest.mark.parametrize("name", list(degenerate_inputs()))
def test_mmd_degenerate_inputs_are_finite(name):
    za, zb = (t.clone().requires_grad_() for t in degenerate_inputs()[name])
    assert finite_grads(MKMMDLoss()(za, zb), za, zb)
    if min(len(za), len(zb)) >= 2:
        assert finite_grads(MKMMDLoss(unbiased=True)(za, zb), za, zb)


def test_mmd_errors():
    with pytest.raises(ValueError, match="at least 2 rows"):
        MKMMDLoss(unbiased=True)(unit(1), unit(3))
    with pytest.raises(ValueError, match="kernel_num"):
        MKMMDLoss(kernel_num=0)
    with pytest.raises(ValueError, match="bandwidth"):
        MKMMDLoss(bandwidth=0.0)
    with pytest.raises(ValueError, match="same dim"):
        MKMMDLoss()(unit(3), unit(3, d=4))


# ----------------------------------------------------------------------------- NT-Xent


def ref_ntxent(v1, v2, tau) -> float:
    z = v1.tolist() + v2.tolist()
    n = len(v1)
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        denom = sum(math.exp(dot(z[i], z[k]) / tau) for k in range(2 * n) if k != i)
        total += -(dot(z[i], z[pos]) / tau - math.log(denom))
    return total / (2 * n)


def test_ntxent_matches_loop_reference():
    v1 = unit(5, seed=0)
    v2 = F.normalize(v1 + 0.3 * unit(5, seed=1), dim=1)
    assert NTXentLoss(0.2)(v1, v2).item() == pytest.approx(ref_ntxent(v1, v2, 0.2), rel=1e-10)
    assert torch.autograd.gradcheck(lambda a, b: NTXentLoss(0.5)(a, b), (v1.requires_grad_(), v2.requires_grad_()))


def test_ntxent_single_item_and_degenerate():
    v = unit(1).requires_grad_()
    loss = NTXentLoss()(v, v * 1.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-12) and finite_grads(loss, v)
    for name, (a, b) in degenerate_inputs().items():
        if len(a) != len(b):
            b = a.flip(0)
        a = a.clone().requires_grad_()
        assert finite_grads(NTXentLoss()(a, b), a), name
    with pytest.raises(ValueError, match="same number of rows"):
        NTXentLoss()(unit(3), unit(4))
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(0.0)


# ----------------------------------------------------------------------------- gap terms


def test_pair_alignment_matches_loop_reference():
    za, zb = unit(5, seed=0), unit(5, seed=1)
    A, B = za.tolist(), zb.tolist()
    expected = sum(sqdist(a, b) for a, b in zip(A, B)) / 5
    assert PairAlignmentLoss()(za, zb).item() == pytest.approx(expected, rel=1e-12)
    empty = za[:0].clone().requires_grad_()
    loss = PairAlignmentLoss()(empty, zb[:0])
    assert loss.item() == 0.0 and finite_grads(loss, empty)
    with pytest.raises(ValueError, match="shapes must match"):
        PairAlignmentLoss()(za, zb[:4])


def test_centroid_uniformity_matches_loop_reference():
    za, zb, t = unit(5, seed=0), unit(5, seed=1), 2.0
    cs = []
    for a, b in zip(za.tolist(), zb.tolist()):
        s = [x + y for x, y in zip(a, b)]
        norm = math.sqrt(sum(v * v for v in s))
        cs.append([v / norm for v in s])
    vals = [math.exp(-t * sqdist(cs[i], cs[j])) for i in range(5) for j in range(5) if i != j]
    expected = math.log(sum(vals) / len(vals))
    assert CentroidUniformityLoss(t)(za, zb).item() == pytest.approx(expected, rel=1e-10)
    assert torch.autograd.gradcheck(lambda a, b: CentroidUniformityLoss(t)(a, b),
                                    (za.requires_grad_(), zb.requires_grad_()))


def test_centroid_uniformity_degenerate():
    za = unit(4, seed=0).requires_grad_()
    one = CentroidUniformityLoss()(za[:1], za[:1])
    assert one.item() == 0.0 and finite_grads(one, za)
    opposite = CentroidUniformityLoss()(za, torch.cat([-za[:2], za[2:]]))  # two zero centroids
    assert finite_grads(opposite, za)
    dup = CentroidUniformityLoss()(za[[0, 0, 0]], za[[0, 0, 0]])  # all centroids equal: log 1 = 0
    assert dup.item() == pytest.approx(0.0, abs=1e-12) and finite_grads(dup, za)
    with pytest.raises(ValueError, match="t must be"):
        CentroidUniformityLoss(t=-1.0)


def _mmd_one_exp_per_kernel(za, zb, kernel_mul=2.0, kernel_num=5, bandwidth=None, unbiased=False, eps=1e-8):
    """The previous MKMMDLoss, verbatim in its arithmetic: K full kernels in one [K, N, N] tensor."""
    n, m = za.shape[0], zb.shape[0]
    joint = torch.cat([za, zb])
    d2 = squared_distances(joint, joint)
    d2 = d2 * (1.0 - torch.eye(n + m, dtype=d2.dtype))
    if bandwidth is None:
        iu = torch.triu_indices(n + m, n + m, offset=1)
        centre = d2.detach()[iu[0], iu[1]].median().clamp_min(eps)
    else:
        centre = torch.tensor(bandwidth, dtype=d2.dtype)
    powers = torch.arange(kernel_num, dtype=d2.dtype) - (kernel_num - 1) / 2
    sigmas = centre * kernel_mul ** powers
    kernel = torch.exp(-d2.unsqueeze(0) / sigmas.view(-1, 1, 1)).sum(0)
    k_aa, k_bb, k_ab = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    if unbiased:
        xx = (k_aa.sum() - kernel_num * n) / (n * (n - 1))
        yy = (k_bb.sum() - kernel_num * m) / (m * (m - 1))
    else:
        xx, yy = k_aa.mean(), k_bb.mean()
    return xx + yy - 2.0 * k_ab.mean()


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-10)])
@pytest.mark.parametrize("kwargs", [{}, {"unbiased": True}, {"kernel_num": 4}, {"kernel_num": 1},
                                    {"kernel_num": 3, "kernel_mul": 3.0}, {"bandwidth": 0.5, "unbiased": True}])
def test_mmd_fast_kernels_match_one_exp_per_kernel(dtype, tol, kwargs):
    """Squaring ladder + fused backward: same values and gradients as one exp per kernel."""
    for n, m, d in ((3, 2, 5), (17, 40, 32), (64, 64, 32), (100, 300, 16)):
        g = torch.Generator().manual_seed(n + m)
        a0 = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1).to(dtype)
        b0 = F.normalize(torch.randn(m, d, generator=g, dtype=torch.float64) + 0.3, dim=1).to(dtype)
        grads = []
        for fn in (MKMMDLoss(**kwargs, fused=True), MKMMDLoss(**kwargs, fused=False),
                   lambda a, b: _mmd_one_exp_per_kernel(a, b, **kwargs)):
            a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
            value = fn(a, b)
            value.backward()
            grads.append((value.detach(), a.grad, b.grad))
        for (v1, ga1, gb1), (v2, ga2, gb2) in zip(grads[:2], grads[1:]):
            assert abs(float(v1 - v2)) <= tol, (n, m)
            assert float((ga1 - ga2).abs().max()) <= tol and float((gb1 - gb2).abs().max()) <= tol, (n, m)


@pytest.mark.parametrize("chunk", [1, 150, 10**9])
@pytest.mark.parametrize("kwargs", [{}, {"unbiased": True}, {"kernel_num": 3, "kernel_mul": 3.0}])
def test_mmd_row_blocks_do_not_change_the_result(monkeypatch, chunk, kwargs):
    """Blocks of 1 row, of a few rows that do not divide n or m, and the whole matrix at once."""
    monkeypatch.setattr(fused_module, "CPU_CHUNK_ELEMENTS", chunk)
    g = torch.Generator().manual_seed(11)
    a0 = F.normalize(torch.randn(13, 8, generator=g, dtype=torch.float64), dim=1)
    b0 = F.normalize(torch.randn(20, 8, generator=g, dtype=torch.float64) + 0.3, dim=1)
    results = []
    for fn in (MKMMDLoss(**kwargs, fused=True), MKMMDLoss(**kwargs, fused=False),
                   lambda a, b: _mmd_one_exp_per_kernel(a, b, **kwargs)):
        a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        value = fn(a, b)
        (3.0 * value).backward()
        results.append((value.detach(), a.grad, b.grad))
    for (v1, ga1, gb1), (v2, ga2, gb2) in zip(results[:2], results[1:]):
        assert abs(float(v1 - v2)) <= 1e-12
        assert float((ga1 - ga2).abs().max()) <= 1e-12 and float((gb1 - gb2).abs().max()) <= 1e-12


def test_losses_with_the_gpu_style_arithmetic_agree(monkeypatch):
    """Off the CPU the blocked kernels take 0-dim tensor bandwidths (no device sync) and the whole
    matrix as one block; run that arithmetic on the CPU and compare with the CPU path."""
    g = torch.Generator().manual_seed(13)
    a0 = F.normalize(torch.randn(9, 6, generator=g, dtype=torch.float64), dim=1)
    b0 = F.normalize(torch.randn(14, 6, generator=g, dtype=torch.float64) + 0.3, dim=1)

    def run():
        out = []
        for loss in (SDDLoss(fused=True), MKMMDLoss(fused=True),
                     MKMMDLoss(unbiased=True, kernel_mul=3.0, kernel_num=3, fused=True)):
            a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
            value = loss(a, b)
            value.backward()
            out.append((value.detach(), a.grad, b.grad))
        return out

    cpu = run()
    monkeypatch.setattr(fused_module, "_scalar", lambda h: h)
    monkeypatch.setattr(fused_module, "_sigma_values", lambda sigmas: list(sigmas.unbind()))
    monkeypatch.setattr(fused_module, "CPU_CHUNK_ELEMENTS", 10**9)
    for (v1, ga1, gb1), (v2, ga2, gb2) in zip(cpu, run()):
        assert abs(float(v1 - v2)) <= 1e-12
        assert float((ga1 - ga2).abs().max()) <= 1e-12 and float((gb1 - gb2).abs().max()) <= 1e-12


@pytest.mark.parametrize("kernel_mul", [2.0, 3.0])
@pytest.mark.parametrize("unbiased", [False, True])
def test_fused_mmd_from_distances_matches_the_plain_formula(kernel_mul, unbiased):
    """With a ladder of ratio 2 the fused kernel squares each kernel into the next; with 3 it
    exponentiates each one: both equal the plain sum of exponentials, values and gradients."""
    from gentleclip.losses.mkmmd import mmd_from_distances

    loss = MKMMDLoss(kernel_mul=kernel_mul)
    x = torch.randn(9, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    d2 = torch.cdist(x, x).pow(2).requires_grad_()
    sigmas = loss.bandwidths(d2.detach())
    got = mmd_from_distances(d2, sigmas, 4, unbiased, kernel_mul=kernel_mul, fused=True)
    expected = mmd_from_distances(d2, sigmas, 4, unbiased, kernel_mul=kernel_mul, fused=False)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    g1, g2 = (torch.autograd.grad(v, d2)[0] for v in (got, expected))
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)


def test_mmd_second_order_gradients():
    za, zb = unit(4, seed=0).requires_grad_(), unit(3, seed=1).requires_grad_()
    for kw in ({"bandwidth": 0.8}, {"bandwidth": 0.8, "kernel_mul": 3.0, "kernel_num": 3}):
        assert torch.autograd.gradgradcheck(lambda a, b, kw=kw: MKMMDLoss(**kw)(a, b), (za, zb))
    for kw in ({}, {"unbiased": True}, {"kernel_mul": 3.0, "kernel_num": 3}):
        first = torch.autograd.grad(MKMMDLoss(**kw)(za, zb), (za, zb))
        graphed = torch.autograd.grad(MKMMDLoss(**kw)(za, zb), (za, zb), create_graph=True)
        for f, gr in zip(first, graphed):
            torch.testing.assert_close(gr.detach(), f, rtol=1e-10, atol=1e-12)


def test_sdd_and_mmd_accept_the_joint_distance_matrix():
    za, zb = unit(7, seed=5), unit(5, seed=6)
    joint = torch.cat([za, zb])
    d2 = squared_distances(joint, joint)
    for loss in (SDDLoss(), MKMMDLoss(), MKMMDLoss(unbiased=True)):
        assert loss(za, zb, d2=d2).item() == loss(za, zb).item()
        with pytest.raises(ValueError, match="d2"):
            loss(za, zb, d2=d2[:-1])


def test_self_squared_distances_match_the_two_set_path_in_value_and_gradient():
    """squared_distances(x) (one-matmul backward) == squared_distances(x, x.clone()) (plain autograd)."""
    g = torch.Generator().manual_seed(3)
    for n, d in ((1, 4), (5, 3), (40, 16)):
        x0 = torch.randn(n, d, generator=g, dtype=torch.float64)
        x0 = torch.cat([x0, x0[:1]])  # a duplicate row: a clamped 0 off the diagonal
        weight = torch.randn(n + 1, n + 1, generator=g, dtype=torch.float64)  # not symmetric
        x1, x2 = x0.clone().requires_grad_(), x0.clone().requires_grad_()
        fast, plain = squared_distances(x1), squared_distances(x2, x2.clone())
        assert torch.allclose(fast, plain, atol=1e-12)
        assert float(fast.detach().diagonal().abs().max()) <= 1e-12 and bool((fast >= 0).all())
        (fast * weight).sum().backward()
        (plain * weight).sum().backward()
        assert torch.allclose(x1.grad, x2.grad, atol=1e-10)
    x = unit(4, seed=2).requires_grad_()
    w = unit(5, d=5, seed=3)[:, :5]
    assert torch.autograd.gradcheck(lambda a: (squared_distances(a) * w[:4, :4]).sum(), (x,))
    assert torch.autograd.gradgradcheck(lambda a: (squared_distances(a) * w[:4, :4]).sum(), (x,))


@pytest.mark.parametrize("n", [2, 3, 4, 9, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_median_upper_triangle_is_torch_median_of_the_triangle(n, dtype):
    from gentleclip.losses.mkmmd import median_upper_triangle

    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(n), dtype=dtype)
    x[-1] = x[0]  # ties and an exact zero
    d2 = squared_distances(x)
    iu = torch.triu_indices(n, n, offset=1)
    expected = d2[iu[0], iu[1]].median()
    got = median_upper_triangle(d2)
    assert got.dtype == dtype and got.item() == expected.item()
    d2.diagonal().fill_(-1.0)  # the diagonal and the lower triangle play no part
    d2.masked_fill_(torch.ones(n, n, dtype=torch.bool).tril(-1), 1e9)
    assert median_upper_triangle(d2).item() == expected.item()
    with pytest.raises(ValueError, match="at least 2 rows"):
        median_upper_triangle(d2[:1, :1])
