"""S-CLIP pseudo-label losses (Mo et al., "S-CLIP: Semi-supervised Vision-Language Learning using
Few Specialist Captions", NeurIPS 2023, arXiv 2305.14095; reference code: github.com/alinlab/s-clip,
``custom/loss.py``).

S-CLIP trains CLIP on a few pairs plus *unpaired A* items (images without captions). It adds two
pseudo-label terms on top of the paired CLIP loss, both computed inside one batch:

* **Caption level** (:class:`SClipCaptionLoss`): every unpaired A row receives a *soft* target over
  the paired captions, read off an entropic optimal-transport plan between the unpaired A rows and
  the paired rows (uniform marginals, cost ``1 - cos``). The plan's balancing constraint keeps all
  unpaired rows from collapsing onto the same few captions, which is what sets it apart from
  nearest-neighbour pseudo-labels.
* **Keyword level** (:class:`SClipKeywordLoss`): every unpaired A row receives a *candidate set* of
  keywords, those of the caption(s) of its nearest paired A row, and is trained by partial-label
  learning: the probability mass the model puts on the candidate set is maximised, without
  committing to any one keyword.

All inputs are L2-normalised embeddings; every loss returns a 0-dim tensor that keeps the graph,
and an exact 0 (still attached to the graph) when it has nothing to work on.
"""
from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gentleclip.losses._checks import check_rows, check_same_dim

__all__ = ["sinkhorn", "caption_pseudo_labels", "nearest_paired_rows", "SClipCaptionLoss", "SClipKeywordLoss"]

SinkhornBackend = Literal["torch", "pot"]


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not math.isfinite(t) or t <= 0.0:
        raise ValueError(f"temperature must be a finite positive number, got {temperature!r}")
    return t


def _zero(*tensors: Tensor) -> Tensor:
    """Exact 0-dim zero that stays attached to the graph of every tensor given."""
    total = None
    for t in tensors:
        term = t.sum() * 0.0
        total = term if total is None else total + term
    assert total is not None
    return total


