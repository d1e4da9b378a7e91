"""The training objective: a weighted sum of named loss terms; every method is a configuration of it.

A term describes itself (:class:`Term`): its name (which is also its weight's name), its options
with their defaults and checks, which rows and inputs of the batch it reads (pairs, unpaired A,
unpaired B, second views, keywords), and how it is built from a configuration. The objective, the
methods registry (which pools a method sees) and the trainer (views, keyword inputs) learn all of
that from the term. The built-in terms are registered in :mod:`gentleclip.losses.terms`; to add a
loss, write its module and register one :class:`Term`::

    register_term(Term("my_term", build=lambda c: TermAdapter(MyLoss(c.my_scale), _call),
                       reads=("paired",), options={"my_scale": Option(1.0, positive)}))

and use it with ``ObjectiveConfig(clip=1.0, my_term=0.5, my_scale=2.0)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from gentleclip.distributed import gather_paired_first, is_distributed, world_info
from gentleclip.losses._checks import check_embeddings, check_n_paired, upcast
from gentleclip.losses.sdd import joint_squared_distances

__all__ = ["Option", "Term", "register_term", "registered_terms", "get_term", "registered_options", "ObjectiveConfig",
           "TermInputs", "TermAdapter", "Objective", "ROWS", "INPUTS"]

#: The rows of a batch a term may read, and the extra inputs it may need.
ROWS = ("paired", "unpaired_a", "unpaired_b")
INPUTS = ("views_a", "views_b", "keywords", "features_a", "features_b")


@dataclass(frozen=True)
class Option:
    """One option of a term: its default and a check (``check(value)`` returns an error text or None)."""

    default: Any
    check: Callable[[Any], str | None] = lambda value: None
    doc: str = ""


@dataclass(frozen=True)
class Term:
    """A loss term of the objective, self-described.

    Attributes:
        name: the term's name and the name of its weight (a Python identifier).
        build: ``build(config) -> nn.Module`` whose ``forward(batch: TermInputs)`` returns a 0-dim tensor.
        reads: the rows (:data:`ROWS`) it learns from and the inputs (:data:`INPUTS`) it needs; a
            method whose terms read ``unpaired_a`` sees the unpaired A pool, and so on.
        options: the options it takes (shared by name with other terms, e.g. ``temperature``).
        check: ``check(config)`` returns an error text or None, for rules that tie options together.
        doc: one line for the documentation.
    """

    name: str
    build: Callable[["ObjectiveConfig"], nn.Module]
    reads: tuple[str, ...] = ("paired",)
    options: Mapping[str, Option] = field(default_factory=dict)
    check: Callable[["ObjectiveConfig"], str | None] | None = None
    doc: str = ""


_TERMS: dict[str, Term] = {}
_OPTIONS: dict[str, Option] = {}


def register_term(term: Term, *, overwrite: bool = False) -> Term:
    """Add ``term`` to the registry (in order); re-registering a name raises unless ``overwrite``."""
    if not isinstance(term, Term):
        raise ValueError(f"register_term: expected a Term, got {type(term).__name__}")
    if not term.name.isidentifier() or term.name == "total":
        raise ValueError(f"register_term: name must be a Python identifier other than 'total', got {term.name!r}")
    if term.name in _TERMS and not overwrite:
        raise ValueError(f"register_term: a term named {term.name!r} is already registered")
    unknown = sorted(set(term.reads) - set(ROWS) - set(INPUTS))
    if unknown:
        raise ValueError(f"register_term: term {term.name!r} reads {unknown}; choose from {ROWS + INPUTS}")
    for name, option in term.options.items():
        if name in _TERMS or name == term.name:
            raise ValueError(f"register_term: option {name!r} of term {term.name!r} is the name of a term")
        known = _OPTIONS.get(name)
        if known is not None and known.default != option.default:
            raise ValueError(f"register_term: option {name!r} of term {term.name!r} has default {option.default!r}, "
                             f"but another term declares it with default {known.default!r}")
    if term.name in _OPTIONS:
        raise ValueError(f"register_term: {term.name!r} is already the name of an option")
    _TERMS[term.name] = term
    for name, option in term.options.items():
        _OPTIONS.setdefault(name, option)
    return term


def unregister_term(name: str) -> None:
    """Remove a registered term (and the options no other term declares)."""
    _TERMS.pop(name, None)
    used = {o for t in _TERMS.values() for o in t.options}
    for option in [o for o in _OPTIONS if o not in used]:
        del _OPTIONS[option]


def registered_terms() -> list[str]:
    """Names of all registered terms, in registration order."""
    return list(_TERMS)


def registered_options() -> dict[str, Option]:
    """Every option of a registered term, by name."""
    return dict(_OPTIONS)


def get_term(name: str) -> Term:
    """The registered term ``name``."""
    try:
        return _TERMS[name]
    except KeyError:
        raise ValueError(f"unknown term {name!r}; registered terms: {', '.join(_TERMS)}") from None


class ObjectiveConfig:
    """The weight of every term plus the options of the terms (the default is CLIP only).

    ``ObjectiveConfig(clip=1.0, sdd=0.6, temperature=0.1)``: each keyword is a registered term's
    name (its weight, >= 0; absent or 0 switches it off; ``clip`` defaults to 1) or one of their
    options (absent: the option's default). Both read back as attributes (``cfg.sdd``,
    ``cfg.temperature``); :meth:`replace` gives a changed copy. Every value is checked by the
    option that declares it. :meth:`to_dict` lists every weight and option.
    """

    __slots__ = ("weights", "options")

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(_TERMS) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"ObjectiveConfig: unknown key(s) {unknown}; terms: {', '.join(_TERMS)}; "
                             f"options: {', '.join(_OPTIONS)}")
        weights = {}
        for name in _TERMS:
            w = values.get(name, 1.0 if name == "clip" else 0.0)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"ObjectiveConfig: weight {name!r} must be a finite number >= 0, got {w!r}")
            weights[name] = float(w)
        options = {name: values.get(name, option.default) for name, option in _OPTIONS.items()}
        for name, option in _OPTIONS.items():
            problem = option.check(options[name])
            if problem:
                raise ValueError(f"ObjectiveConfig: {name} must be {problem}, got {options[name]!r}")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "options", options)
        for term in _TERMS.values():
            problem = term.check(self) if term.check is not None else None
            if problem:
                raise ValueError(f"ObjectiveConfig: {problem}")

    def __getattr__(self, name: str) -> Any:
        if name in ObjectiveConfig.__slots__:
            raise AttributeError(name)
        if name in self.weights:
            return self.weights[name]
        if name in self.options:
            return self.options[name]
        raise AttributeError(f"ObjectiveConfig has no term or option {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ObjectiveConfig is immutable; use .replace(...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectiveConfig) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self.to_dict().items())))

    def __repr__(self) -> str:
        weights = ", ".join(f"{k}={v:g}" for k, v in self.weights.items() if v > 0)
        changed = ", ".join(f"{k}={v!r}" for k, v in self.options.items() if v != _OPTIONS[k].default)
        return f"ObjectiveConfig({weights}{', ' if changed else ''}{changed})"

    def __reduce__(self):  # pickling (e.g. inside a checkpoint's config) goes through the flat dict
        return (ObjectiveConfig.from_dict, (self.to_dict(),))

    def replace(self, **changes: Any) -> "ObjectiveConfig":
        """A copy with some weights or options changed."""
        return ObjectiveConfig(**{**self.to_dict(), **changes})

    @classmethod
    def keys(cls) -> list[str]:
        """Every key a configuration takes: the registered terms, then their options."""
        return list(_TERMS) + list(_OPTIONS)

    @classmethod
    def clip_only(cls, **overrides: Any) -> "ObjectiveConfig":
        """CLIP on the pairs only (weight 1.0, temperature 0.05)."""
        return cls(**{"clip": 1.0, "temperature": 0.05, **overrides})

    @classmethod
    def gentle(cls, **overrides: Any) -> "ObjectiveConfig":
        """Gentle-CLIP as designed: clip 1.0, sdd 0.6, mmd 0.2, ssl_a 0.1, ssl_b 0.1, temperature 0.05."""
        base = {"clip": 1.0, "sdd": 0.6, "mmd": 0.2, "ssl_a": 0.1, "ssl_b": 0.1, "temperature": 0.05}
        return cls(**{**base, **overrides})

    @classmethod
    def gentle_reference(cls, **overrides: Any) -> "ObjectiveConfig":
        """The official Set-CLIP code's settings: clip 1.0, sdd 0.7, mmd 0.2, ssl_a 0.15, ssl_b 0.15,
        temperature 0.05; SDD on raw densities with the max-min spread; MMD with one RBF kernel of
        bandwidth 1; unpaired rows as CLIP negatives."""
        base = {"clip": 1.0, "sdd": 0.7, "mmd": 0.2, "ssl_a": 0.15, "ssl_b": 0.15, "temperature": 0.05,
                "sdd_normalize": False, "sdd_spread": "range", "mmd_kernel_num": 1, "mmd_bandwidth": 1.0,
                "clip_unpaired_negatives": True}
        return cls(**{**base, **overrides})

    def weight(self, name: str) -> float:
        """Weight of term ``name`` (0 for a term that is not registered)."""
        return float(self.weights.get(name, 0.0))

    def enabled_terms(self) -> list[str]:
        """Names of the registered terms with a positive weight, in registry order."""
        return [name for name in _TERMS if self.weight(name) > 0]

    def reads(self) -> set[str]:
        """Everything the enabled terms read: rows (:data:`ROWS`) and inputs (:data:`INPUTS`)."""
        return {r for name in self.enabled_terms() for r in _TERMS[name].reads}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every weight and option."""
        return {**self.weights, **self.options}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ObjectiveConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise a ``ValueError`` naming them."""
        return cls(**dict(data))


@dataclass(frozen=True)
class TermInputs:
    """What a term sees: the (global, paired-first) batch.

    ``za [Na, d]``, ``zb [Nb, d]``: rows ``0..n_paired-1`` are true pairs, then unpaired rows;
    ``za2`` / ``zb2``: second views of the rows of ``za`` / ``zb`` (same shapes) or None;
    ``paired_keywords [n_paired, K]``: multi-hot keywords of the caption(s) of each paired row, and
    ``z_keywords [K, d]``: the K keyword strings embedded by the B head (S-CLIP keyword term), or None;
    ``xa [Na, Da]`` / ``xb [Nb, Db]``: the frozen-encoder features of the rows of ``za`` / ``zb`` (the
    heads' inputs; STRUCTURE), or None.
    """

    za: Tensor
    zb: Tensor
    n_paired: int
    za2: Tensor | None = None
    zb2: Tensor | None = None
    paired_keywords: Tensor | None = None
    z_keywords: Tensor | None = None
    fused: bool | None = None
    xa: Tensor | None = None
    xb: Tensor | None = None

    @cached_property
    def joint_d2(self) -> Tensor:
        """``squared_distances(cat([za, zb]), cat([za, zb]))`` ``[Na+Nb, Na+Nb]`` (half precision upcast to
        float32, autocast off), computed once per batch on first use and shared by the SDD and MMD terms
        (``fused``: the loss option ``fused_kernels``)."""
        with torch.autocast(device_type=self.za.device.type, enabled=False):
            return joint_squared_distances(upcast(self.za), upcast(self.zb), fused=self.fused)

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


def need_view(view: Tensor | None, term: str, arg: str) -> Tensor:
    """``view``, or a clear error when the term ``term`` needs the second view ``arg`` and none was given."""
    if view is None:
        raise ValueError(f"Objective: the {term!r} term has a positive weight but no second view was given; "
                         f"pass {arg}= (the second augmented view of each row) or set {term}=0")
    return view


class TermAdapter(nn.Module):
    """Wrap a loss module as a term: ``forward(batch)`` returns ``call(loss, batch)``.

    ``call`` should be a module-level function (not a lambda) if the objective must be pickled.
    """

    def __init__(self, loss: nn.Module, call: Callable[[nn.Module, TermInputs], Tensor]) -> None:
        super().__init__()
        self.loss = loss
        self._call = call

    def forward(self, batch: TermInputs) -> Tensor:
        """The term's value on ``batch`` (a 0-dim tensor)."""
        return self._call(self.loss, batch)


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
        names = self.config.enabled_terms()
        if not names:
            raise ValueError("Objective: every term weight is 0; enable at least one term")
        self.weights = {name: self.config.weight(name) for name in names}
        self.losses = nn.ModuleDict({name: _TERMS[name].build(self.config) for name in names})

    @property
    def needs_keywords(self) -> bool:
        """True when an enabled term reads keyword inputs (``paired_keywords``, ``z_keywords``)."""
        return "keywords" in self.config.reads()

    @property
    def needs_features(self) -> bool:
        """True when an enabled term reads the frozen features of the rows (``xa`` / ``xb``)."""
        return bool({"features_a", "features_b"} & self.config.reads())

    @property
    def needs_views(self) -> bool:
        """True when an enabled term reads the second views (``za2`` / ``zb2``)."""
        return bool({"views_a", "views_b"} & self.config.reads())

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
        xa: Tensor | None = None,
        xb: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and detached per-term values for one (local) batch."""
        check_embeddings(za, zb, "Objective")
        n_paired = check_n_paired(n_paired, za, zb, "Objective")
        for view, ref, arg in ((za2, za, "za2"), (zb2, zb, "zb2")):
            if view is not None and (not isinstance(view, Tensor) or view.shape != ref.shape):
                raise ValueError(f"Objective: {arg} must have the shape of its first view "
                                 f"{tuple(ref.shape)}, got {tuple(getattr(view, 'shape', ()))}")
        for name in self.losses:
            for need, arg, view in (("views_a", "za2", za2), ("views_b", "zb2", zb2)):
                if need in _TERMS[name].reads:
                    need_view(view, name, arg)
            for need, arg, feats in (("features_a", "xa", xa), ("features_b", "xb", xb)):
                if need in _TERMS[name].reads and feats is None:
                    raise ValueError(f"Objective: the {name!r} term has a positive weight but no frozen features "
                                     f"were given; pass {arg}= (the heads' inputs of the rows) or set {name}=0")
            if "keywords" in _TERMS[name].reads and (paired_keywords is None or z_keywords is None):
                raise ValueError(f"Objective: the {name!r} term has a positive weight; pass paired_keywords "
                                 f"[n_paired, K] and z_keywords [K, d] (see gentleclip.keywords) or set {name}=0")
        if paired_keywords is not None:
            if not isinstance(paired_keywords, Tensor) or paired_keywords.dim() != 2 \
                    or paired_keywords.shape[0] != n_paired:
                raise ValueError(f"Objective: paired_keywords must be a [n_paired={n_paired}, K] tensor, "
                                 f"got {tuple(getattr(paired_keywords, 'shape', ()))}")
            if z_keywords is not None and (not isinstance(z_keywords, Tensor) or z_keywords.dim() != 2
                                           or z_keywords.shape[0] != paired_keywords.shape[1]):
                raise ValueError(f"Objective: z_keywords must be [K={paired_keywords.shape[1]}, d], "
                                 f"got {tuple(getattr(z_keywords, 'shape', ()))}")
        for feats, ref, arg in ((xa, za, "xa"), (xb, zb, "xb")):
            if feats is not None and (not isinstance(feats, Tensor) or feats.dim() != 2 or len(feats) != len(ref)):
                raise ValueError(f"Objective: {arg} must hold the frozen features [{len(ref)}, D] of the rows, "
                                 f"got {tuple(getattr(feats, 'shape', ()))}")
        if self.gather_distributed and is_distributed():
            if paired_keywords is not None:  # same rank order as the gathered pairs; z_keywords is replicated
                paired_keywords = gather_paired_first([paired_keywords.float()], n_paired)[0].detach()
            if xa is not None:
                xa = gather_paired_first([xa.float()], n_paired)[0].detach()
            if xb is not None:
                xb = gather_paired_first([xb.float()], n_paired)[0].detach()
            a_list = gather_paired_first([za] + ([za2] if za2 is not None else []), n_paired)
            b_list = gather_paired_first([zb] + ([zb2] if zb2 is not None else []), n_paired)
            n_paired = n_paired * world_info().world_size
            za, za2 = a_list[0], (a_list[1] if za2 is not None else None)
            zb, zb2 = b_list[0], (b_list[1] if zb2 is not None else None)
        batch = TermInputs(za, zb, n_paired, za2, zb2, paired_keywords, z_keywords, self.config.fused_kernels,
                           xa, xb)
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
        """The settings shown in ``repr(module)``."""
        return ", ".join(f"{k}={w:g}" for k, w in self.weights.items())
