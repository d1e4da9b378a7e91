"""Named alignment methods: each is a configuration of the core objective and of the data it sees.

Every benchmark selects methods by these names (``--methods clip,gentle``) so that all methods
share the same data, encoders, splits and training budget. A :class:`Method` says what it
optimises (an :class:`~gentleclip.losses.ObjectiveConfig`), which pools of the split it may read
(pairs always; unpaired A, unpaired B) and whether it needs the caption texts of the paired items
(S-CLIP keyword pseudo-labels). :func:`methods_markdown_table` renders the registry for the README.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gentleclip.losses import ObjectiveConfig

__all__ = ["Method", "register", "get_method", "available_methods", "methods_markdown_table", "with_config",
           "ablation_config", "preset", "PRESETS_PATH"]

@dataclass(frozen=True)
class Method:
    """A named method: the objective it optimises and which data it may see.

    What data it sees follows from its terms (each :class:`~gentleclip.losses.Term` says what it
    reads): ``uses_unpaired_a`` / ``uses_unpaired_b``, the unpaired pools of the split join training
    when a term reads them (otherwise the method sees the pairs only); ``uses_keywords``, a term
    needs the caption texts of the *paired* items (keyword pseudo-labels), so the task must give
    ``b_texts`` and ``encode_b_texts`` (see :class:`gentleclip.task.AlignmentTask`).
    ``reference`` names the source paper. ``tags`` mark e.g. ablations. ``tunable=False`` marks a
    fixed recipe that validation does not re-tune (``gentle-reference``): it gets early stopping on
    validation only.

    ``pipeline`` (optional) makes the method its own pipeline: an object whose
    ``build_heads(rows_a, rows_b, pairs, seed)`` fits the heads from the training rows the split lets
    the method see (e.g. :class:`gentleclip.sue.SUE`: spectral embeddings and CCA), instead of the
    default projection heads; the run then trains those heads under ``objective`` with the same
    batches, budget, validation and checkpoints as every method. Its ``options()`` join the run key,
    and ``search_space()`` (``{option: [values]}``) is what tuning selects among.
    """

    name: str
    description: str
    reference: str
    objective: ObjectiveConfig
    tags: tuple[str, ...] = field(default_factory=tuple)
    tunable: bool = True
    pipeline: Any = None
    ablation_of: str | None = None
    ablates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for label in ("name", "description", "reference"):
            value = getattr(self, label)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Method: {label} must be a non-empty string, got {value!r}")
        if not isinstance(self.objective, ObjectiveConfig):
            raise ValueError(f"Method {self.name!r}: objective must be an ObjectiveConfig, "
                             f"got {type(self.objective).__name__}")
        if bool(self.ablation_of) != bool(self.ablates):
            raise ValueError(f"Method {self.name!r}: an ablation needs both ablation_of and ablates")

    @property
    def uses_unpaired_a(self) -> bool:
        """A term of the method learns from unpaired A rows."""
        return "unpaired_a" in self.objective.reads()

    @property
    def uses_unpaired_b(self) -> bool:
        """A term of the method learns from unpaired B rows."""
        return "unpaired_b" in self.objective.reads()

    @property
    def uses_keywords(self) -> bool:
        """A term of the method needs keyword pseudo-labels of the paired captions."""
        return "keywords" in self.objective.reads()

    @property
    def uses(self) -> str:
        """Human-readable summary of the data the method learns from.

        ``"pairs only"``, ``"pairs + unpaired A"``, ``"pairs + unpaired B"``, ``"pairs + unpaired A + B"``,
        each followed by ``" + keywords of paired captions"`` for keyword methods.
        """
        if self.uses_unpaired_a and self.uses_unpaired_b:
            text = "pairs + unpaired A + B"
        elif self.uses_unpaired_a:
            text = "pairs + unpaired A"
        elif self.uses_unpaired_b:
            text = "pairs + unpaired B"
        else:
            text = "pairs only"
        return text + (" + keywords of paired captions" if self.uses_keywords else "")

    def objective_summary(self) -> str:
        """The weighted terms of the objective, e.g. ``"1 clip + 0.6 sdd + 0.2 mmd"``."""
        cfg = self.objective
        parts = [f"{cfg.weight(n):g} {n}" for n in cfg.enabled_terms()]
        text = " + ".join(parts)
        if cfg.weight("clip") > 0 and not cfg.clip_unpaired_negatives:
            text += " (CLIP without unpaired negatives)"
        return text


def _gentle(**overrides: float) -> ObjectiveConfig:
    return ObjectiveConfig.gentle(**overrides)


def _clip(**overrides: float) -> ObjectiveConfig:
    return ObjectiveConfig.clip_only(**overrides)


def _sue() -> Any:
    from gentleclip.sue import SUE

    return SUE()


SET_CLIP = "Gentle-CLIP / Set-CLIP, arXiv 2406.05766"
GAP = "Closing the Modality Gap Aligns Group-Wise Semantics, arXiv 2601.18525"
CLIP = "CLIP, Radford et al. 2021, arXiv 2103.00020"
SCLIP = "S-CLIP, Mo et al., NeurIPS 2023, arXiv 2305.14095"
STRUCTURE = "STRUCTURE, Gröger et al., NeurIPS 2025, arXiv 2506.16895"
SUE_PAPER = ("SUE, Yacobi, Ben-Ari, Talmon, Shaham, \"Learning Shared Representations from Unpaired Data\", "
             "NeurIPS 2025, arXiv 2505.21524 (code: github.com/shaham-lab/SUE)")
PSEUDO = "hard pseudo-labels, Lee 2013 (ICML-W); the naive pseudo-label baseline of S-CLIP, arXiv 2305.14095"

_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry (names must be unique)."""
    if method.name in _METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    _METHODS[method.name] = method
    return method


