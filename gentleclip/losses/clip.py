"""Symmetric InfoNCE (CLIP) loss on the paired rows of a semi-paired batch."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gentleclip.losses._checks import check_embeddings, check_n_paired, zero_with_graph


class CLIPLoss(nn.Module):
    r"""Symmetric InfoNCE over the paired rows; by default every other row of the batch is an extra negative.

    With ``S = n_paired`` true pairs in rows ``0..S-1`` of ``za [Na, d]`` and ``zb [Nb, d]``
    (L2-normalised) and temperature :math:`\tau`:

    .. math::

        L_{a\to b} = -\frac{1}{S}\sum_{i<S} \log
            \frac{\exp(a_i^\top b_i/\tau)}{\sum_{j<N_b} \exp(a_i^\top b_j/\tau)},\qquad
        L_{b\to a} = -\frac{1}{S}\sum_{i<S} \log
            \frac{\exp(b_i^\top a_i/\tau)}{\sum_{j<N_a} \exp(b_i^\top a_j/\tau)},

    and the loss is :math:`(L_{a\to b} + L_{b\to a}) / 2`. With ``S = 0`` the loss is an exact 0
    that keeps the graph (zero gradients, no NaN).

    With ``unpaired_negatives=False`` the sums over :math:`j` stop at :math:`S`: the unpaired rows
    play no part, and the loss is plain CLIP on the pairs. Unpaired rows as extra negatives is what
    the design (and S-CLIP's reference code, for its unpaired images) does; but an unpaired row
    that shares the semantics of a pair's partner (same class, same cluster) is then pushed away
    from it, which can hurt when the unpaired pools are drawn from the same distribution as the pairs.

    The temperature is fixed, or learnable (``learnable=True``) as :math:`\tau = \exp(\theta)` with
    :math:`\theta` clamped to :math:`[\log\tau_{min}, \log\tau_{max}]`.
    """

    def __init__(
        self,
        temperature: float = 0.05,
        learnable: bool = False,
        min_temperature: float = 0.01,
        max_temperature: float = 1.0,
        unpaired_negatives: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(unpaired_negatives, bool):
            raise ValueError(f"CLIPLoss: unpaired_negatives must be True or False, got {unpaired_negatives!r}")
        self.unpaired_negatives = unpaired_negatives
        if not (min_temperature > 0 and max_temperature >= min_temperature):
            raise ValueError(
                f"CLIPLoss: expected 0 < min_temperature <= max_temperature, got {min_temperature} and "
                f"{max_temperature}"
            )
        if not (min_temperature <= temperature <= max_temperature):
            raise ValueError(
                f"CLIPLoss: temperature must lie in [{min_temperature}, {max_temperature}], got {temperature}"
            )
        self.learnable = bool(learnable)
        self.min_temperature = float(min_temperature)
        self.max_temperature = float(max_temperature)
        log_t = torch.tensor(math.log(temperature), dtype=torch.float32)
        if self.learnable:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    @property
    def temperature(self) -> Tensor:
        """Current temperature :math:`\\tau` (0-dim tensor; differentiable when learnable)."""
        return self.log_temperature.clamp(math.log(self.min_temperature), math.log(self.max_temperature)).exp()

    def forward(self, za: Tensor, zb: Tensor, n_paired: int) -> Tensor:
        """Loss for ``za [Na, d]``, ``zb [Nb, d]`` whose first ``n_paired`` rows are true pairs."""
        check_embeddings(za, zb, "CLIPLoss")
        n = check_n_paired(n_paired, za, zb, "CLIPLoss")
        if n == 0:
            parts = (za, zb, self.log_temperature) if self.learnable else (za, zb)
            return zero_with_graph(*parts)
        tau = self.temperature
        targets = torch.arange(n, device=za.device)
        if not self.unpaired_negatives:
            za, zb = za[:n], zb[:n]
        logits_ab = za[:n] @ zb.t() / tau  # [S, Nb] (or [S, S])
        logits_ba = zb[:n] @ za.t() / tau  # [S, Na] (or [S, S])
        return 0.5 * (F.cross_entropy(logits_ab, targets) + F.cross_entropy(logits_ba, targets))

    def extra_repr(self) -> str:
        """The settings shown in ``repr(module)``."""
        return (
            f"temperature={float(self.temperature.detach()):.4g}, learnable={self.learnable}, "
            f"range=[{self.min_temperature}, {self.max_temperature}], unpaired_negatives={self.unpaired_negatives}"
        )
