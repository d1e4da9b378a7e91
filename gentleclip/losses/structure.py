r"""STRUCTURE regulariser (Gröger, Wen, Le, Brbić, "With Limited Data for Multimodal Alignment, Let the
STRUCTURE Guide You", NeurIPS 2025, arXiv 2506.16895): keep, inside the joint space, the multi-scale
neighbourhood geometry that each frozen encoder already has.

For one modality, with frozen features :math:`x_i` and projected embeddings :math:`z_i` of the
:math:`n` rows of a batch, the neighbour distributions are row-stochastic softmaxes of the cosine
similarities, each row without itself:

.. math::

    P_{ij} = \frac{\exp(\cos(x_i, x_j)/\tau)}{\sum_{k\ne i}\exp(\cos(x_i, x_k)/\tau)},\qquad
    Q_{ij} = \frac{\exp(\cos(z_i, z_j)/\tau)}{\sum_{k\ne i}\exp(\cos(z_i, z_k)/\tau)}\quad (j \ne i),

and the regulariser compares them at the scales :math:`l = 1..L` of the random walk they define
(:math:`P^l`: :math:`l`-step neighbourhoods) with the Jensen-Shannon divergence, averaged over the
rows and the scales:

.. math::

    R(x, z) = \frac{1}{L}\sum_{l=1}^{L}\frac{1}{n}\sum_i \mathrm{JS}\big(P^l_{i\cdot}\,\Vert\,Q^l_{i\cdot}\big),
    \qquad \mathrm{JS}(p\Vert q) = \tfrac12\mathrm{KL}(p\Vert m) + \tfrac12\mathrm{KL}(q\Vert m),\ m = \tfrac12(p+q).

The frozen side :math:`P` is a constant (no gradient). The term of the objective is the mean of
:math:`R` over the two modalities. Choices this implementation makes where the summary it follows
leaves them open: cosine similarities (the embeddings are L2-normalised), one temperature for both
sides, self-loops removed before the softmax, natural logarithms (JS in [0, log 2]).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gentleclip.losses._checks import check_rows, upcast, zero_with_graph

__all__ = ["StructureLoss", "neighbour_distributions", "js_divergence_rows"]


def neighbour_distributions(x: Tensor, temperature: float) -> Tensor:
    """Row-stochastic ``[n, n]`` softmax of the cosine similarities of the rows of ``x`` over the other
    rows (the diagonal is 0)."""
    xn = F.normalize(x, dim=1)
    logits = (xn @ xn.t()) / temperature
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return torch.softmax(logits.masked_fill(eye, float("-inf")), dim=1)


def js_divergence_rows(p: Tensor, q: Tensor) -> Tensor:
    """Jensen-Shannon divergence of each row of ``p`` against the same row of ``q`` (``[n]``, natural log);
    zero entries contribute 0."""
    m = 0.5 * (p + q)

    def kl(a: Tensor) -> Tensor:
        return torch.where(a > 0, a * (torch.log(a.clamp_min(1e-30)) - torch.log(m.clamp_min(1e-30))), 0.0).sum(1)

    return 0.5 * kl(p) + 0.5 * kl(q)


class StructureLoss(nn.Module):
    """The STRUCTURE regulariser of one modality: ``forward(features [n, D], z [n, d])`` (see the module).

    Args:
        temperature: softmax temperature of both neighbour distributions.
        levels: number of random-walk scales ``L`` (powers ``P^1 .. P^L``).
    """

    def __init__(self, temperature: float = 0.1, levels: int = 3) -> None:
        super().__init__()
        if not temperature > 0 or not math.isfinite(temperature):
            raise ValueError(f"StructureLoss: temperature must be a positive number, got {temperature!r}")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"StructureLoss: levels must be an integer >= 1, got {levels!r}")
        self.temperature = float(temperature)
        self.levels = levels

    def forward(self, features: Tensor, z: Tensor) -> Tensor:
        """``R(features, z)``; fewer than 2 rows give an exact 0 that keeps the graph."""
        if not isinstance(features, Tensor) or features.dim() != 2 or features.shape[0] != z.shape[0]:
            raise ValueError(f"StructureLoss: features must be [n, D] with the n = {z.shape[0]} rows of z, got "
                             f"{tuple(getattr(features, 'shape', ()))}")
        check_rows("StructureLoss", z, "z")
        if z.shape[0] < 2:
            return zero_with_graph(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            q = neighbour_distributions(upcast(z), self.temperature)
            with torch.no_grad():  # the frozen side is a constant
                p = neighbour_distributions(upcast(features).to(q.dtype), self.temperature)
            total = z.new_zeros((), dtype=q.dtype)
            p_l, q_l = p, q
            for level in range(self.levels):
                if level:
                    p_l, q_l = p_l @ p, q_l @ q
                total = total + js_divergence_rows(p_l, q_l).mean()
            return total / self.levels

    def extra_repr(self) -> str:
        """The settings shown in ``repr(module)``."""
        return f"temperature={self.temperature}, levels={self.levels}"