def _marginal(name: str, x: Tensor | None, n: int, like: Tensor) -> Tensor:
    if x is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64, device=like.device)
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x)
    x = x.detach().to(device=like.device, dtype=torch.float64)
    if x.shape != (n,):
        raise ValueError(f"sinkhorn: marginal {name} must have shape ({n},) to match the cost, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()) or bool((x < 0).any()) or float(x.sum()) <= 0.0:
        raise ValueError(f"sinkhorn: marginal {name} must be finite, non-negative and have positive mass")
    return x


@torch.no_grad()
def sinkhorn(
    cost: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    eps: float = 0.05,
    n_iter: int = 100,
) -> Tensor:
    """Entropic optimal-transport plan by log-domain Sinkhorn iterations (no gradient).

    Solves ``min_P <P, C> - eps * H(P)`` subject to ``P 1 = a`` and ``P^T 1 = b``
    (Cuturi, "Sinkhorn Distances", NeurIPS 2013). With ``K = exp(-C / eps)`` the plan is
    ``P = diag(u) K diag(v)`` and each iteration performs, in log space,

        log v = log b - logsumexp_i(log K_ij + log u_i)
        log u = log a - logsumexp_j(log K_ij + log v_j)

    starting from ``u = 1/n, v = 1/m``: the same iterates as POT's ``ot.sinkhorn`` (method
    ``"sinkhorn"``) run for ``n_iter`` iterations, but free of under/overflow for small ``eps``.
    The last update is on ``u``, so the row marginals equal ``a`` exactly; the column marginals
    approach ``b`` as ``n_iter`` grows.

    Args:
        cost: ``[n, m]`` cost matrix (any float dtype; computed in float64).
        a: ``[n]`` row marginal, default uniform ``1/n``.
        b: ``[m]`` column marginal, default uniform ``1/m``; must carry the same mass as ``a``.
        eps: entropic regularisation (> 0).
        n_iter: number of Sinkhorn iterations (>= 1).

    Returns:
        The ``[n, m]`` plan, detached, in the dtype of ``cost`` (float64 for integer costs).
    """
    if not isinstance(cost, Tensor) or cost.dim() != 2:
        shape = tuple(cost.shape) if isinstance(cost, Tensor) else type(cost).__name__
        raise ValueError(f"sinkhorn: cost must be a 2-d tensor [n, m], got {shape}")
    n, m = cost.shape
    if n == 0 or m == 0:
        raise ValueError(f"sinkhorn: cost must have at least one row and one column, got shape {(n, m)}")
    eps = float(eps)
    if not math.isfinite(eps) or eps <= 0.0:
        raise ValueError(f"sinkhorn: eps must be a finite positive number, got {eps!r}")
    if int(n_iter) != n_iter or n_iter < 1:
        raise ValueError(f"sinkhorn: n_iter must be a positive integer, got {n_iter!r}")
    c = cost.detach().to(torch.float64)
    if not bool(torch.isfinite(c).all()):
        raise ValueError("sinkhorn: cost contains NaN or infinite entries")
    a64 = _marginal("a", a, n, c)
    b64 = _marginal("b", b, m, c)
    if abs(float(a64.sum()) - float(b64.sum())) > 1e-6 * max(float(a64.sum()), float(b64.sum())):
        raise ValueError(
            f"sinkhorn: marginals must carry the same mass, got sum(a)={float(a64.sum()):.6g} "
            f"and sum(b)={float(b64.sum()):.6g}"
        )
    log_k = -c / eps
    log_a, log_b = a64.log(), b64.log()
    log_u = torch.full((n,), -math.log(n), dtype=torch.float64, device=c.device)
    log_v = torch.full((m,), -math.log(m), dtype=torch.float64, device=c.device)
    for _ in range(int(n_iter)):
        log_v = log_b - torch.logsumexp(log_k + log_u[:, None], dim=0)
        log_u = log_a - torch.logsumexp(log_k + log_v[None, :], dim=1)
    plan = torch.exp(log_u[:, None] + log_k + log_v[None, :])
    out_dtype = cost.dtype if cost.is_floating_point() else torch.float64
    return plan.to(out_dtype)


@torch.no_grad()
def _pot_sinkhorn(cost: Tensor, eps: float, n_iter: int) -> Tensor:
    """The same plan computed by POT's ``ot.sinkhorn`` (for cross-checking the torch version)."""
    try:
        import ot
    except ImportError as exc:  # pragma: no cover - POT is a declared dependency
        raise ValueError("backend='pot' needs the POT package (pip install pot)") from exc
    c = cost.detach().to(torch.float64)
    n, m = c.shape
    a = torch.full((n,), 1.0 / n, dtype=torch.float64, device=c.device)
    b = torch.full((m,), 1.0 / m, dtype=torch.float64, device=c.device)
    with warnings.catch_warnings():  # stopThr=0 runs exactly n_iter iterations, so POT warns
        warnings.simplefilter("ignore")
        plan = ot.sinkhorn(a, b, c, reg=eps, numItermax=int(n_iter), stopThr=0.0)
    return plan.to(cost.dtype)


@torch.no_grad()
def caption_pseudo_labels(
    za_unpaired: Tensor,
    support: Tensor,
    eps: float = 0.05,
    n_iter: int = 10,
    backend: SinkhornBackend = "torch",
) -> Tensor:
    """S-CLIP caption-level soft pseudo-labels: the row-normalised OT plan, ``[U, S]``.

    ``C_ij = 1 - cos(za_unpaired_i, support_j)``; ``P = sinkhorn(C, 1/U, 1/S, eps, n_iter)``;
    the target of unpaired row i over paired row j is ``P_ij / sum_j' P_ij'``. ``support`` is the
    paired A rows (S-CLIP's default ``"ot-image"``) or the paired B rows. No gradient flows.
    """
    check_rows("S-CLIP", za_unpaired, "za_unpaired")
    check_rows("S-CLIP", support, "support")
    check_same_dim("S-CLIP", za_unpaired, support, "za_unpaired", "support")
    if backend not in ("torch", "pot"):
        raise ValueError(f"backend must be 'torch' or 'pot', got {backend!r}")
    cost = 1.0 - F.normalize(za_unpaired.detach(), dim=-1) @ F.normalize(support.detach(), dim=-1).T
    plan = sinkhorn(cost, eps=eps, n_iter=n_iter) if backend == "torch" else _pot_sinkhorn(cost, eps, n_iter)
    return plan / plan.sum(dim=1, keepdim=True)


class SClipCaptionLoss(nn.Module):
    """S-CLIP caption-level pseudo-label loss (Mo et al., NeurIPS 2023, arXiv 2305.14095, Sec. 3.1).

    For the U unpaired A rows ``u_i`` and the S paired B rows ``b_j`` of a batch::

        C_ij   = 1 - cos(u_i, s_j)                  s = paired A rows if given, else paired B rows
        P      = Sinkhorn(C, a = 1/U, b = 1/S, eps, n_iter)         (no gradient)
        q_ij   = P_ij / sum_j' P_ij'                                 (soft caption targets)
        L      = -(1/U) sum_i sum_j q_ij log softmax_j(u_i . b_j / tau)

    The reference implementation builds the cost against the *paired A* rows (its default
    ``pseudo_label_type="ot-image"``), uses ``eps = tau`` and 10 Sinkhorn iterations, and weights
    this term by 1/2; pass ``za_paired`` to :meth:`forward` for that variant, or leave it out to
    match unpaired A against the paired B rows directly.

    Args:
        temperature: softmax temperature ``tau`` of the logits (> 0).
        ot_epsilon: entropic regularisation of the OT problem; ``None`` means ``temperature``.
        n_iter: Sinkhorn iterations (the reference code uses 10).
        backend: ``"torch"`` (vectorised log-domain, :func:`sinkhorn`) or ``"pot"`` (``ot.sinkhorn``,
            for checking).
    """

    def __init__(
        self,
        temperature: float = 0.05,
        ot_epsilon: float | None = None,
        n_iter: int = 10,
        backend: SinkhornBackend = "torch",
    ) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        eps = self.temperature if ot_epsilon is None else float(ot_epsilon)
        if not math.isfinite(eps) or eps <= 0.0:
            raise ValueError(f"ot_epsilon must be a finite positive number or None, got {ot_epsilon!r}")
        self.ot_epsilon = eps
        if int(n_iter) != n_iter or n_iter < 1:
            raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
        self.n_iter = int(n_iter)
        if backend not in ("torch", "pot"):
            raise ValueError(f"backend must be 'torch' or 'pot', got {backend!r}")
        self.backend: SinkhornBackend = backend

    def extra_repr(self) -> str:
        """The settings shown in ``repr(module)``."""
        return (f"temperature={self.temperature}, ot_epsilon={self.ot_epsilon}, n_iter={self.n_iter}, "
                f"backend={self.backend!r}")

    def forward(self, za_unpaired: Tensor, zb_paired: Tensor, za_paired: Tensor | None = None) -> Tensor:
        """Caption-level loss of the unpaired A rows ``[U, d]`` against the paired B rows ``[S, d]``.

        ``za_paired`` (``[S, d]``, optional) are the A halves of the paired rows; when given, the
        OT cost is computed against them (S-CLIP's ``"ot-image"``), else against ``zb_paired``.
        ``U == 0`` or ``S == 0`` gives an exact 0 that keeps the graph.
        """
        check_rows("S-CLIP", za_unpaired, "za_unpaired")
        check_rows("S-CLIP", zb_paired, "zb_paired")
        check_same_dim("S-CLIP", za_unpaired, zb_paired, "za_unpaired", "zb_paired")
        if za_paired is not None:
            check_rows("S-CLIP", za_paired, "za_paired")
            check_same_dim("S-CLIP", za_unpaired, za_paired, "za_unpaired", "za_paired")
            if za_paired.shape[0] != zb_paired.shape[0]:
                raise ValueError(
                    f"za_paired and zb_paired must hold the same paired rows, got {za_paired.shape[0]} "
                    f"and {zb_paired.shape[0]}"
                )
        extras = () if za_paired is None else (za_paired,)
        if za_unpaired.shape[0] == 0 or zb_paired.shape[0] == 0:
            return _zero(za_unpaired, zb_paired, *extras)
        support = zb_paired if za_paired is None else za_paired
        targets = caption_pseudo_labels(za_unpaired, support, self.ot_epsilon, self.n_iter, self.backend)
        logits = za_unpaired @ zb_paired.T / self.temperature
        log_p = F.log_softmax(logits, dim=1)
        return -(targets.to(log_p.dtype) * log_p).sum(dim=1).mean()


@torch.no_grad()
def nearest_paired_rows(za_unpaired: Tensor, za_paired: Tensor) -> Tensor:
    """Index ``[U]`` of the most cosine-similar paired A row for every unpaired A row (first on ties)."""
    check_rows("S-CLIP", za_unpaired, "za_unpaired")
    check_rows("S-CLIP", za_paired, "za_paired")
    check_same_dim("S-CLIP", za_unpaired, za_paired, "za_unpaired", "za_paired")
    if za_paired.shape[0] == 0:
        raise ValueError("nearest_paired_rows needs at least one paired row")
    sim = F.normalize(za_unpaired.detach(), dim=-1) @ F.normalize(za_paired.detach(), dim=-1).T
    return sim.argmax(dim=1)


class SClipKeywordLoss(nn.Module):
    """S-CLIP keyword-level pseudo-label loss by partial-label learning (arXiv 2305.14095, Sec. 3.2).

    Keywords are drawn from the paired captions (:mod:`gentleclip.keywords`); ``Y in {0,1}^{S x K}``
    marks the keywords of each paired row's caption(s), and ``k_1..k_K`` are the keyword strings
    embedded by the B head. For each unpaired A row ``u_i``::

        n(i)  = argmax_j cos(u_i, a_j)              nearest paired A row (no gradient)
        K_i   = {k : Y[n(i), k] = 1}                candidate keyword set
        p_ik  = softmax_k(u_i . k_k / tau)
        L     = -(1/|I|) sum_{i in I} log sum_{k in K_i} p_ik,     I = {i : K_i non-empty}

    Its gradient w.r.t. the logits is ``p_i - r_i`` with ``r_i`` the model's own distribution
    restricted to ``K_i`` and renormalised: the same as a soft cross-entropy towards the
    re-weighted candidate distribution (PRODEN-style self-training, which the reference code
    approximates with similarity-proportional weights). Rows whose candidate set is empty are
    skipped; no usable row, zero unpaired rows or zero paired rows give an exact 0 that keeps the graph.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)

    def extra_repr(self) -> str:
        """The settings shown in ``repr(module)``."""
        return f"temperature={self.temperature}"

    def forward(
        self,
        za_unpaired: Tensor,
        za_paired: Tensor,
        paired_keywords: Tensor,
        z_keywords: Tensor,
        nearest_index: Tensor | None = None,
    ) -> Tensor:
        """Keyword loss.

        Args:
            za_unpaired: ``[U, d]`` unpaired A rows.
            za_paired: ``[S, d]`` paired A rows (used to find each unpaired row's nearest neighbour).
            paired_keywords: ``[S, K]`` multi-hot (bool, or float where non-zero marks membership)
                keywords of each paired row's caption(s).
            z_keywords: ``[K, d]`` keyword embeddings (B head on the keyword-string text features).
            nearest_index: optional ``[U]`` indices into the paired rows that replace the cosine
                nearest neighbour (e.g. the argmax of the caption-level OT plan, as the reference
                code does).
        """
        check_rows("S-CLIP", za_unpaired, "za_unpaired")
        check_rows("S-CLIP", za_paired, "za_paired")
        check_rows("S-CLIP", paired_keywords, "paired_keywords", floating=False)
        check_rows("S-CLIP", z_keywords, "z_keywords")
        check_same_dim("S-CLIP", za_unpaired, za_paired, "za_unpaired", "za_paired")
        check_same_dim("S-CLIP", za_unpaired, z_keywords, "za_unpaired", "z_keywords")
        n_unpaired, n_paired = za_unpaired.shape[0], za_paired.shape[0]
        if paired_keywords.shape != (n_paired, z_keywords.shape[0]):
            raise ValueError(
                f"paired_keywords must be [n_paired, n_keywords] = {(n_paired, z_keywords.shape[0])}, "
                f"got {tuple(paired_keywords.shape)}"
            )
        if paired_keywords.dtype != torch.bool:
            if not paired_keywords.is_floating_point() and paired_keywords.dtype not in (
                torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64
            ):
                raise ValueError(f"paired_keywords must be bool or numeric multi-hot, got {paired_keywords.dtype}")
            if bool((paired_keywords < 0).any()):
                raise ValueError("paired_keywords must be a non-negative multi-hot matrix")
        if n_unpaired == 0 or n_paired == 0 or z_keywords.shape[0] == 0:
            return _zero(za_unpaired, za_paired, z_keywords)
        if nearest_index is None:
            nearest = nearest_paired_rows(za_unpaired, za_paired)
        else:
            nearest = torch.as_tensor(nearest_index, device=za_unpaired.device).long()
            if nearest.shape != (n_unpaired,):
                raise ValueError(f"nearest_index must have shape ({n_unpaired},), got {tuple(nearest.shape)}")
            if bool((nearest < 0).any()) or bool((nearest >= n_paired).any()):
                raise ValueError(f"nearest_index entries must lie in [0, {n_paired})")
        candidates = (paired_keywords.detach() != 0).to(za_unpaired.device)[nearest]  # [U, K] bool
        usable = candidates.any(dim=1)
        if not bool(usable.any()):
            return _zero(za_unpaired, za_paired, z_keywords)
        logits = za_unpaired[usable] @ z_keywords.T / self.temperature
        log_p = F.log_softmax(logits, dim=1)
        log_mass = torch.logsumexp(log_p.masked_fill(~candidates[usable], float("-inf")), dim=1)
        return -log_mass.mean()
