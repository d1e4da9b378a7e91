"""Multi-kernel maximum mean discrepancy (MK-MMD) between two sets of embeddings."""
from __future__ import annotations

import math

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from gentleclip.losses.clip import check_embeddings, upcast
from gentleclip.losses.density import block_rows, joint_squared_distances, row_blocks


_MASK_CACHE: dict[int, np.ndarray] = {}
_TRIU_CACHE: dict[tuple[int, str], Tensor] = {}


def _cached(cache: dict, key, build):
    """``cache[key]``, built on first use (a few sizes are kept)."""
    value = cache.get(key)
    if value is None:
        if len(cache) >= 8:
            cache.clear()
        value = cache[key] = build()
    return value


def median_upper_triangle(d2: Tensor) -> Tensor:
    """The median of the entries strictly above the diagonal of the square matrix ``d2`` (detached).

    For an even count it is the lower of the two middle values, as ``torch.median`` gives. On the
    CPU the selection runs in NumPy (``np.partition`` is about 10x faster than ``torch.median`` on
    the 130k distances of a 512-row batch); elsewhere ``torch.median`` on the gathered triangle.
    """
    n = d2.shape[0]
    if n < 2:
        raise ValueError(f"median_upper_triangle: need at least 2 rows, got {n}")
    d2 = d2.detach()
    k = n * (n - 1) // 2
    if d2.device.type == "cpu":
        mask = _cached(_MASK_CACHE, n, lambda: np.triu(np.ones((n, n), dtype=bool), 1))
        values = d2.numpy()[mask]
        return torch.tensor(np.partition(values, (k - 1) // 2)[(k - 1) // 2], dtype=d2.dtype)
    iu = _cached(_TRIU_CACHE, (n, str(d2.device)), lambda: torch.triu_indices(n, n, offset=1, device=d2.device))
    return d2[iu[0], iu[1]].median()


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


class _GaussianKernelSum(torch.autograd.Function):
    """``sum_i exp(-d2 / sigma_i)`` with a one-multiply backward (``sigmas`` carries no gradient)."""

    @staticmethod
    def forward(ctx, d2: Tensor, sigmas: Tensor, squaring: bool) -> Tensor:  # type: ignore[override]
        kernel, slope = torch.empty_like(d2), torch.empty_like(d2)
        _kernel_and_slope(d2, _sigma_values(sigmas), squaring, kernel, slope, torch.empty_like(d2))
        ctx.save_for_backward(d2, sigmas, slope)
        ctx.squaring = squaring
        return kernel

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        d2, sigmas, slope = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a differentiable derivative for higher orders
            slope = _slope(d2, _sigma_values(sigmas), ctx.squaring)
        return -(grad * slope), None, None


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


class MKMMDLoss(nn.Module):
    r"""Squared MMD between the rows of ``za`` and the rows of ``zb`` under a sum of Gaussian kernels.

    The kernel is :math:`k(x,y)=\sum_{i<K}\exp(-\lVert x-y\rVert^2/\sigma_i)` with
    :math:`K` = ``kernel_num`` bandwidths on a geometric ladder of ratio ``kernel_mul`` centred on
    :math:`\sigma`: :math:`\sigma_i=\sigma\,m^{\,i-(K-1)/2}` (for K=5, m=2: σ/4, σ/2, σ, 2σ, 4σ).
    :math:`\sigma` is ``bandwidth`` when given, otherwise the median heuristic: the median of the
    squared distances between distinct rows of the joint set :math:`A\cup B` (detached, clamped
    at ``eps``).

    Biased estimator (``unbiased=False``), for :math:`n` rows of A and :math:`m` rows of B:

    .. math::

        \widehat{\mathrm{MMD}}^2_b = \frac{1}{n^2}\sum_{i,j}k(a_i,a_j) + \frac{1}{m^2}\sum_{i,j}k(b_i,b_j)
            - \frac{2}{nm}\sum_{i,j}k(a_i,b_j),

    unbiased estimator (``unbiased=True``, needs at least 2 rows per set): the same with the
    diagonal terms left out of the first two sums, divided by :math:`n(n-1)` and :math:`m(m-1)`
    (it can be slightly negative). The sets may have different sizes. One pairwise distance matrix
    of the joint set is computed and all kernels are evaluated on it at once.
    """

    def __init__(
        self,
        kernel_mul: float = 2.0,
        kernel_num: int = 5,
        bandwidth: float | None = None,
        unbiased: bool = False,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if not kernel_mul > 0 or not math.isfinite(kernel_mul):
            raise ValueError(f"MKMMDLoss: kernel_mul must be a positive number, got {kernel_mul!r}")
        if isinstance(kernel_num, bool) or not isinstance(kernel_num, int) or kernel_num < 1:
            raise ValueError(f"MKMMDLoss: kernel_num must be an integer >= 1, got {kernel_num!r}")
        if bandwidth is not None and (not bandwidth > 0 or not math.isfinite(bandwidth)):
            raise ValueError(f"MKMMDLoss: bandwidth must be None (median heuristic) or a positive float, got {bandwidth!r}")
        if not eps > 0:
            raise ValueError(f"MKMMDLoss: eps must be positive, got {eps}")
        self.kernel_mul = float(kernel_mul)
        self.kernel_num = kernel_num
        self.bandwidth = None if bandwidth is None else float(bandwidth)
        self.unbiased = bool(unbiased)
        self.eps = float(eps)

    def bandwidths(self, d2: Tensor) -> Tensor:
        """The ``kernel_num`` bandwidths used for a joint squared-distance matrix ``d2`` ``[n+m, n+m]``."""
        if self.bandwidth is None:
            centre = median_upper_triangle(d2).clamp_min(self.eps)
        else:
            centre = torch.tensor(self.bandwidth, dtype=d2.dtype, device=d2.device)
        powers = torch.arange(self.kernel_num, dtype=d2.dtype, device=d2.device) - (self.kernel_num - 1) / 2
        return centre * self.kernel_mul ** powers

    def kernel_sum(self, d2: Tensor, sigmas: Tensor) -> Tensor:
        r"""``sum_i exp(-d2 / sigma_i)`` elementwise for the bandwidths ``sigmas`` (no ``[K, n, n]`` temporary).

        With ``kernel_mul == 2`` only the widest kernel is exponentiated; each narrower one is the
        square of the next wider (:math:`(e^{-d/\sigma})^2 = e^{-d/(\sigma/2)}`). The backward pass
        multiplies by the derivative :math:`-\sum_i e^{-d/\sigma_i}/\sigma_i`, kept from the forward
        pass (recomputed with autograd when a higher-order gradient is asked for).
        """
        return _GaussianKernelSum.apply(d2, sigmas.detach(), self.kernel_mul == 2.0)

    def forward(self, za: Tensor, zb: Tensor, d2: Tensor | None = None) -> Tensor:
        """MMD^2 between all rows of ``za [n, d]`` and all rows of ``zb [m, d]``.

        ``d2``: optionally, the joint squared-distance matrix
        ``squared_distances(cat([za, zb]), cat([za, zb]))`` ``[n+m, n+m]`` when the caller already
        has it (as :class:`~gentleclip.losses.objective.Objective` does); it must be exactly that.
        """
        check_embeddings(za, zb, "MKMMDLoss")
        n, m = za.shape[0], zb.shape[0]
        if self.unbiased and min(n, m) < 2:
            raise ValueError(f"MKMMDLoss: the unbiased estimator needs at least 2 rows per set, got {n} and {m}")
        if d2 is not None and (not isinstance(d2, Tensor) or d2.shape != (n + m, n + m)):
            raise ValueError(f"MKMMDLoss: d2 must be the [{n + m}, {n + m}] joint squared-distance matrix, "
                             f"got {tuple(getattr(d2, 'shape', ()))}")
        with torch.autocast(device_type=za.device.type, enabled=False):
            if d2 is None:
                d2 = joint_squared_distances(upcast(za), upcast(zb))
            sigmas = self.bandwidths(d2)  # (the median uses the upper triangle only)
            return _MMDFromDistances.apply(d2, sigmas.detach(), self.kernel_mul == 2.0, n, self.unbiased)

    def extra_repr(self) -> str:
        bw = "median" if self.bandwidth is None else self.bandwidth
        return f"kernel_mul={self.kernel_mul}, kernel_num={self.kernel_num}, bandwidth={bw}, unbiased={self.unbiased}"
