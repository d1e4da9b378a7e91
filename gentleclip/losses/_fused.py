"""Fused CPU kernels of the SDD and MK-MMD losses (private): the same values and gradients as the
plain formulas in :mod:`gentleclip.losses.sdd` and :mod:`gentleclip.losses.mkmmd`, faster on the CPU.

Each hand-written autograd Function does in one pass, block by block of rows, what autograd through
the plain formula does with several ``[N, N]`` temporaries: the block keeps the work in the CPU
cache, and the backward pass writes each gradient once. The losses choose this path with
``fused=None`` (the default) exactly where it pays (:func:`fused_pays`: on the CPU); on a GPU
they run the plain formula. ``benchmarks/run_speed.py --sections losses`` measures both, and the
tests check that both give the same values and gradients.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

__all__ = ["fused_pays", "use_fused", "self_squared_distances", "log_densities", "mmd_from_distances"]


def fused_pays(x: Tensor) -> bool:
    """True where the fused kernels are faster than plain autograd: on the CPU (measured by
    ``benchmarks/run_speed.py --sections losses``). A GPU runs the plain formula: launches, not
    the cache, are what it pays for, and no measurement has shown the fused path faster there."""
    return x.device.type == "cpu"


def use_fused(fused: bool | None, x: Tensor) -> bool:
    """A loss's ``fused`` option: True or False as given, None for :func:`fused_pays`."""
    return fused_pays(x) if fused is None else bool(fused)


