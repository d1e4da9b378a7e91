"""End-to-end training: what of each encoder to fine-tune, and the encoder towers that train from raw items.

An *encoder tower* is the trainable face of a frozen feature encoder (``TextEncoder.tower()``,
``ESMEncoder.tower()``, ``ImageEncoder.tower()``, the open_clip towers). It is an ``nn.Module`` over the
*same* weights as its encoder, so fine-tuning the tower fine-tunes the encoder and a saved pipeline
embeds new items with the fine-tuned weights. It has:

* ``dim``: the width of its features (the projection head's input);
* ``collate(items, views) -> inputs``: the encoder's inputs (token ids, pixels) for raw items at given
  views (view 0 the clean item, others seeded random augmentations); it runs in ``DataLoader``
  workers, so it is picklable and reads nothing but its arguments;
* ``forward(inputs) -> [n, dim]``: pooled features, with gradients where parameters are trainable;
  for view-0 inputs equal to the frozen encoder's ``encode`` (tested per encoder).

:class:`EncoderTower` keeps every sub-module without trainable parameters in eval mode while training,
so frozen blocks neither update batch-norm statistics nor add dropout noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["FinetuneConfig", "EndToEnd", "EncoderTower", "TRAINABLE_CHOICES", "parse_trainable", "embed_items",
           "mark_finetuned", "is_tower"]

#: What of an encoder trains: nothing (frozen, cached features), everything, or its last k blocks ("last2").
TRAINABLE_CHOICES = ("frozen", "all", "lastK")


def parse_trainable(value: str | int | None, side: str = "a") -> int | None | bool:
    """``"frozen"`` -> False, ``"all"`` -> None (every layer), ``"last2"`` / ``2`` -> 2 (the last 2 blocks)."""
    if value is None or value is False or value == "frozen":
        return False
    if value == "all":
        return None
    text = str(value)
    if text.startswith("last"):
        text = text[4:]
    try:
        k = int(text)
    except ValueError:
        raise ValueError(f"finetune.{side}: expected 'frozen', 'all' or 'lastK' (e.g. last2), got {value!r}") from None
    if k < 1:
        raise ValueError(f"finetune.{side}: the number of blocks to train must be >= 1, got {value!r}")
    return k


@dataclass
class FinetuneConfig:
    """What of each encoder to train end-to-end from raw items.

    ``a`` / ``b``: ``"frozen"`` (the default: projection heads over cached features), ``"all"`` or
    ``"lastK"`` (the last K blocks, e.g. ``"last2"``). The encoders learn at ``TrainConfig.lr *
    TrainConfig.encoder_lr_ratio`` (1/100 by default, as the official Set-CLIP code). On a GPU,
    ``gradient_checkpointing`` trades compute for activation memory in the towers that support it
    (transformers models), and ``TrainConfig.amp`` runs bf16/fp16 autocast.
    """

    a: str = "frozen"
    b: str = "frozen"
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        parse_trainable(self.a, "a")
        parse_trainable(self.b, "b")

    @property
    def active(self) -> bool:
        """True when an encoder trains (the run then reads raw items)."""
        return parse_trainable(self.a, "a") is not False or parse_trainable(self.b, "b") is not False

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for run configs and run keys)."""
        return {"a": self.a, "b": self.b, "gradient_checkpointing": self.gradient_checkpointing}


@dataclass
class EndToEnd:
    """How a run trains end-to-end: the two encoder towers and what of them trains (``config``). Every run
    trains its own copy of the towers, from their pretrained weights."""

    towers: tuple[Any, Any]
    config: FinetuneConfig

    def __post_init__(self) -> None:
        if len(self.towers) != 2 or not all(is_tower(t) for t in self.towers):
            raise ValueError("EndToEnd: towers must be the two encoder towers (nn.Modules with collate)")
        if not self.config.active:
            raise ValueError("EndToEnd: the finetune config trains neither encoder (a and b are 'frozen')")


class EncoderTower(nn.Module):
    """Base of the encoder towers (see the module docstring): the train-mode rule for frozen blocks."""

    dim: int

    def collate(self, items: list, views: np.ndarray) -> Any:  # pragma: no cover - interface
        """The encoder's inputs for ``items`` at ``views``."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> "EncoderTower":
        """Train mode for the sub-modules that hold trainable parameters; the frozen rest stays in eval."""
        super().train(mode)
        if mode:
            for module in self.modules():
                if module is not self and not any(p.requires_grad for p in module.parameters()):
                    module.eval()
        return self

    def enable_gradient_checkpointing(self) -> bool:
        """Switch on activation checkpointing where the wrapped model supports it; True when it did."""
        model = getattr(self, "model", None)
        for name in ("activation_checkpointing_enable", "gradient_checkpointing_enable"):  # transformers >= 5, < 5
            if model is not None and hasattr(model, name):
                getattr(model, name)()
                return True
        return False


def embed_items(encoder: nn.Module, head: nn.Module, items: list, batch_size: int = 64) -> np.ndarray:
    """Joint-space embeddings of raw ``items`` through a tower (view 0, eval mode, no gradients) and a head."""
    from gentleclip.model import module_device

    device = module_device(head)
    was_training = encoder.training, head.training
    encoder.eval()
    head.eval()
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                chunk = items[start:start + batch_size]
                inputs = _to(encoder.collate(chunk, np.zeros(len(chunk), dtype=np.int64)), device)
                out.append(head(encoder(inputs).float()).float().cpu().numpy())
    finally:
        encoder.train(was_training[0])
        head.train(was_training[1])
    return np.concatenate(out) if out else np.zeros((0, int(getattr(head, "out_dim", 0))), np.float32)


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x.to(device) if isinstance(x, torch.Tensor) else x


def is_tower(module: Any) -> bool:
    """True for an encoder tower (it collates raw items)."""
    return isinstance(module, nn.Module) and callable(getattr(module, "collate", None))


def mark_finetuned(tower: nn.Module) -> Any:
    """The frozen encoder of ``tower`` with an identity that names its fine-tuned weights, so that a feature
    cache never serves it the features of the pretrained ones; returns the encoder."""
    from gentleclip.model import weights_hash

    encoder = getattr(tower, "_encoder")
    if not any(True for _ in tower.parameters()):
        return encoder  # nothing to fine-tune (e.g. k-mers): the identity stands
    base = str(getattr(encoder, "_base_identity", None) or encoder.identity).split("|finetuned=")[0]
    encoder._base_identity = base
    tagged = f"{base}|finetuned={weights_hash(tower)}"
    if isinstance(getattr(type(encoder), "identity", None), property):
        encoder._identity = tagged  # computed lazily by the encoder: its cache slot
    else:
        encoder.identity = tagged
    return encoder
