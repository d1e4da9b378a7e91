"""Semantic density distribution (SDD) loss of Set-CLIP / Gentle-CLIP, vectorised and in log space."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gentleclip.losses.clip import check_embeddings, upcast

_SPREADS = ("variance", "range", "none")


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


def squared_distances(x: Tensor, y: Tensor | None = None) -> Tensor:
    r"""Pairwise squared Euclidean distances :math:`D_{ij} = \lVert x_i - y_j\rVert^2`, shape ``[n, m]``.

    Computed as :math:`\lVert x\rVert^2 + \lVert y\rVert^2 - 2x^\top y` after subtracting the
    (detached) joint mean, which leaves the distances unchanged but limits cancellation for
    clustered points; clamped at 0, so the gradient is finite even for duplicate rows (unlike
    ``torch.cdist``, whose square root has an infinite derivative at 0). With ``y`` omitted (or
    ``y is x``) the distances of ``x`` to itself, with a backward pass of one matrix product instead of two.
    """
    if y is None or y is x:
        return _SelfSquaredDistances.apply(x)
    centre = torch.cat([x, y]).mean(0, keepdim=True).detach()
    x = x - centre
    y = y - centre
    d2 = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1).unsqueeze(0) - 2.0 * (x @ y.t())
    return d2.clamp_min(0.0)


def joint_squared_distances(za: Tensor, zb: Tensor) -> Tensor:
    """``squared_distances`` of the joint set ``cat([za, zb])`` with itself, ``[Na+Nb, Na+Nb]``."""
    return squared_distances(torch.cat([za, zb]))


#: Elements of a distance matrix handled at once on the CPU by the SDD and MK-MMD kernels (512 KB
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
            for cols, h, lse, g, grad_h in ((slice(0, na), ha, lse_a, g_a, grad_ha), (slice(na, size), hb, lse_b, g_b, grad_hb)):
                block, out = d2[r0:r1, cols], grad_d2[r0:r1, cols]
                # P_ij = exp(-d2_ij / h - lse_i); d lse_i / d d2_ij = -P_ij / h; d lse_i / dh = sum_j P_ij d2_ij / h^2
                torch.mul(block, -1.0 / h, out=out).sub_(lse[r0:r1].unsqueeze(1)).exp_()
                out.mul_(g[r0:r1].unsqueeze(1))
                grad_h += (out * block).sum()
                out.mul_(-1.0 / h)
        return grad_d2, grad_ha / (h_a * h_a), grad_hb / (h_b * h_b), None


def total_variance(x: Tensor) -> Tensor:
    r"""Total (population) variance of a set of rows: :math:`\frac1n\sum_i\lVert x_i-\bar x\rVert^2`."""
    return (x - x.mean(0, keepdim=True)).pow(2).sum(1).mean()


class SDDLoss(nn.Module):
    r"""Semantic density distribution loss: the two sets should have the same kernel densities.

    For sets :math:`A=\{a_j\}_{j<N_A}` and :math:`B=\{b_j\}_{j<N_B}` (all rows of the batch), the
    kernel densities of a point :math:`x` in each set are

    .. math::

        p(x) = \frac{1}{N_A}\sum_j \exp\!\big(-\lVert x-a_j\rVert^2 / h_A\big),\qquad
        q(x) = \frac{1}{N_B}\sum_j \exp\!\big(-\lVert x-b_j\rVert^2 / h_B\big),

    with bandwidth :math:`h_A = V_A`, :math:`h_B = V_B` the total variance of each set
    (``bandwidth="variance"``, clamped at ``eps``) or one fixed float for both. The symmetric
    (Jeffreys) divergence is evaluated on the points of A and on the points of B:

    .. math::

        D = \sum_{x\in A} (p(x)-q(x))\log\frac{p(x)}{q(x)} + \sum_{x\in B} (p(x)-q(x))\log\frac{p(x)}{q(x)}
        \;\ge 0 .

    With ``normalize=True`` (default) the density values are first normalised into distributions
    over the evaluation points, separately for the points of A (:math:`\tilde p(x)=p(x)/\sum_{x'\in A}p(x')`,
    likewise :math:`\tilde q`) and for the points of B, so each half of :math:`D` is the Jeffreys
    divergence of two discrete distributions and does not grow with the batch size. With
    ``normalize=False`` the raw densities are used, as in the reference code (which also
    normalised nothing); the value then grows with the number of points.

    The loss is :math:`D\,(1/s_A + 1/s_B)` where :math:`s` is the spread of each set
    (``spread="variance"``: total variance; ``"range"``: :math:`\lVert\max_j x_j - \min_j x_j\rVert^2`
    per coordinate, as in the reference code; ``"none"``: loss is :math:`D`), each clamped at
    ``eps``. With the variance bandwidth, :math:`D` is invariant to scaling both sets about a
    common point, so the inverse spread makes shrinking both sets towards a point costly instead
    of a minimum.

    Everything is computed from one pairwise distance matrix, in log space (``logsumexp``), with no
    Python loop over samples; duplicate rows, zero vectors, single-row sets and zero variance give
    finite values and gradients.
    """

    def __init__(
        self,
        bandwidth: str | float = "variance",
        normalize: bool = True,
        eps: float = 1e-8,
        spread: str = "variance",
    ) -> None:
        super().__init__()
        if isinstance(bandwidth, str):
            if bandwidth != "variance":
                raise ValueError(f"SDDLoss: bandwidth must be 'variance' or a positive float, got {bandwidth!r}")
        elif isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not bandwidth > 0 \
                or not math.isfinite(bandwidth):
            raise ValueError(f"SDDLoss: bandwidth must be 'variance' or a positive float, got {bandwidth!r}")
        if spread not in _SPREADS:
            raise ValueError(f"SDDLoss: spread must be one of {_SPREADS}, got {spread!r}")
        if not eps > 0:
            raise ValueError(f"SDDLoss: eps must be positive, got {eps}")
        self.bandwidth = bandwidth if isinstance(bandwidth, str) else float(bandwidth)
        self.normalize = bool(normalize)
        self.eps = float(eps)
        self.spread = spread

    def _spread(self, x: Tensor, var: Tensor) -> Tensor:
        if self.spread == "variance":
            return var.clamp_min(self.eps)
        span = x.max(0).values - x.min(0).values
        return span.pow(2).sum().clamp_min(self.eps)

    def forward(self, za: Tensor, zb: Tensor, d2: Tensor | None = None) -> Tensor:
        """SDD loss between all rows of ``za [Na, d]`` and all rows of ``zb [Nb, d]``.

        ``d2``: optionally, the joint squared-distance matrix
        ``squared_distances(cat([za, zb]), cat([za, zb]))`` ``[Na+Nb, Na+Nb]`` when the caller already
        has it (as :class:`~gentleclip.losses.objective.Objective` does); it must be exactly that.
        """
        check_embeddings(za, zb, "SDDLoss")
        n = za.shape[0] + zb.shape[0]
        if d2 is not None and (not isinstance(d2, Tensor) or d2.shape != (n, n)):
            raise ValueError(f"SDDLoss: d2 must be the [{n}, {n}] joint squared-distance matrix, "
                             f"got {tuple(getattr(d2, 'shape', ()))}")
        with torch.autocast(device_type=za.device.type, enabled=False):
            return self._forward(upcast(za), upcast(zb), d2)

    def _forward(self, za: Tensor, zb: Tensor, d2: Tensor | None = None) -> Tensor:
        na, nb = za.shape[0], zb.shape[0]
        var_a, var_b = total_variance(za), total_variance(zb)
        if self.bandwidth == "variance":
            h_a, h_b = var_a.clamp_min(self.eps), var_b.clamp_min(self.eps)
        else:
            h_a = h_b = torch.tensor(self.bandwidth, dtype=za.dtype, device=za.device)
        if d2 is None:
            d2 = joint_squared_distances(za, zb)  # [Na+Nb, Na+Nb], once
        # log p(x): density in A of every point (rows of A then rows of B); log q(x): density in B.
        lse_a, lse_b = _LogDensities.apply(d2, h_a, h_b, na)
        log_p, log_q = lse_a - math.log(na), lse_b - math.log(nb)
        divergence = za.new_zeros(())
        for sl in (slice(0, na), slice(na, na + nb)):  # the points of A, then the points of B
            lp, lq = log_p[sl], log_q[sl]
            if self.normalize:
                lp = lp - torch.logsumexp(lp, dim=0)
                lq = lq - torch.logsumexp(lq, dim=0)
            divergence = divergence + ((lp.exp() - lq.exp()) * (lp - lq)).sum()
        if self.spread == "none":
            return divergence
        return divergence * (1.0 / self._spread(za, var_a) + 1.0 / self._spread(zb, var_b))

    def extra_repr(self) -> str:
        return f"bandwidth={self.bandwidth!r}, normalize={self.normalize}, spread={self.spread!r}, eps={self.eps}"
