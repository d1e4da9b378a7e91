"""A trained model together with its frozen encoders: embed *raw* items (sequences, images, texts).

An :class:`~gentleclip.model.AlignmentModel` trained over cached features maps *feature vectors*
into the joint space. A :class:`Pipeline` adds the two frozen encoders that made those features,
so that new raw items can be embedded, compared and retrieved::

    from gentleclip import load_pipeline
    pipe = load_pipeline("runs/protein")                  # config + both heads + encoders rebuilt
    z = pipe.embed_a(["MKTAYIAKQRQISFVKSHFSRQ"])          # [1, d] joint-space embedding
    pipe.retrieve(["MKTAYIAKQRQISFVKSHFSRQ"], ["This protein is found in the nucleus.", ...], k=3)

Saving: ``Pipeline(model, encoder_a, encoder_b, domain="protein").save(dir)`` (or
``gentleclip train``) writes ``config.json`` + ``model.safetensors`` with
:meth:`~gentleclip.model.AlignmentModel.save_pretrained`, and puts under the config's ``"extra"``
-> ``"pipeline"`` a *recipe* for each encoder: its class as ``"module:Class"`` and the constructor
arguments its own ``recipe()`` method gives, plus its ``identity``.
:func:`load_pipeline` rebuilds the encoders from the recipes and warns when a rebuilt encoder's
identity differs from the saved one (other weights or preprocessing: the heads would be fed
features they were not trained on). Encoders that cannot be described (a custom object, an
ESM model passed as an ``nn.Module``, timm weights from a file whose path was not given) are
saved without a recipe; pass them to :func:`load_pipeline` (``encoder_a=...``).

Encoders built from recipes are kept in a small in-process memo (:func:`build_encoder`), so loading
several pipelines, or training and then loading in one notebook, loads MiniLM once.

The engine names no encoder class: a recipe's factory is imported by its saved dotted name.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from gentleclip.domain import get_domain, import_object

__all__ = [
    "Pipeline",
    "load_pipeline",
    "encoder_recipe",
    "build_encoder",
    "EncoderMismatchWarning",
    "PIPELINE_KEY",
]

#: Key of the pipeline block inside ``config.json["extra"]``.
PIPELINE_KEY = "pipeline"
PIPELINE_FORMAT = 1

_MEMO: dict[str, Any] = {}


class EncoderMismatchWarning(UserWarning):
    """A rebuilt encoder's identity differs from the one the model was trained with."""


# ---------------------------------------------------------------------------- recipes
def encoder_recipe(encoder: Any, **overrides: Any) -> dict[str, Any]:
    """Describe a frozen encoder so that :func:`build_encoder` can rebuild it.

    The encoder describes itself: ``encoder.recipe(**overrides)`` returns the constructor arguments
    that rebuild it, or None when it cannot be rebuilt from a description (then it must be passed to
    :func:`load_pipeline`). Returns ``{"factory", "kwargs", "class", "name", "identity", "dim"}``;
    ``factory`` is the encoder's class as ``"module:Class"``. ``overrides`` replace constructor
    arguments that the object does not expose (e.g. ``weights="/path/r50.pth"`` of an image encoder).
    """
    cls = type(encoder)
    describe = getattr(encoder, "recipe", None)
    kwargs = describe(**overrides) if callable(describe) else None
    return {
        "factory": f"{cls.__module__}:{cls.__qualname__}" if kwargs is not None else None,
        "kwargs": dict(kwargs) if kwargs is not None else {},
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "name": str(getattr(encoder, "name", cls.__name__)),
        "identity": str(getattr(encoder, "identity", "")),
        "dim": int(getattr(encoder, "dim", 0) or 0),
    }


def _takes_device(factory: Any) -> bool:
    import inspect

    try:
        return "device" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False


def build_encoder(recipe: Mapping[str, Any], device: str | None = None, memo: bool = True) -> Any:
    """Build an encoder from a recipe ``{"factory": "module:callable", "kwargs": {...}}`` (as
    :func:`encoder_recipe` writes it), memoised in-process when ``memo``. ``device`` is passed to a
    factory that takes one."""
    name = recipe.get("factory")
    if not name:
        raise ValueError(
            f"encoder {recipe.get('name')!r} ({recipe.get('class')}) cannot be rebuilt from the saved config; "
            "pass it explicitly (load_pipeline(dir, encoder_a=... / encoder_b=...))"
        )
    try:
        factory = import_object(str(name))
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"encoder factory {name!r} of the saved recipe cannot be imported ({exc}); install the "
                         "package that defines it") from None
    kwargs = dict(recipe.get("kwargs") or {})
    with_device = device is not None and _takes_device(factory)
    if with_device:
        kwargs["device"] = device
    key = _memo_key(str(name), kwargs)
    if memo and key in _MEMO:
        return _MEMO[key]
    encoder = factory(**kwargs)
    if memo:
        _MEMO[key] = encoder
        # also under its full description, so that loading a model saved with this encoder finds it
        full = encoder_recipe(encoder)
        if full["factory"]:
            full_kwargs = dict(full["kwargs"])
            if with_device:
                full_kwargs["device"] = device
            _MEMO.setdefault(_memo_key(full["factory"], full_kwargs), encoder)
    return encoder


