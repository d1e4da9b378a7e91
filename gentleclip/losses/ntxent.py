"""Unimodal two-view contrastive loss (NT-Xent, SimCLR / SimCSE)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gentleclip.losses._checks import check_embeddings


class NTXentLoss(nn.Module):
    r"""NT-Xent between two views of the same N items (SimCLR; SimCSE with dropout views).

    With :math:`z = [v^{(1)}; v^{(2)}]` (``2N`` L2-normalised rows), :math:`s_{ij} = z_i^\top z_j/\tau`
    and :math:`\pi(i) = i \pm N` the other view of item :math:`i`:

    .. math::

        L = -\frac{1}{2N}\sum_{i<2N}\log\frac{\exp(s_{i\pi(i)})}{\sum_{k\ne i}\exp(s_{ik})},

    so each row has one positive and :math:`2N-2` negatives. With ``N = 1`` the loss is 0.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if not temperature > 0 or not math.isfinite(temperature):
            raise ValueError(f"NTXentLoss: temperature must be a positive number, got {temperature!r}")
        self.temperature = float(temperature)

    def forward(self, view1: Tensor, view2: Tensor) -> Tensor:
        """Loss for ``view1 [N, d]`` and ``view2 [N, d]``; row i of both is the same item."""
        check_embeddings(view1, view2, "NTXentLoss", same_rows=True)
        n = view1.shape[0]
        z = torch.cat([view1, view2])
        logits = (z @ z.t()) / self.temperature
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        return F.cross_entropy(logits, targets)

    def extra_repr(self) -> str:
        """The settings shown in ``repr(module)``."""
        return f"temperature={self.temperature}"
