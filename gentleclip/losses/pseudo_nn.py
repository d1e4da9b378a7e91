"""Naive hard pseudo-pairs by nearest neighbour: the simplest way to use unpaired rows in CLIP.

Each unpaired A row is paired with its most cosine-similar unpaired B row of the batch, the choice
is frozen (no gradient through the selection), and the usual contrastive loss is applied as if
those pseudo-pairs were true pairs. This is hard pseudo-labelling (Lee, "Pseudo-Label: The Simple
and Efficient Semi-Supervised Learning Method for Deep Neural Networks", ICML-W 2013) moved to the
cross-modal setting; the S-CLIP paper (Mo et al., NeurIPS 2023, arXiv 2305.14095) uses the same
kind of baseline ("hard" pseudo-labels) to show that unbalanced nearest-neighbour assignments can
hurt. It is a baseline: early in training the neighbours are mostly wrong, and the loss then
reinforces the mistakes (confirmation bias); the optional mutual-NN test and similarity threshold
are the usual guards.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gentleclip.losses._checks import check_rows, check_same_dim

__all__ = ["nearest_neighbour_pairs", "PseudoNNLoss"]


def _check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    t = float(threshold)
    if not math.isfinite(t) or not -1.0 <= t <= 1.0:
        raise ValueError(f"threshold is a cosine similarity and must lie in [-1, 1] (or be None), got {threshold!r}")
    return t


@torch.no_grad()
def nearest_neighbour_pairs(
    za: Tensor,
    zb: Tensor,
    mutual: bool = False,
    threshold: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Hard pseudo-pairs ``(i, j(i))`` with ``j(i) = argmax_j cos(za_i, zb_j)`` (first index on ties).

    With ``mutual=True`` a pair is kept only when ``i`` is also the nearest A row of ``zb_{j(i)}``
    (so every B row is used at most once); with ``threshold`` only when ``cos(za_i, zb_{j(i)}) >=
    threshold``. Returns two aligned ``int64`` index tensors ``(idx_a, idx_b)`` in increasing order
    of ``idx_a``; both empty when ``za`` or ``zb`` has no rows. No gradient flows.
    """
    check_rows("PseudoNNLoss", za, "za")
    check_rows("PseudoNNLoss", zb, "zb")
    check_same_dim("PseudoNNLoss", za, zb, "za", "zb")
    threshold = _check_threshold(threshold)
    empty = torch.zeros(0, dtype=torch.long, device=za.device)
    if za.shape[0] == 0 or zb.shape[0] == 0:
        return empty, empty.clone()
    sim = F.normalize(za.detach(), dim=-1) @ F.normalize(zb.detach(), dim=-1).T  # [Na, Nb]
    idx_b = sim.argmax(dim=1)  # first maximal index on ties
    best_sim = sim.gather(1, idx_b[:, None]).squeeze(1)
    keep = torch.ones(za.shape[0], dtype=torch.bool, device=za.device)
    if mutual:
        back = sim.argmax(dim=0)  # nearest A row of every B row
        keep &= back[idx_b] == torch.arange(za.shape[0], device=za.device)
    if threshold is not None:
        keep &= best_sim >= threshold
    idx_a = torch.nonzero(keep, as_tuple=False).flatten()
    return idx_a, idx_b[idx_a]


class PseudoNNLoss(nn.Module):
    """Contrastive loss on hard nearest-neighbour pseudo-pairs of the unpaired rows.

    Let ``M in {0,1}^{Na x Nb}`` mark the pseudo-pairs of :func:`nearest_neighbour_pairs`
    (selected under no_grad) and ``L = za zb^T / tau`` the logits over *all* unpaired rows, so that
    unselected rows act as extra negatives::

        L_ab = -(1/|P|) sum_{(i,j) in P} log softmax_j(L_i,:)                  (A -> B)
        L_ba = -(1/|J|) sum_{j in J} sum_i (M_ij / sum_i' M_i'j) log softmax_i(L_:,j)   (B -> A)
        loss = (L_ab + L_ba) / 2

    ``P`` is the set of pseudo-pairs and ``J`` the B rows used by at least one of them. Without
    ``mutual`` several A rows may share a neighbour; the B -> A direction then spreads its target
    uniformly over them (with ``mutual=True`` pairs are one-to-one and this is the plain symmetric
    CLIP/InfoNCE loss of the pseudo-pairs). No pseudo-pair (empty pools, or all rejected by the
    threshold / mutual test) gives an exact 0 that keeps the graph.

    Args:
        temperature: softmax temperature ``tau`` (> 0).
        threshold: minimum cosine similarity of a kept pseudo-pair, or ``None``.
        mutual: keep only mutual nearest neighbours.
    """

    def __init__(self, temperature: float = 0.05, threshold: float | None = None, mutual: bool = False) -> None:
        super().__init__()
        t = float(temperature)
        if not math.isfinite(t) or t <= 0.0:
            raise ValueError(f"temperature must be a finite positive number, got {temperature!r}")
        self.temperature = t
        self.threshold = _check_threshold(threshold)
        self.mutual = bool(mutual)

    def extra_repr(self) -> str:
        """The settings shown in ``repr(module)``."""
        return f"temperature={self.temperature}, threshold={self.threshold}, mutual={self.mutual}"

    def forward(self, za_unpaired: Tensor, zb_unpaired: Tensor) -> Tensor:
        """Loss on the pseudo-pairs between unpaired A rows ``[Na, d]`` and unpaired B rows ``[Nb, d]``."""
        idx_a, idx_b = nearest_neighbour_pairs(za_unpaired, zb_unpaired, self.mutual, self.threshold)
        if idx_a.numel() == 0:
            return za_unpaired.sum() * 0.0 + zb_unpaired.sum() * 0.0
        logits = za_unpaired @ zb_unpaired.T / self.temperature  # [Na, Nb]
        loss_ab = F.cross_entropy(logits[idx_a], idx_b)
        # B -> A: one row per used B row, target uniform over the A rows pseudo-paired with it.
        used_b, inverse = torch.unique(idx_b, return_inverse=True)
        targets = torch.zeros(used_b.numel(), za_unpaired.shape[0], dtype=logits.dtype, device=logits.device)
        targets[inverse, idx_a] = 1.0
        targets = targets / targets.sum(dim=1, keepdim=True)
        log_p_ba = F.log_softmax(logits.T[used_b], dim=1)
        loss_ba = -(targets * log_p_ba).sum(dim=1).mean()
        return 0.5 * (loss_ab + loss_ba)
