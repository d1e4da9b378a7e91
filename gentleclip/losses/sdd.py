"""Semantic density distribution (SDD) loss of Set-CLIP / Gentle-CLIP, in log space."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gentleclip.losses import _fused
from gentleclip.losses._checks import check_embeddings, upcast

__all__ = ["SDDLoss", "squared_distances", "joint_squared_distances", "total_variance"]

_SPREADS = ("variance", "range", "none")


def squared_distances(x: Tensor, y: Tensor | None = None, fused: bool | None = None) -> Tensor:
    r"""Pairwise squared Euclidean distances :math:`D_{ij} = \lVert x_i - y_j\rVert^2`, shape ``[n, m]``.

    Computed as :math:`\lVert x\rVert^2 + \lVert y\rVert^2 - 2x^\top y` after subtracting the
    (detached) joint mean, which leaves the distances unchanged but limits cancellation for
    clustered points; clamped at 0, so the gradient is finite even for duplicate rows (unlike
    ``torch.cdist``, whose square root has an infinite derivative at 0). With ``y`` omitted (or
    ``y is x``) the distances of ``x`` to itself, with an exact 0 diagonal; ``fused`` (default:
    where it pays, :func:`gentleclip.losses._fused.fused_pays`) gives them a one-matmul backward.
    """
    if y is None or y is x:
        if _fused.use_fused(fused, x):
            return _fused.self_squared_distances(x)
        xc = x - x.mean(0, keepdim=True).detach()
        sq = xc.pow(2).sum(1)
        d2 = sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (xc @ xc.t())
        return d2.diagonal_scatter(d2.new_zeros(d2.shape[0])).clamp_min(0.0)
    centre = torch.cat([x, y]).mean(0, keepdim=True).detach()
    x = x - centre
    y = y - centre
    d2 = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1).unsqueeze(0) - 2.0 * (x @ y.t())
    return d2.clamp_min(0.0)


def joint_squared_distances(za: Tensor, zb: Tensor, fused: bool | None = None) -> Tensor:
    """``squared_distances`` of the joint set ``cat([za, zb])`` with itself, ``[Na+Nb, Na+Nb]``."""
    return squared_distances(torch.cat([za, zb]), fused=fused)


def log_densities(d2: Tensor, h_a: Tensor, h_b: Tensor, na: int, fused: bool | None = None) -> tuple[Tensor, Tensor]:
    """Unnormalised log kernel densities of every point of the joint set in A and in B: for row ``i``
    of ``d2``, ``logsumexp_{j < na}(-d2_ij / h_a)`` and ``logsumexp_{j >= na}(-d2_ij / h_b)``."""
    if _fused.use_fused(fused, d2):
        return _fused.log_densities(d2, h_a, h_b, na)
    return torch.logsumexp(-d2[:, :na] / h_a, dim=1), torch.logsumexp(-d2[:, na:] / h_b, dim=1)


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
    finite values and gradients. ``fused`` chooses the fused CPU kernels (:mod:`gentleclip.losses._fused`)
    or plain autograd; ``None`` (default) uses the fused kernels where they pay (on the CPU).
    """

    def __init__(
        self,
        bandwidth: str | float = "variance",
        normalize: bool = True,
        eps: float = 1e-8,
        spread: str = "variance",
        fused: bool | None = None,
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
        self.fused = fused

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
            d2 = joint_squared_distances(za, zb, fused=self.fused)  # [Na+Nb, Na+Nb], once
        # log p(x): density in A of every point (rows of A then rows of B); log q(x): density in B.
        lse_a, lse_b = log_densities(d2, h_a, h_b, na, fused=self.fused)
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
        """The settings shown in ``repr(module)``."""
        return f"bandwidth={self.bandwidth!r}, normalize={self.normalize}, spread={self.spread!r}, eps={self.eps}"