class _SelfSquaredDistances(torch.autograd.Function):
    """``D_ij = |x_i - x_j|^2`` of one set with itself, with a one-matmul backward.

    Autograd through ``x @ x.t()`` takes two matrix products in the backward pass (one per operand);
    for one set both collapse into ``(G + G^T) x``, one product. The diagonal is an exact 0. The
    clamp at 0 keeps a mask only when some distance came out negative (rounding, near-duplicate
    rows): on the CPU a ``min()`` decides, and the common case costs no mask and no masked copy.
    The backward pass is written with differentiable ops on the saved input, so higher-order
    gradients still work.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        centre = x.mean(0, keepdim=True)
        xc = x - centre
        sq = xc.pow(2).sum(1)
        d2 = torch.addmm(sq.unsqueeze(0), xc, xc.t(), alpha=-2.0).add_(sq.unsqueeze(1))
        d2.diagonal().zero_()
        negative = None
        if d2.device.type != "cpu" or bool(d2.min() < 0):
            negative = d2 < 0.0  # clamp_min(0) passes the gradient where the value is >= 0
            d2.clamp_min_(0.0)
        ctx.save_for_backward(x, centre, negative)
        return d2

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, centre, negative = ctx.saved_tensors
        g = grad if negative is None else grad.masked_fill(negative, 0.0)
        # G + G^T: a copy of the transpose (blocked, unlike the strided read of ``g + g.t()``,
        # which is ~8x slower on a 2048-row CPU batch), then an in-place add.
        g = g.t().clone(memory_format=torch.contiguous_format).add_(g)
        xc = x - centre  # the centre is a constant (detached), so this carries x's graph for double backward
        return 2.0 * torch.addmm(xc * g.sum(1, keepdim=True), g, xc, alpha=-1.0)


def self_squared_distances(x: Tensor) -> Tensor:
    """``|x_i - x_j|^2`` ``[n, n]`` of the rows of ``x`` with a one-matmul backward (exact 0 diagonal)."""
    return _SelfSquaredDistances.apply(x)


#: Elements of a distance matrix handled at once on the CPU by the fused SDD and MK-MMD kernels (512 KB
#: in float32), so that the work on a block of rows stays in the cache. Swept on 2 cores (32K to
#: 256K elements and the whole matrix): the fastest, e.g. the CLIP + SDD + MK-MMD step at batch
#: 1024 took 55 ms in blocks of 128K elements and 86 ms on the whole matrix at once (2 threads).
CPU_CHUNK_ELEMENTS = 1 << 17


def block_rows(d2: Tensor) -> int:
    """Rows of ``d2`` per block: ``CPU_CHUNK_ELEMENTS`` worth on the CPU, all of them elsewhere
    (on a GPU the launches, not the cache, are what to save)."""
    if d2.device.type != "cpu":
        return max(1, d2.shape[0])
    return max(1, min(d2.shape[0], CPU_CHUNK_ELEMENTS // max(1, d2.shape[1])))


def row_blocks(start: int, stop: int, rows: int):
    """``(r0, r1)`` ranges of at most ``rows`` rows covering ``[start, stop)``."""
    for r0 in range(start, stop, rows):
        yield r0, min(stop, r0 + rows)


def _scalar(h: Tensor):
    """A bandwidth as a Python float on the CPU (faster elementwise ops there), else the 0-dim tensor."""
    return h.item() if h.device.type == "cpu" else h


class _LogDensities(torch.autograd.Function):
    """``(logsumexp_j<na -d2_ij / h_a, logsumexp_j>=na -d2_ij / h_b)`` for every row ``i`` of ``d2``,
    in one pass over ``d2``, block by block of rows.

    Autograd through the plain version keeps every ``[N, N]`` intermediate and rebuilds the
    gradient of ``d2`` from two zero-filled slices; here the backward pass recomputes the softmax
    weights ``exp(-d2_ij / h - lse_i)`` per block and writes the gradient of ``d2`` once. When a
    higher-order gradient is asked for (``create_graph=True``) the backward pass runs the
    same derivative with differentiable ops instead.
    """

    @staticmethod
    def forward(ctx, d2: Tensor, h_a: Tensor, h_b: Tensor, na: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        size, rows = d2.shape[0], block_rows(d2)
        buf = d2.new_empty((rows, size))
        lse_a, lse_b = d2.new_empty(size), d2.new_empty(size)
        ha, hb = _scalar(h_a), _scalar(h_b)
        for r0, r1 in row_blocks(0, size, rows):
            for cols, h, lse in ((slice(0, na), ha, lse_a), (slice(na, size), hb, lse_b)):
                scaled = torch.mul(d2[r0:r1, cols], -1.0 / h, out=buf[: r1 - r0, cols])
                torch.logsumexp(scaled, dim=1, out=lse[r0:r1])
        ctx.save_for_backward(d2, h_a, h_b, lse_a, lse_b)
        ctx.na = na
        return lse_a, lse_b

    @staticmethod
    def backward(ctx, g_a: Tensor, g_b: Tensor):  # type: ignore[override]
        d2, h_a, h_b, lse_a, lse_b = ctx.saved_tensors
        na = ctx.na
        if torch.is_grad_enabled():  # create_graph=True: the same derivative with differentiable ops
            parts, grad_h = [], []
            for block, h, g in ((d2[:, :na], h_a, g_a), (d2[:, na:], h_b, g_b)):
                weights = g.unsqueeze(1) * torch.softmax(-block / h, dim=1)
                parts.append(-weights / h)
                grad_h.append((weights * block).sum() / (h * h))
            return torch.cat(parts, dim=1), grad_h[0], grad_h[1], None
        size, rows = d2.shape[0], block_rows(d2)
        grad_d2 = torch.empty_like(d2)
        ha, hb = _scalar(h_a), _scalar(h_b)
        grad_ha, grad_hb = d2.new_zeros(()), d2.new_zeros(())
        for r0, r1 in row_blocks(0, size, rows):
            for cols, h, lse, g, grad_h in ((slice(0, na), ha, lse_a, g_a, grad_ha),
                                            (slice(na, size), hb, lse_b, g_b, grad_hb)):
                block, out = d2[r0:r1, cols], grad_d2[r0:r1, cols]
                # P_ij = exp(-d2_ij / h - lse_i); d lse_i / d d2_ij = -P_ij / h; d lse_i / dh = sum_j P_ij d2_ij / h^2
                torch.mul(block, -1.0 / h, out=out).sub_(lse[r0:r1].unsqueeze(1)).exp_()
                out.mul_(g[r0:r1].unsqueeze(1))
                grad_h += (out * block).sum()
                out.mul_(-1.0 / h)
        return grad_d2, grad_ha / (h_a * h_a), grad_hb / (h_b * h_b), None


def log_densities(d2: Tensor, h_a: Tensor, h_b: Tensor, na: int) -> tuple[Tensor, Tensor]:
    """``(logsumexp_j<na -d2_ij / h_a, logsumexp_j>=na -d2_ij / h_b)`` per row of ``d2``, fused."""
    return _LogDensities.apply(d2, h_a, h_b, na)


def _kernels(d2: Tensor, sigmas: Sequence[Any], squaring: bool, out: Tensor | None = None):
    """Yield ``(exp(-d2 / sigma_i), sigma_i)`` for every bandwidth, widest first when squaring.

    Fresh tensors (differentiable) by default; with ``out`` (shaped like ``d2``) every kernel is
    written into ``out`` in place, so each one overwrites the one yielded before it.
    """

    def exp_of(sigma: Any) -> Tensor:
        if out is None:
            return torch.exp(d2 / -sigma)
        return torch.mul(d2, -1.0 / sigma, out=out).exp_()

    if squaring and len(sigmas) > 1:
        # sigma_i = centre * 2**(i - (K-1)/2): the ladder ascends, so start from the widest (last)
        # bandwidth and square down to the narrowest. (In float32 the values then differ from one
        # exp per kernel by a few units in the last place of the O(1) block means.)
        e = exp_of(sigmas[-1])
        yield e, sigmas[-1]
        for i in range(len(sigmas) - 2, -1, -1):
            e = e.square() if out is None else e.square_()
            yield e, sigmas[i]
    else:
        for sigma in sigmas:
            yield exp_of(sigma), sigma


def _sigma_values(sigmas: Tensor) -> list[Any]:
    """The bandwidths as Python floats on the CPU (dividing by a float is ~4x faster than by a
    0-dim tensor there); as 0-dim tensors elsewhere (no device synchronisation)."""
    return sigmas.tolist() if sigmas.device.type == "cpu" else list(sigmas.unbind())


def _slope(d2: Tensor, sigmas: Sequence[Any], squaring: bool) -> Tensor:
    """``d/d d2 sum_i exp(-d2 / sigma_i) = -slope``: ``slope = sum_i exp(-d2 / sigma_i) / sigma_i``."""
    return sum(e / sigma for e, sigma in _kernels(d2, sigmas, squaring))


def _kernel_and_slope(d2: Tensor, sigmas: Sequence[Any], squaring: bool, kernel: Tensor, slope: Tensor,
                      scratch: Tensor) -> None:
    """Write ``sum_i exp(-d2 / sigma_i)`` into ``kernel`` and ``sum_i exp(-d2 / sigma_i) / sigma_i``
    (the slope, minus the derivative) into ``slope``; ``scratch`` holds each kernel in turn. All
    three are shaped like ``d2``; no other ``d2``-sized tensor is allocated."""
    for i, (e, sigma) in enumerate(_kernels(d2, sigmas, squaring, out=scratch)):
        if i == 0:
            kernel.copy_(e)
            torch.mul(e, 1.0 / sigma, out=slope)
        else:
            kernel.add_(e)
            slope.add_(e, alpha=1.0 / sigma)


def _block_weights(n: int, m: int, unbiased: bool) -> tuple[float, float, float]:
    """Weights of the sums of the aa, bb and ab (= ba) kernel blocks in the MMD estimate."""
    if unbiased:
        return 1.0 / (n * (n - 1)), 1.0 / (m * (m - 1)), -1.0 / (n * m)
    return 1.0 / (n * n), 1.0 / (m * m), -1.0 / (n * m)


class _MMDFromDistances(torch.autograd.Function):
    """MMD^2 from the joint squared-distance matrix ``d2`` ``[n+m, n+m]`` in one pass over it.

    The kernel ladder is evaluated block by block of rows (a few hundred KB at a time on the CPU,
    the whole matrix elsewhere) in two reused buffers; only the block sums of the kernel and its
    weighted slope ``-W * sum_i exp(-d2 / sigma_i) / sigma_i`` (``W``: the block weights) leave
    the loop, so the backward pass is one product with the incoming gradient.

    The diagonal counts as an exact 0 distance (``k(x, x) = K``) and passes no gradient, like
    ``d2.diagonal_scatter(zeros)`` before the kernels.
    """

    @staticmethod
    def forward(ctx, d2: Tensor, sigmas: Tensor, squaring: bool, n: int, unbiased: bool) -> Tensor:  # type: ignore[override]
        values = _sigma_values(sigmas)
        size, k = d2.shape[0], len(values)
        m = size - n
        w_aa, w_bb, w_ab = _block_weights(n, m, unbiased)
        rows = block_rows(d2)
        e_buf = d2.new_empty((rows, size))
        k_buf = torch.empty_like(e_buf)
        weighted_slope = torch.empty_like(d2)
        sums = {"aa": d2.new_zeros(()), "ab": d2.new_zeros(()), "bb": d2.new_zeros(())}
        for lo, hi, left, right, w_left, w_right in ((0, n, "aa", "ab", w_aa, w_ab), (n, size, "ab", "bb", w_ab, w_bb)):
            for r0, r1 in row_blocks(lo, hi, rows):
                kern, slope = k_buf[: r1 - r0], weighted_slope[r0:r1]
                _kernel_and_slope(d2[r0:r1], values, squaring, kern, slope, e_buf[: r1 - r0])
                kern.diagonal(offset=r0).fill_(float(k))
                slope.diagonal(offset=r0).zero_()
                sums[left] += kern[:, :n].sum()
                sums[right] += kern[:, n:].sum()
                slope[:, :n].mul_(-w_left)
                slope[:, n:].mul_(-w_right)
        s_aa, s_bb = sums["aa"], sums["bb"]
        if unbiased:
            s_aa, s_bb = s_aa - k * n, s_bb - k * m
        ctx.save_for_backward(d2, sigmas, weighted_slope)
        ctx.squaring, ctx.n, ctx.unbiased = squaring, n, unbiased
        return w_aa * s_aa + w_bb * s_bb + w_ab * sums["ab"]

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        d2, sigmas, weighted_slope = ctx.saved_tensors
        n, size = ctx.n, d2.shape[0]
        if torch.is_grad_enabled():  # create_graph=True: a differentiable derivative for higher orders
            w_aa, w_bb, w_ab = _block_weights(n, size - n, ctx.unbiased)
            d2z = d2.diagonal_scatter(d2.new_zeros(size))
            weights = d2.new_full((size, size), w_ab)
            weights[:n, :n] = w_aa
            weights[n:, n:] = w_bb
            weights.diagonal().zero_()
            return -grad * _slope(d2z, _sigma_values(sigmas), ctx.squaring) * weights, None, None, None, None
        return weighted_slope * grad, None, None, None, None


def mmd_from_distances(d2: Tensor, sigmas: Tensor, squaring: bool, n: int, unbiased: bool) -> Tensor:
    """MMD^2 of the first ``n`` rows of the joint set against the rest, from its distances ``d2``, fused.
    ``squaring``: the bandwidths form a ladder of ratio 2, so each kernel is the square of the next wider."""
    return _MMDFromDistances.apply(d2, sigmas.detach(), squaring, n, unbiased)
