"""Modality-gap terms (arXiv 2601.18525): pull true pairs together, spread pair centroids apart."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gentleclip.losses._checks import check_rows, zero_with_graph
from gentleclip.losses.sdd import squared_distances


def _check_pairs(za: Tensor, zb: Tensor, name: str) -> None:
    """Paired inputs: 2-D, same shape; zero rows are allowed (the term is then 0)."""
    for label, z in (("first input", za), ("second input", zb)):
        check_rows(name, z, label)
    if za.shape != zb.shape:
        raise ValueError(f"{name}: row i of both inputs must be a true pair, so shapes must match; got "
                         f"{tuple(za.shape)} and {tuple(zb.shape)}")


class PairAlignmentLoss(nn.Module):
    r"""Mean squared distance between true-pair embeddings.

    .. math:: L = \frac{1}{S}\sum_{i<S}\lVert a_i - b_i\rVert^2

    (:math:`= 2 - 2a_i^\top b_i` on average for unit vectors). ``S = 0`` gives an exact 0 that
    keeps the graph.
    """

    def forward(self, za_paired: Tensor, zb_paired: Tensor) -> Tensor:
        """Loss for the ``S`` true pairs ``(za_paired[i], zb_paired[i])``."""
        _check_pairs(za_paired, zb_paired, "PairAlignmentLoss")
        if za_paired.shape[0] == 0:
            return zero_with_graph(za_paired, zb_paired)
        return (za_paired - zb_paired).pow(2).sum(1).mean()


class CentroidUniformityLoss(nn.Module):
    r"""Uniformity (Wang & Isola) of the normalised pair centroids on the sphere.

    With :math:`c_i = (a_i + b_i)/\lVert a_i + b_i\rVert` for the ``S`` true pairs,

    .. math::

        L = \log \frac{1}{S(S-1)}\sum_{i\ne j}\exp\!\big(-t\,\lVert c_i - c_j\rVert^2\big),

    computed with ``logsumexp``. Lower is more uniform. Fewer than 2 pairs give an exact 0 that
    keeps the graph. A pair of exactly opposite vectors has a zero centroid (``F.normalize`` keeps
    it at 0) and still gives finite values and gradients.
    """

    def __init__(self, t: float = 2.0) -> None:
        super().__init__()
        if not t > 0 or not math.isfinite(t):
            raise ValueError(f"CentroidUniformityLoss: t must be a positive number, got {t!r}")
        self.t = float(t)

    def forward(self, za_paired: Tensor, zb_paired: Tensor) -> Tensor:
        """Loss for the ``S`` true pairs ``(za_paired[i], zb_paired[i])``."""
        _check_pairs(za_paired, zb_paired, "CentroidUniformityLoss")
        s = za_paired.shape[0]
        if s < 2:
            return zero_with_graph(za_paired, zb_paired)
        c = F.normalize(za_paired + zb_paired, dim=1)
        d2 = squared_distances(c)
        off = ~torch.eye(s, dtype=torch.bool, device=c.device)
        return torch.logsumexp(-self.t * d2[off], dim=0) - math.log(s * (s - 1))

    def extra_repr(self) -> str:
        """The settings shown in ``repr(module)``."""
        return f"t={self.t}"