register(Method("clip", "CLIP loss on the paired rows only; at 0 pairs, the untrained heads", CLIP,
                ObjectiveConfig.clip_only()))
register(Method("gentle", "CLIP + SDD + MK-MMD + unimodal self-supervision (full Gentle-CLIP)", SET_CLIP,
                ObjectiveConfig.gentle()))
register(Method("gentle-reference", "Gentle-CLIP with the official code's exact settings: raw densities and "
                "max-min spread in SDD, one RBF kernel of bandwidth 1 in MMD, unpaired rows as CLIP negatives",
                SET_CLIP, ObjectiveConfig.gentle_reference(), tags=("reference",), tunable=False))
register(Method("gentle-no-sdd", "Gentle-CLIP without the SDD term", SET_CLIP, _gentle(sdd=0.0),
                tags=("ablation",), ablation_of="gentle", ablates=("sdd",)))
register(Method("gentle-no-mmd", "Gentle-CLIP without the MK-MMD term", SET_CLIP, _gentle(mmd=0.0),
                tags=("ablation",), ablation_of="gentle", ablates=("mmd",)))
register(Method("gentle-no-ssl", "Gentle-CLIP without the self-supervised terms", SET_CLIP,
                _gentle(ssl_a=0.0, ssl_b=0.0), tags=("ablation",), ablation_of="gentle", ablates=("ssl_a", "ssl_b")))
register(Method("sdd", "CLIP + SDD only (SDD alone on top of the pairs)", SET_CLIP,
                _gentle(mmd=0.0, ssl_a=0.0, ssl_b=0.0), tags=("ablation",), ablation_of="gentle",
                ablates=("mmd", "ssl_a", "ssl_b")))
register(Method("gap", "CLIP + modality-gap terms (true-pair alignment, centroid uniformity)", GAP,
                _clip(align=0.5, uniformity=0.5)))
register(Method("gentle+gap", "Gentle-CLIP + modality-gap terms", f"{SET_CLIP}; {GAP}",
                _gentle(align=0.5, uniformity=0.5)))
register(Method("s-clip", "CLIP + S-CLIP caption-level (optimal-transport soft targets over the paired captions) "
                "and keyword-level (partial-label) pseudo-labels for the unpaired A items", SCLIP,
                _clip(sclip_caption=0.5, sclip_keyword=0.5)))
