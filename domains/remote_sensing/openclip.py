"""open_clip models as a paired encoder family: the image tower for A, the text tower for B, one checkpoint.

Remote-sensing CLIPs (RemoteCLIP, GeoRSCLIP, SkyCLIP) are published as open_clip checkpoints of
standard architectures (``ViT-B-32``, ``ViT-L-14``, ...). :func:`open_clip_pair` loads one as open_clip
loads it (``open_clip.create_model_and_transforms(name, pretrained=<hub tag or local .pt>)``, with
the text tower as its own module, ``force_custom_text=True``) and returns two feature encoders over
that one model: :class:`OpenCLIPImageEncoder` (``model.visual``) and :class:`OpenCLIPTextEncoder`
(``model.text``), each L2-normalised like CLIP's. Their towers (:mod:`gentleclip.finetune`) fine-tune
``gentle`` from a pretrained CLIP the way S-CLIP fine-tunes CLIP.

Images go through this project's view recipe (:func:`~domains.remote_sensing.images.prepare_image`:
view 0 resized to the model's input size, other views a seeded random resized crop and a symmetry of
the square) and the checkpoint's own mean / std. Nothing is downloaded unless ``pretrained`` names an
open_clip tag and the machine is online; a missing file raises :class:`OpenCLIPWeightsUnavailableError`.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gentleclip.finetune import EncoderTower
from gentleclip.model import weights_hash

from .images import prepare_image

__all__ = ["open_clip_pair", "load_open_clip", "OpenCLIPImageEncoder", "OpenCLIPTextEncoder",
           "OpenCLIPWeightsUnavailableError"]


class OpenCLIPWeightsUnavailableError(OSError):
    """An open_clip checkpoint could not be found locally nor downloaded."""


def _weights_tag(pretrained: str | os.PathLike | None) -> str:
    if pretrained is None:
        return "random"
    path = Path(pretrained).expanduser()
    if path.is_file():
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return f"file:{h.hexdigest()[:16]}"
    return f"tag:{pretrained}"


def load_open_clip(model_name: str, pretrained: str | os.PathLike | None = None, device: str = "cpu",
                   seed: int = 0) -> tuple[Any, dict]:
    """The open_clip model (text tower as its own module) and its preprocessing config, loaded as open_clip
    loads it; ``pretrained=None``: random weights seeded by ``seed``."""
    import open_clip

    spec = None
    if pretrained is not None:
        path = Path(pretrained).expanduser()
        spec = os.fspath(path) if path.exists() else os.fspath(pretrained)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _, _ = open_clip.create_model_and_transforms(model_name, pretrained=spec, device=device,
                                                                force_custom_text=True)
    except RuntimeError as exc:
        raise OpenCLIPWeightsUnavailableError(
            f"open_clip {model_name!r}: cannot load weights {pretrained!r} ({str(exc).splitlines()[0]}). Pass the "
            "path of the checkpoint file (RemoteCLIP, GeoRSCLIP and SkyCLIP publish open_clip .pt files), an "
            "open_clip tag on a machine that can download it, or pretrained=None for random weights") from None
    return model.eval(), open_clip.get_model_preprocess_cfg(model)


def open_clip_pair(model_name: str = "ViT-B-32", pretrained: str | os.PathLike | None = None, device: str = "cpu",
                   seed: int = 0) -> tuple["OpenCLIPImageEncoder", "OpenCLIPTextEncoder"]:
    """The image and the text encoder of one open_clip checkpoint (loaded once, one model in memory)."""
    loaded = load_open_clip(model_name, pretrained, device, seed)
    return (OpenCLIPImageEncoder(model_name, pretrained, device=device, seed=seed, loaded=loaded),
            OpenCLIPTextEncoder(model_name, pretrained, device=device, seed=seed, loaded=loaded))


class _OpenCLIPEncoder:
    side = ""

    def __init__(self, model_name: str, pretrained: str | os.PathLike | None, device: str, seed: int,
                 batch_size: int, loaded: tuple[Any, dict] | None) -> None:
        self.model_name, self.pretrained, self.seed = model_name, pretrained, int(seed)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.clip, self.preprocess_cfg = loaded or load_open_clip(model_name, pretrained, str(self.device), self.seed)
        self.model = getattr(self.clip, self.side)
        self.weights_tag = _weights_tag(pretrained) if pretrained is not None else f"random(seed={seed})"
        self.name = f"open_clip-{model_name}-{self.side}"
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        """Model name + a hash of this tower's weights + preprocessing (computed once)."""
        if self._identity is None:
            self._identity = f"open_clip|{self.model_name}|{self.side}|weights={weights_hash(self.model)}|" + \
                self._recipe_tag()
        return self._identity

    def recipe(self, **overrides: Any) -> dict[str, Any]:
        """Constructor arguments that rebuild this encoder."""
        return {"model_name": self.model_name, "pretrained": None if self.pretrained is None
                else os.fspath(self.pretrained), "seed": self.seed, "batch_size": self.batch_size, **overrides}

    def _recipe_tag(self) -> str:
        return ""

    def encode(self, items: Sequence[Any], view: int = 0) -> np.ndarray:
        """L2-normalised features ``[len(items), dim]`` (float32) of view ``view``."""
        items = list(items)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                inputs = self._inputs(chunk, np.full(len(chunk), int(view)))
                out[start:start + len(chunk)] = self._features(inputs).float().cpu().numpy()
        return out

    def tower(self) -> "OpenCLIPTower":
        """The trainable tower over this encoder's part of the model (:mod:`gentleclip.finetune`)."""
        return OpenCLIPTower(self)