def _memo_key(factory: str, kwargs: Mapping[str, Any]) -> str:
    return json.dumps([factory, {k: v for k, v in kwargs.items() if not (k == "device" and v is None)}],
                      sort_keys=True, default=str)


def clear_encoder_memo() -> None:
    """Forget the encoders kept by :func:`build_encoder` (frees their memory)."""
    _MEMO.clear()


# ---------------------------------------------------------------------------- pipeline
def _modality_names(domain: str | None) -> tuple[str, str]:
    """The registered domain's modality names, or ``("a", "b")`` for an unregistered label."""
    if domain:
        try:
            return tuple(get_domain(domain).modality_names)  # type: ignore[return-value]
        except ValueError:
            pass
    return ("a", "b")


def _as_list(items: Any) -> list:
    if isinstance(items, (str, bytes, os.PathLike)):
        return [items]
    return list(items)


class Pipeline:
    """An :class:`~gentleclip.model.AlignmentModel` with the two frozen encoders of its features.

    Args:
        model: the trained model (heads over cached features).
        encoder_a, encoder_b: ``FeatureEncoder`` s of side A and side B.
        domain: a registered domain's name, or any label (stored with the model).
        modality_names: display names of A and B (default from the domain).
        recipe_a, recipe_b: override the saved encoder recipes (default :func:`encoder_recipe`).
        config: extra settings saved with the model (e.g. the run configuration).
    """

    def __init__(
        self,
        model: Any,
        encoder_a: Any,
        encoder_b: Any,
        domain: str | None = None,
        modality_names: tuple[str, str] | None = None,
        recipe_a: Mapping[str, Any] | None = None,
        recipe_b: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.encoder_a = encoder_a
        self.encoder_b = encoder_b
        self.domain = domain
        self.modality_names = tuple(modality_names or _modality_names(domain))
        self._recipe_a = dict(recipe_a) if recipe_a is not None else None
        self._recipe_b = dict(recipe_b) if recipe_b is not None else None
        self.config = dict(config or {})
        for side, enc, head in (("a", encoder_a, model.head_a), ("b", encoder_b, model.head_b)):
            dim, in_dim = getattr(enc, "dim", None), getattr(head, "in_dim", None)
            if dim is not None and in_dim is not None and int(dim) != int(in_dim):
                raise ValueError(f"Pipeline: encoder_{side} {getattr(enc, 'name', '')!r} gives {dim}-dim features "
                                 f"but head_{side} takes {in_dim}")

    def __repr__(self) -> str:
        a, b = (getattr(e, "name", type(e).__name__) for e in (self.encoder_a, self.encoder_b))
        return (f"Pipeline(domain={self.domain!r}, {self.modality_names[0]}={a!r}, {self.modality_names[1]}={b!r}, "
                f"dim={getattr(self.model.head_a, 'out_dim', '?')})")

    @classmethod
    def from_adapter(cls, model: Any, adapter: Any, **kwargs: Any) -> "Pipeline":
        """Take the encoders (and the domain) of a registered domain's adapter (its ``domain`` attribute)."""
        name = getattr(adapter, "domain", None)
        if not isinstance(name, str):
            raise ValueError(f"Pipeline.from_adapter: {type(adapter).__name__} has no 'domain' attribute naming "
                             "a registered domain; build the Pipeline from its encoders instead")
        encoder_a, encoder_b = get_domain(name).encoders_of(adapter)
        return cls(model, encoder_a, encoder_b, kwargs.pop("domain", name), **kwargs)

    # ------------------------------------------------------------------ embedding
    def features_a(self, items: Any) -> np.ndarray:
        """Frozen-encoder features ``[n, D_a]`` of raw A items (clean view)."""
        return np.asarray(self.encoder_a.encode(_as_list(items), view=0), dtype=np.float32)

    def features_b(self, items: Any) -> np.ndarray:
        """Frozen-encoder features ``[n, D_b]`` of raw B items (clean view)."""
        return np.asarray(self.encoder_b.encode(_as_list(items), view=0), dtype=np.float32)

    def embed_a(self, items: Any) -> np.ndarray:
        """Joint-space embeddings ``[n, d]`` (L2-normalised) of raw A items (sequences / image paths)."""
        return self._embed("a", items)

    def embed_b(self, items: Any) -> np.ndarray:
        """Joint-space embeddings ``[n, d]`` of raw B items (texts)."""
        return self._embed("b", items)

    def _embed(self, side: str, items: Any) -> np.ndarray:
        from gentleclip.finetune import embed_items, is_tower

        tower = getattr(self.model, f"encoder_{side}", None)
        if is_tower(tower):  # a fine-tuned encoder: its tower, then the head
            return embed_items(tower, getattr(self.model, f"head_{side}"), _as_list(items))
        features = self.features_a(items) if side == "a" else self.features_b(items)
        return self.model.encode_a(features) if side == "a" else self.model.encode_b(features)

    def similarity(self, items_a: Any, items_b: Any) -> np.ndarray:
        """Cosine similarities ``[n_a, n_b]`` between raw A items and raw B items."""
        return self.embed_a(items_a) @ self.embed_b(items_b).T

    def retrieve(self, queries_a: Any, candidates_b: Sequence[Any], k: int = 5) -> list[list[tuple[Any, float]]]:
        """For each A query, the ``k`` best B candidates as ``(candidate, cosine)``, best first."""
        candidates = _as_list(candidates_b)
        if not candidates:
            raise ValueError("retrieve: no candidates given")
        sims = self.similarity(queries_a, candidates)
        k = min(int(k), len(candidates))
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return [[(candidates[j], float(sims[i, j])) for j in row] for i, row in enumerate(order)]

    # ------------------------------------------------------------------ persistence
    def recipes(self) -> dict[str, dict[str, Any]]:
        """The encoder recipes saved with the model (see :func:`encoder_recipe`)."""
        return {"a": self._recipe_a or encoder_recipe(self.encoder_a),
                "b": self._recipe_b or encoder_recipe(self.encoder_b)}

    def save(self, directory: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
        """``model.save_pretrained(directory)`` with the pipeline block (domain, encoder recipes, config)."""
        block = {"format": PIPELINE_FORMAT, "domain": self.domain, "modality_names": list(self.modality_names),
                 "encoders": self.recipes(), "config": self.config}
        return self.model.save_pretrained(directory, extra_config={**dict(extra or {}), PIPELINE_KEY: block})


def load_pipeline(
    directory: str | os.PathLike,
    encoder_a: Any | None = None,
    encoder_b: Any | None = None,
    device: str | None = None,
) -> Pipeline:
    """Load a model saved by :meth:`Pipeline.save` or ``gentleclip train`` and rebuild its encoders.

    ``encoder_a``/``encoder_b`` replace the saved recipes (required for encoders saved without
    one). ``device``: where the encoders and heads run (default: CPU for the heads, the
    encoders' own default). A rebuilt encoder whose identity differs from the saved one triggers
    an :class:`EncoderMismatchWarning`.
    """
    from gentleclip.model import AlignmentModel

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"load_pipeline: model folder {directory} does not exist")
    config = AlignmentModel.load_config(directory)
    block = (config.get("extra") or {}).get(PIPELINE_KEY)
    if block is None and (encoder_a is None or encoder_b is None):
        raise ValueError(
            f"load_pipeline: {directory / 'config.json'} has no '{PIPELINE_KEY}' block (the model was saved with "
            "AlignmentModel.save_pretrained, not Pipeline.save / gentleclip train); pass encoder_a= and encoder_b="
        )
    block = block or {"encoders": {}}
    encoders, towers = [], {}
    saved = config.get("encoders") or {}
    finetuned = {side for side, e in saved.items() if (e or {}).get("saved")}  # weights in model.safetensors
    as_tower = finetuned | {side for side, e in saved.items() if (e or {}).get("tower")}  # trained end-to-end
    for side, given in (("a", encoder_a), ("b", encoder_b)):
        recipe = block["encoders"].get(side) or {}
        if given is not None:
            enc = given
        else:
            # a fine-tuned encoder is rebuilt fresh (no memo: its weights are about to change)
            enc = build_encoder(recipe, device=device, memo=side not in finetuned)
        if side in as_tower:  # its tower receives the fine-tuned weights (shared with the encoder)
            if not hasattr(enc, "tower"):
                raise ValueError(f"load_pipeline: {directory} holds fine-tuned weights for encoder_{side}, but "
                                 f"{type(enc).__name__} has no tower to load them into")
            towers[side] = enc.tower()
            encoders.append(enc)
            continue
        saved_id, new_id = recipe.get("identity"), getattr(enc, "identity", None)
        if saved_id and new_id and saved_id != new_id:
            warnings.warn(
                f"load_pipeline({directory}): encoder_{side} {getattr(enc, 'name', '')!r} has identity {new_id!r}, "
                f"but the model was trained on features of {saved_id!r}; its embeddings may be meaningless",
                EncoderMismatchWarning, stacklevel=2,
            )
        encoders.append(enc)
    model = AlignmentModel.from_pretrained(directory, encoder_a=towers.get("a"), encoder_b=towers.get("b"),
                                           map_location=device or "cpu")
    if towers:
        from gentleclip.finetune import mark_finetuned

        for side, tower in towers.items():
            tower.eval()
            mark_finetuned(tower)  # its identity now names the fine-tuned weights
    names = block.get("modality_names")
    return Pipeline(model, encoders[0], encoders[1], domain=block.get("domain"),
                    modality_names=tuple(names) if names else None, config=block.get("config"),
                    recipe_a=block["encoders"].get("a") if encoder_a is None else None,
                    recipe_b=block["encoders"].get("b") if encoder_b is None else None)