register(Method("s-clip-caption", "S-CLIP with the caption-level pseudo-labels only (no keywords needed)", SCLIP,
                _clip(sclip_caption=0.5), tags=("ablation",)))
register(Method("pseudo-nn", "CLIP + InfoNCE on hard nearest-neighbour pseudo-pairs (unpaired A <-> unpaired B "
                "of the batch)", PSEUDO, _clip(pseudo_nn=0.5), tags=("baseline",)))
register(Method("structure", "CLIP + STRUCTURE (the multi-scale neighbourhoods of the frozen features kept in the "
                "joint space), on the pairs", STRUCTURE, _clip(structure=1.0)))
register(Method("sue", "SUE: a spectral embedding of each modality from all its training items, CCA on the pairs, "
                "then a residual network on A trained by multi-scale MMD to match B's distribution "
                "(gentleclip.sue; exact eigenvectors with the Nyström extension in place of SpectralNet)",
                SUE_PAPER, _clip(clip=0.0, mmd=1.0, mmd_kernel_num=3), pipeline=_sue()))
register(Method("gentle+structure", "Gentle-CLIP + STRUCTURE (which then also regularises the unpaired rows)",
                f"{SET_CLIP}; {STRUCTURE}", _gentle(structure=1.0)))


def get_method(name: str) -> Method:
    """Look a method up by name; unknown names raise a ValueError listing the known ones."""
    try:
        return _METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(_METHODS)}") from None


def available_methods() -> list[str]:
    """Names of all registered methods, in registration order."""
    return list(_METHODS)


def ablation_config(method: Method, base_config: dict[str, Any] | None) -> dict[str, Any]:
    """The configuration an ablation runs with: ``base_config`` (that of ``method.ablation_of``: its
    preset or selection, None = its registered default) with the ablated terms' weights set to 0."""
    if not method.ablation_of:
        raise ValueError(f"method {method.name!r} is not an ablation")
    cfg = dict(base_config or {})
    cfg["objective"] = {**cfg.get("objective", {}), **{term: 0.0 for term in method.ablates}}
    return cfg


def with_config(method: Method, objective: dict[str, Any] | None = None,
                pipeline: dict[str, Any] | None = None) -> Method:
    """``method`` with fields of its objective (and of its pipeline) replaced (e.g. what validation selected)."""
    if objective:
        try:
            method = replace(method, objective=method.objective.replace(**objective))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"method {method.name!r}: bad objective option(s) {sorted(objective)}: {exc}") from None
    if pipeline:
        if method.pipeline is None:
            raise ValueError(f"method {method.name!r} has no pipeline to set {sorted(pipeline)} on")
        try:
            method = replace(method, pipeline=replace(method.pipeline, **pipeline))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"method {method.name!r}: bad pipeline option(s) {sorted(pipeline)}: {exc}") from None
    return method


#: Configurations selected on validation data, shipped as the methods' presets per task
#: (written by ``--tune --write-presets``; see :mod:`gentleclip.app.tune`).
PRESETS_PATH = Path(__file__).with_name("presets.json")


def preset(task_name: str, method_name: str, path: Path | None = None) -> dict[str, Any] | None:
    """The selected configuration ``{"objective": {...}, "train": {...}, "selected_by": {...}}`` of
    ``method_name`` on ``task_name``, or None when none was selected."""
    p = PRESETS_PATH if path is None else Path(path)
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc})") from None
    return data.get(task_name, {}).get(method_name)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def methods_markdown_table(names: list[str] | None = None) -> str:
    """A Markdown table of the methods (all registered ones by default), for the README.

    Columns: ``method | what it optimises | data it uses | source``; "what it optimises" is the
    description followed by the weighted terms of the objective.
    """
    methods = [get_method(n) for n in (available_methods() if names is None else names)]
    lines = ["| method | what it optimises | data it uses | source |", "|---|---|---|---|"]
    for m in methods:
        what = f"{m.description}: `{m.objective_summary()}`"
        lines.append(f"| `{m.name}` | {_cell(what)} | {_cell(m.uses)} | {_cell(m.reference)} |")
    return "\n".join(lines) + "\n"