class OpenCLIPImageEncoder(_OpenCLIPEncoder):
    """The image tower of an open_clip model as a feature encoder (see the module docstring)."""

    side = "visual"

    def __init__(self, model_name: str = "ViT-B-32", pretrained: str | os.PathLike | None = None, *,
                 device: str = "cpu", seed: int = 0, batch_size: int = 32, loaded: tuple[Any, dict] | None = None
                 ) -> None:
        super().__init__(model_name, pretrained, device, seed, batch_size, loaded)
        size = self.preprocess_cfg["size"]
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self._mean = torch.tensor(self.preprocess_cfg["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(self.preprocess_cfg["std"], dtype=torch.float32).view(1, -1, 1, 1)
        self.dim = int(self.clip.visual.output_dim)

    def _recipe_tag(self) -> str:
        return f"size={self.image_size}|views=v1"

    def _inputs(self, items: list, views: np.ndarray) -> torch.Tensor:
        return torch.stack([prepare_image(item, int(v), self.image_size) for item, v in zip(items, views)])

    def _features(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.to(self.device) - self._mean.to(self.device)) / self._std.to(self.device)
        return torch.nn.functional.normalize(self.model(x).float(), dim=-1)


class OpenCLIPTextEncoder(_OpenCLIPEncoder):
    """The text tower of an open_clip model as a feature encoder (its own tokenizer and context length)."""

    side = "text"

    def __init__(self, model_name: str = "ViT-B-32", pretrained: str | os.PathLike | None = None, *,
                 device: str = "cpu", seed: int = 0, batch_size: int = 128, loaded: tuple[Any, dict] | None = None
                 ) -> None:
        import open_clip

        super().__init__(model_name, pretrained, device, seed, batch_size, loaded)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.dim = int(self.clip.text.output_dim)

    def _recipe_tag(self) -> str:
        return f"context={getattr(self.tokenizer, 'context_length', '?')}"

    def _inputs(self, items: list, views: np.ndarray) -> torch.Tensor:
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise TypeError(f"OpenCLIPTextEncoder: item {i} is a {type(t).__name__}, expected a string")
        return self.tokenizer(list(items))

    def _features(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.model(tokens.to(self.device)).float(), dim=-1)


class OpenCLIPTower(EncoderTower):
    """The trainable face of an open_clip image or text encoder: the same module, the same preprocessing."""

    def __init__(self, encoder: _OpenCLIPEncoder) -> None:
        super().__init__()
        self.model = encoder.model
        self.dim = encoder.dim
        self._encoder = encoder

    def collate(self, items: list, views: np.ndarray) -> torch.Tensor:
        """Pixels or token ids of ``items`` at ``views``."""
        return self._encoder._inputs(list(items), np.asarray(views, dtype=np.int64))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """L2-normalised features ``[n, dim]``."""
        return self._encoder._features(inputs)

    def recipe(self) -> dict[str, Any]:
        """The recipe of the encoder it trains."""
        return self._encoder.recipe()
