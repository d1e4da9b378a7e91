"""The training objective: a weighted sum of named loss terms; every method is a config of it.

Terms live in a registry (:func:`register_term`): a term is a name, a weight read from the
config (a field of :class:`ObjectiveConfig` of the same name, or an entry of
``ObjectiveConfig.extra_weights``) and a factory that builds an ``nn.Module`` from the config,
whose ``forward(batch: TermInputs)`` returns a 0-dim tensor. Terms whose weight is 0 are neither
built nor computed. Built in: ``clip``, ``sdd``, ``mmd``, ``ssl_a``, ``ssl_b``, ``align``,
``uniformity`` (Gentle-CLIP and the modality-gap terms), ``sclip_caption``, ``sclip_keyword``
(S-CLIP pseudo-labels) and ``pseudo_nn`` (hard nearest-neighbour pseudo-pairs). To add a term
from another module::

    @register_term("my_term")
    def _build_my_term(config: ObjectiveConfig) -> nn.Module:
        return TermAdapter(MyLoss(...), _my_call)  # _my_call(loss, batch: TermInputs) -> Tensor

and set ``ObjectiveConfig(extra_weights={"my_term": 0.5})`` (or add a ``my_term`` weight field here).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any, Callable

import torch
from torch import Tensor, nn

from gentleclip.distributed import gather_paired_first, is_distributed, world_info
from gentleclip.losses.clip import CLIPLoss, check_embeddings, check_n_paired, upcast
from gentleclip.losses.density import SDDLoss, joint_squared_distances
from gentleclip.losses.gap import CentroidUniformityLoss, PairAlignmentLoss
from gentleclip.losses.mmd import MKMMDLoss
from gentleclip.losses.pseudo import PseudoNNLoss
from gentleclip.losses.sclip import SClipCaptionLoss, SClipKeywordLoss
from gentleclip.losses.selfsup import NTXentLoss

WEIGHT_FIELDS = ("clip", "sdd", "mmd", "ssl_a", "ssl_b", "align", "uniformity",
                 "sclip_caption", "sclip_keyword", "pseudo_nn")


@dataclass(frozen=True)
class ObjectiveConfig:
    """Weights and parameters of the objective (the default is CLIP only).

    Weights (each >= 0; a 0 weight switches the term off): ``clip`` (:class:`CLIPLoss` on the
    paired rows), ``sdd`` (:class:`SDDLoss` on all rows), ``mmd`` (:class:`MKMMDLoss` on all rows),
    ``ssl_a`` / ``ssl_b`` (:class:`NTXentLoss` between the rows of each modality and their second
    views), ``align`` (:class:`PairAlignmentLoss`), ``uniformity`` (:class:`CentroidUniformityLoss`),
    ``sclip_caption`` (:class:`~gentleclip.losses.sclip.SClipCaptionLoss`: OT soft pseudo-captions
    for the unpaired A rows), ``sclip_keyword`` (:class:`~gentleclip.losses.sclip.SClipKeywordLoss`:
    keyword pseudo-labels for the unpaired A rows; needs keyword inputs, see :class:`Objective`),
    ``pseudo_nn`` (:class:`~gentleclip.losses.pseudo.PseudoNNLoss`: hard nearest-neighbour
    pseudo-pairs between the unpaired rows); ``extra_weights`` holds the weights of terms
    registered elsewhere. The remaining fields are the parameters of those losses:

    * ``clip_unpaired_negatives``: the unpaired rows of the batch are extra negatives of the CLIP
      term (the design's default); ``False`` restricts CLIP to the pairs.
    * ``sclip_ot_epsilon`` (``None``: the temperature, as the S-CLIP code), ``sclip_ot_iter``
      (Sinkhorn iterations), ``sclip_support`` (``"a"``: OT cost against the paired A rows, S-CLIP's
      ``"ot-image"``; ``"b"``: against the paired B rows). The S-CLIP terms use ``temperature``.
    * ``pseudo_threshold`` (minimum cosine of a kept pseudo-pair, or ``None``), ``pseudo_mutual``
      (keep mutual nearest neighbours only). The pseudo-pair term uses ``temperature``.
    """

    clip: float = 1.0
    sdd: float = 0.0
    mmd: float = 0.0
    ssl_a: float = 0.0
    ssl_b: float = 0.0
    align: float = 0.0
    uniformity: float = 0.0
    sclip_caption: float = 0.0
    sclip_keyword: float = 0.0
    pseudo_nn: float = 0.0
    temperature: float = 0.05
    learnable_temperature: bool = False
    min_temperature: float = 0.01
    max_temperature: float = 1.0
    clip_unpaired_negatives: bool = True
    ssl_temperature: float = 0.05
    sdd_bandwidth: str | float = "variance"
    sdd_normalize: bool = True
    sdd_spread: str = "variance"
    mmd_kernel_num: int = 5
    mmd_kernel_mul: float = 2.0
    mmd_bandwidth: float | None = None
    mmd_unbiased: bool = False
    uniformity_t: float = 2.0
    sclip_ot_epsilon: float | None = None
    sclip_ot_iter: int = 10
    sclip_support: str = "a"
    pseudo_threshold: float | None = None
    pseudo_mutual: bool = False
    extra_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.extra_weights, dict):
            raise ValueError(f"ObjectiveConfig: extra_weights must be a dict of term name -> weight, "
                             f"got {type(self.extra_weights).__name__}")
        for name, w in [(n, getattr(self, n)) for n in WEIGHT_FIELDS] + list(self.extra_weights.items()):
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"ObjectiveConfig: weight {name!r} must be a finite number >= 0, got {w!r}")
        clash = set(self.extra_weights) & set(WEIGHT_FIELDS)
        if clash:
            raise ValueError(f"ObjectiveConfig: extra_weights repeats built-in weight(s) {sorted(clash)}; set the field")
        for name in ("temperature", "min_temperature", "max_temperature", "ssl_temperature", "uniformity_t",
                     "mmd_kernel_mul"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
                raise ValueError(f"ObjectiveConfig: {name} must be a positive number, got {v!r}")
        if not self.min_temperature <= self.temperature <= self.max_temperature:
            raise ValueError(
                f"ObjectiveConfig: temperature must lie in [min_temperature, max_temperature] = "
                f"[{self.min_temperature}, {self.max_temperature}], got {self.temperature}"
            )
        if isinstance(self.mmd_kernel_num, bool) or not isinstance(self.mmd_kernel_num, int) or self.mmd_kernel_num < 1:
            raise ValueError(f"ObjectiveConfig: mmd_kernel_num must be an integer >= 1, got {self.mmd_kernel_num!r}")
        if self.sdd_bandwidth != "variance" and (
            isinstance(self.sdd_bandwidth, (bool, str)) or not self.sdd_bandwidth > 0
        ):
            raise ValueError(f"ObjectiveConfig: sdd_bandwidth must be 'variance' or a positive float, "
                             f"got {self.sdd_bandwidth!r}")
        if self.mmd_bandwidth is not None and not self.mmd_bandwidth > 0:
            raise ValueError(f"ObjectiveConfig: mmd_bandwidth must be None or positive, got {self.mmd_bandwidth!r}")
        for name in ("learnable_temperature", "clip_unpaired_negatives", "sdd_normalize", "mmd_unbiased",
                     "pseudo_mutual"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ObjectiveConfig: {name} must be True or False, got {getattr(self, name)!r}")
        if self.sclip_support not in ("a", "b"):
            raise ValueError(f"ObjectiveConfig: sclip_support must be 'a' (paired A rows) or 'b' (paired B rows), "
                             f"got {self.sclip_support!r}")
        eps = self.sclip_ot_epsilon
        if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float))
                                or not math.isfinite(eps) or not eps > 0):
            raise ValueError(f"ObjectiveConfig: sclip_ot_epsilon must be None or a positive number, got {eps!r}")
        if isinstance(self.sclip_ot_iter, bool) or not isinstance(self.sclip_ot_iter, int) or self.sclip_ot_iter < 1:
            raise ValueError(f"ObjectiveConfig: sclip_ot_iter must be an integer >= 1, got {self.sclip_ot_iter!r}")
        thr = self.pseudo_threshold
        if thr is not None and (isinstance(thr, bool) or not isinstance(thr, (int, float))
                                or not -1.0 <= thr <= 1.0):
            raise ValueError(f"ObjectiveConfig: pseudo_threshold must be None or a cosine in [-1, 1], got {thr!r}")

    @classmethod
    def clip_only(cls, **overrides: Any) -> ObjectiveConfig:
        """CLIP on the pairs only (weight 1.0, temperature 0.05)."""
        return cls(**{"clip": 1.0, "temperature": 0.05, **overrides})

    @classmethod
    def gentle(cls, **overrides: Any) -> ObjectiveConfig:
        """Gentle-CLIP as designed: clip 1.0, sdd 0.6, mmd 0.2, ssl_a 0.1, ssl_b 0.1, temperature 0.05."""
        base = {"clip": 1.0, "sdd": 0.6, "mmd": 0.2, "ssl_a": 0.1, "ssl_b": 0.1, "temperature": 0.05}
        return cls(**{**base, **overrides})

    @classmethod
    def gentle_reference(cls, **overrides: Any) -> ObjectiveConfig:
        """The official Set-CLIP code's settings: clip 1.0, sdd 0.7, mmd 0.2, ssl_a 0.15, ssl_b 0.15,
        temperature 0.05; SDD on raw densities with the max-min spread; MMD with one RBF kernel of
        bandwidth 1; unpaired rows as CLIP negatives."""
        base = {"clip": 1.0, "sdd": 0.7, "mmd": 0.2, "ssl_a": 0.15, "ssl_b": 0.15, "temperature": 0.05,
                "sdd_normalize": False, "sdd_spread": "range", "mmd_kernel_num": 1, "mmd_bandwidth": 1.0,
                "clip_unpaired_negatives": True}
        return cls(**{**base, **overrides})

    def weight(self, name: str) -> float:
        """Weight of term ``name`` (a field, an ``extra_weights`` entry, or 0)."""
        if name in WEIGHT_FIELDS:
            return float(getattr(self, name))
        return float(self.extra_weights.get(name, 0.0))

    def enabled_terms(self) -> list[str]:
        """Names of the registered terms with a positive weight, in registry order."""
        return [name for name in _TERMS if self.weight(name) > 0]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        out = asdict(self)
        out["extra_weights"] = dict(self.extra_weights)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectiveConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise a ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ObjectiveConfig.from_dict: unknown key(s) {unknown}; expected a subset of {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class TermInputs:
    """What a term sees: the (global, paired-first) batch.

    ``za [Na, d]``, ``zb [Nb, d]``: rows ``0..n_paired-1`` are true pairs, then unpaired rows;
    ``za2`` / ``zb2``: second views of the rows of ``za`` / ``zb`` (same shapes) or None;
    ``paired_keywords [n_paired, K]``: multi-hot keywords of the caption(s) of each paired row, and
    ``z_keywords [K, d]``: the K keyword strings embedded by the B head (S-CLIP keyword term), or None.
    """

    za: Tensor
    zb: Tensor
    n_paired: int
    za2: Tensor | None = None
    zb2: Tensor | None = None
    paired_keywords: Tensor | None = None
    z_keywords: Tensor | None = None

    @cached_property
    def joint_d2(self) -> Tensor:
        """``squared_distances(cat([za, zb]), cat([za, zb]))`` ``[Na+Nb, Na+Nb]`` (half precision upcast to
        float32, autocast off), computed once per batch on first use and shared by the SDD and MMD terms."""
        with torch.autocast(device_type=self.za.device.type, enabled=False):
            return joint_squared_distances(upcast(self.za), upcast(self.zb))

    @property
    def unpaired_a(self) -> Tensor:
        """The unpaired rows of ``za``."""
        return self.za[self.n_paired:]

    @property
    def unpaired_b(self) -> Tensor:
        """The unpaired rows of ``zb``."""
        return self.zb[self.n_paired:]

    @property
    def paired_a(self) -> Tensor:
        """The paired rows of ``za``."""
        return self.za[: self.n_paired]

    @property
    def paired_b(self) -> Tensor:
        """The paired rows of ``zb``."""
        return self.zb[: self.n_paired]


class TermAdapter(nn.Module):
    """Wrap a loss module as a term: ``forward(batch)`` returns ``call(loss, batch)``.

    ``call`` should be a module-level function (not a lambda) if the objective must be pickled.
    """

    def __init__(self, loss: nn.Module, call: Callable[[nn.Module, TermInputs], Tensor]) -> None:
        super().__init__()
        self.loss = loss
        self._call = call

    def forward(self, batch: TermInputs) -> Tensor:
        return self._call(self.loss, batch)


TermFactory = Callable[[ObjectiveConfig], nn.Module]
_TERMS: dict[str, TermFactory] = {}


def register_term(name: str, factory: TermFactory | None = None, *, overwrite: bool = False):
    """Register a term factory under ``name`` (usable as a decorator); returns the factory.

    The factory builds an ``nn.Module`` from an :class:`ObjectiveConfig`; the module's
    ``forward(batch: TermInputs)`` returns a 0-dim tensor. Re-registering a name raises a
    ``ValueError`` unless ``overwrite=True``.
    """

    def _register(fn: TermFactory) -> TermFactory:
        if not isinstance(name, str) or not name.isidentifier() or name == "total":
            raise ValueError(f"register_term: name must be a Python identifier other than 'total', got {name!r}")
        if name in _TERMS and not overwrite:
            raise ValueError(f"register_term: a term named {name!r} is already registered")
        _TERMS[name] = fn
        return fn

    return _register(factory) if factory is not None else _register


def registered_terms() -> list[str]:
    """Names of all registered terms, in registration order."""
    return list(_TERMS)


def _clip_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.za, b.zb, b.n_paired)


def _sets_d2_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.za, b.zb, d2=b.joint_d2)  # the joint distance matrix is shared by SDD and MMD


def _ssl_a_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.za, _need_view(b.za2, "ssl_a", "za2"))


def _ssl_b_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.zb, _need_view(b.zb2, "ssl_b", "zb2"))


def _pairs_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.paired_a, b.paired_b)


def _need_view(view: Tensor | None, term: str, arg: str) -> Tensor:
    if view is None:
        raise ValueError(f"Objective: the {term!r} term has a positive weight but no second view was given; "
                         f"pass {arg}= (the second augmented view of each row) or set {term}=0")
    return view


def _sclip_caption_a_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.unpaired_a, b.paired_b, za_paired=b.paired_a)  # OT cost against the paired A rows


def _sclip_caption_b_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.unpaired_a, b.paired_b)  # OT cost against the paired B rows


def _sclip_keyword_call(loss: nn.Module, b: TermInputs) -> Tensor:
    if b.paired_keywords is None or b.z_keywords is None:
        raise ValueError("Objective: the 'sclip_keyword' term has a positive weight but no keywords were given; "
                         "pass paired_keywords= and z_keywords= (see gentleclip.keywords) or set sclip_keyword=0")
    return loss(b.unpaired_a, b.paired_a, b.paired_keywords, b.z_keywords)


def _unpaired_call(loss: nn.Module, b: TermInputs) -> Tensor:
    return loss(b.unpaired_a, b.unpaired_b)


def _build_clip(c: ObjectiveConfig) -> nn.Module:
    return TermAdapter(CLIPLoss(c.temperature, c.learnable_temperature, c.min_temperature, c.max_temperature,
                                unpaired_negatives=c.clip_unpaired_negatives), _clip_call)


def _build_sclip_caption(c: ObjectiveConfig) -> nn.Module:
    call = _sclip_caption_a_call if c.sclip_support == "a" else _sclip_caption_b_call
    return TermAdapter(SClipCaptionLoss(c.temperature, c.sclip_ot_epsilon, c.sclip_ot_iter), call)


register_term("clip", _build_clip)
register_term("sdd", lambda c: TermAdapter(SDDLoss(c.sdd_bandwidth, c.sdd_normalize, spread=c.sdd_spread), _sets_d2_call))
register_term("mmd", lambda c: TermAdapter(
    MKMMDLoss(c.mmd_kernel_mul, c.mmd_kernel_num, c.mmd_bandwidth, c.mmd_unbiased), _sets_d2_call))
register_term("ssl_a", lambda c: TermAdapter(NTXentLoss(c.ssl_temperature), _ssl_a_call))
register_term("ssl_b", lambda c: TermAdapter(NTXentLoss(c.ssl_temperature), _ssl_b_call))
register_term("align", lambda c: TermAdapter(PairAlignmentLoss(), _pairs_call))
register_term("uniformity", lambda c: TermAdapter(CentroidUniformityLoss(c.uniformity_t), _pairs_call))
register_term("sclip_caption", _build_sclip_caption)
register_term("sclip_keyword", lambda c: TermAdapter(SClipKeywordLoss(c.temperature), _sclip_keyword_call))
register_term("pseudo_nn", lambda c: TermAdapter(
    PseudoNNLoss(c.temperature, c.pseudo_threshold, c.pseudo_mutual), _unpaired_call))


class Objective(nn.Module):
    r"""Weighted sum of the enabled terms: :math:`L = \sum_k w_k L_k` over terms with :math:`w_k > 0`.

    ``forward(za, zb, n_paired, za2=None, zb2=None, paired_keywords=None, z_keywords=None)``
    returns ``(total, terms)`` where ``terms`` maps each enabled term name and ``"total"`` to a
    detached 0-dim tensor (unweighted term values; ``total`` is the weighted sum). CLIP uses the
    first ``n_paired`` rows as pairs and (unless ``clip_unpaired_negatives=False``) the rest as
    negatives; SDD and MMD use all rows; ``align`` / ``uniformity`` use the pairs; ``ssl_a`` /
    ``ssl_b`` need the second views ``za2`` / ``zb2``; ``sclip_caption`` uses the unpaired A rows
    and the pairs; ``pseudo_nn`` the unpaired rows of both sides; ``sclip_keyword`` (see
    :attr:`needs_keywords`) the unpaired A rows, the paired A rows, ``paired_keywords
    [n_paired, K]`` (multi-hot keywords of each paired row's caption(s), bool or 0/1) and
    ``z_keywords [K, d]`` (the keyword strings embedded by the B head).

    Under ``torch.distributed`` with more than one process, all inputs are first gathered over
    ranks with gradients and reordered so that all ranks' paired rows come first
    (:func:`gentleclip.distributed.gather_paired_first`); every rank must pass the same
    ``n_paired``, and every rank gets the loss of the global batch (``paired_keywords`` is
    gathered in the same order as the pairs; ``z_keywords`` must be the same on every rank). With
    DDP's gradient averaging,
    parameters then receive exactly the single-process gradient of the global batch (see
    :mod:`gentleclip.distributed`). Learnable parameters (e.g. the CLIP temperature) are
    parameters of this module: give them to the optimiser. ``gather_distributed=False`` computes
    the loss of the local batch only (e.g. for per-rank validation).
    """

    def __init__(self, config: ObjectiveConfig | None = None, gather_distributed: bool = True) -> None:
        super().__init__()
        self.gather_distributed = bool(gather_distributed)
        self.config = config if config is not None else ObjectiveConfig()
        if not isinstance(self.config, ObjectiveConfig):
            raise ValueError(f"Objective: expected an ObjectiveConfig, got {type(self.config).__name__}")
        unknown = sorted(set(self.config.extra_weights) - set(_TERMS))
        if unknown:
            raise ValueError(f"Objective: extra_weights names unregistered term(s) {unknown}; "
                             f"registered terms: {registered_terms()}")
        names = self.config.enabled_terms()
        if not names:
            raise ValueError("Objective: every term weight is 0; enable at least one term")
        self.weights = {name: self.config.weight(name) for name in names}
        self.losses = nn.ModuleDict({name: _TERMS[name](self.config) for name in names})

    @property
    def needs_keywords(self) -> bool:
        """True when an enabled term needs keyword inputs (``paired_keywords``, ``z_keywords``)."""
        return "sclip_keyword" in self.losses

    @property
    def temperature(self) -> Tensor | None:
        """Current CLIP temperature (None when the CLIP term is off)."""
        if "clip" not in self.losses:
            return None
        return self.losses["clip"].loss.temperature

    def forward(
        self,
        za: Tensor,
        zb: Tensor,
        n_paired: int,
        za2: Tensor | None = None,
        zb2: Tensor | None = None,
        paired_keywords: Tensor | None = None,
        z_keywords: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and detached per-term values for one (local) batch."""
        check_embeddings(za, zb, "Objective")
        n_paired = check_n_paired(n_paired, za, zb, "Objective")
        for view, ref, arg in ((za2, za, "za2"), (zb2, zb, "zb2")):
            if view is not None and (not isinstance(view, Tensor) or view.shape != ref.shape):
                raise ValueError(f"Objective: {arg} must have the shape of its first view "
                                 f"{tuple(ref.shape)}, got {tuple(getattr(view, 'shape', ()))}")
        for name, arg, view in (("ssl_a", "za2", za2), ("ssl_b", "zb2", zb2)):
            if name in self.losses:
                _need_view(view, name, arg)
        if self.needs_keywords and (paired_keywords is None or z_keywords is None):
            raise ValueError("Objective: the 'sclip_keyword' term has a positive weight; pass paired_keywords "
                             "[n_paired, K] and z_keywords [K, d] (see gentleclip.keywords) or set sclip_keyword=0")
        if paired_keywords is not None:
            if not isinstance(paired_keywords, Tensor) or paired_keywords.dim() != 2 or paired_keywords.shape[0] != n_paired:
                raise ValueError(f"Objective: paired_keywords must be a [n_paired={n_paired}, K] tensor, "
                                 f"got {tuple(getattr(paired_keywords, 'shape', ()))}")
            if z_keywords is not None and (not isinstance(z_keywords, Tensor) or z_keywords.dim() != 2
                                           or z_keywords.shape[0] != paired_keywords.shape[1]):
                raise ValueError(f"Objective: z_keywords must be [K={paired_keywords.shape[1]}, d], "
                                 f"got {tuple(getattr(z_keywords, 'shape', ()))}")
        if self.gather_distributed and is_distributed():
            if paired_keywords is not None:  # same rank order as the gathered pairs; z_keywords is replicated
                paired_keywords = gather_paired_first([paired_keywords.float()], n_paired)[0].detach()
            a_list = gather_paired_first([za] + ([za2] if za2 is not None else []), n_paired)
            b_list = gather_paired_first([zb] + ([zb2] if zb2 is not None else []), n_paired)
            n_paired = n_paired * world_info().world_size
            za, za2 = a_list[0], (a_list[1] if za2 is not None else None)
            zb, zb2 = b_list[0], (b_list[1] if zb2 is not None else None)
        batch = TermInputs(za, zb, n_paired, za2, zb2, paired_keywords, z_keywords)
        total: Tensor | None = None
        terms: dict[str, Tensor] = {}
        for name, term in self.losses.items():
            value = term(batch)
            terms[name] = value.detach()
            weighted = self.weights[name] * value
            total = weighted if total is None else total + weighted
        assert total is not None  # at least one term is enabled (checked in __init__)
        terms["total"] = total.detach()
        return total, terms

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={w:g}" for k, w in self.weights.items())
