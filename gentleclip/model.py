"""Projection heads and the two-tower :class:`AlignmentModel`.

Two regimes are supported:

* **frozen encoders over cached features** (the default): the model holds only the two projection
  heads and its inputs are feature arrays computed once by :mod:`gentleclip.cache`;
* **fine-tuning**: the model also holds the encoders (``encoder_a``/``encoder_b``); they are frozen
  when the model is built and :func:`set_trainable` unfreezes all of an encoder or its last ``k``
  layers. The :class:`~gentleclip.train.Trainer` puts trainable encoder parameters in their own
  optimiser parameter groups with a lower learning rate (``TrainConfig.encoder_lr``).

``save_pretrained``/``from_pretrained`` write and read ``config.json`` plus ``model.safetensors``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ProjectionHead",
    "ResidualBlock",
    "AlignmentModel",
    "set_trainable",
    "layer_stack",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


class ResidualBlock(nn.Module):
    """Pre-norm residual MLP block: ``x + Dropout(W2 GELU(W1 LayerNorm(x)))``."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.1, norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x [n, dim]``."""
        return x + self.drop(self.fc2(self.act(self.fc1(self.norm(x)))))


class ProjectionHead(nn.Module):
    """Map encoder features ``[n, in_dim]`` to L2-normalised joint-space embeddings ``[n, out_dim]``.

    ``kind="mlp"`` (default): a linear projection ``in_dim -> out_dim`` followed by ``n_blocks``
    pre-norm residual MLP blocks (hidden width ``hidden_dim``, GELU, dropout) and a final
    LayerNorm (``norm=True``). ``kind="linear"``: a single linear map. In both cases the output
    is divided by its L2 norm when ``normalize`` is true (the default).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 256,
        hidden_dim: int = 512,
        n_blocks: int = 1,
        dropout: float = 0.1,
        kind: Literal["mlp", "linear"] = "mlp",
        norm: bool = True,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if in_dim <= 0 or out_dim <= 0:
            raise ValueError(f"ProjectionHead: in_dim and out_dim must be positive, got {in_dim}, {out_dim}")
        if kind not in ("mlp", "linear"):
            raise ValueError(f"ProjectionHead: kind must be 'mlp' or 'linear', got {kind!r}")
        if kind == "mlp" and (n_blocks < 0 or hidden_dim <= 0):
            raise ValueError(f"ProjectionHead: need n_blocks >= 0 and hidden_dim > 0, got {n_blocks}, {hidden_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ProjectionHead: dropout must be in [0, 1), got {dropout}")
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim)
        self.hidden_dim = int(hidden_dim)
        self.n_blocks = int(n_blocks)
        self.dropout = float(dropout)
        self.kind = kind
        self.norm = bool(norm)
        self.normalize = bool(normalize)
        self.proj = nn.Linear(in_dim, out_dim)
        if kind == "mlp":
            self.blocks = nn.ModuleList(
                ResidualBlock(out_dim, hidden_dim, dropout, norm=norm) for _ in range(n_blocks)
            )
            self.final_norm: nn.Module = nn.LayerNorm(out_dim) if norm else nn.Identity()
        else:
            self.blocks = nn.ModuleList()
            self.final_norm = nn.Identity()

    def config(self) -> dict[str, Any]:
        """Constructor arguments, enough to rebuild the head (``ProjectionHead(**head.config())``)."""
        return {
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "hidden_dim": self.hidden_dim,
            "n_blocks": self.n_blocks,
            "dropout": self.dropout,
            "kind": self.kind,
            "norm": self.norm,
            "normalize": self.normalize,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``x [n, in_dim]`` (any leading dims) to ``[n, out_dim]``."""
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"ProjectionHead expects inputs with last dim {self.in_dim}, got shape {tuple(x.shape)}")
        h = self.proj(x)
        for block in self.blocks:
            h = block(h)
        h = self.final_norm(h)
        if self.normalize:
            h = F.normalize(h, dim=-1)
        return h

    def extra_repr(self) -> str:
        """The settings shown in ``repr(module)``."""
        return f"kind={self.kind}, n_blocks={self.n_blocks}, normalize={self.normalize}"


def weights_hash(module: nn.Module) -> str:
    """A 16-hex-digit BLAKE2 hash of ``module``'s state dict (names, dtypes, shapes and values): the weights
    part of an encoder's identity."""
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    for key, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter, or of its first buffer when it has no parameters (the
    CPU for neither)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _head_class_name(head: nn.Module) -> str:
    """How ``config.json`` names a head's class: ``ProjectionHead``, or ``module:Class`` for any other."""
    klass = type(head)
    return "ProjectionHead" if klass is ProjectionHead else f"{klass.__module__}:{klass.__qualname__}"


def _head_class(name: str, where: str) -> type:
    if name == "ProjectionHead":
        return ProjectionHead
    if ":" not in name:
        raise ValueError(f"from_pretrained: {where} is a {name}; only ProjectionHead or a 'module:Class' head can be "
                         "rebuilt")
    from gentleclip.domain import import_object

    try:
        return import_object(name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"from_pretrained: {where}: cannot import the head class {name!r} ({exc})") from None


def layer_stack(module: nn.Module) -> list[nn.Module]:
    """The ordered list of "layers" of an encoder, used by :func:`set_trainable` with ``last_k``.

    The longest ``nn.ModuleList``/``nn.Sequential`` found in a breadth-first walk of ``module``
    (e.g. ``esm.layers``, ``bert.encoder.layer``, ``timm`` ``blocks``), or, when there is none with
    at least two entries, the direct children of ``module``. Ties go to the shallowest container.
    """
    best: list[nn.Module] = []
    queue: list[nn.Module] = [module]
    while queue:
        node = queue.pop(0)
        if isinstance(node, (nn.ModuleList, nn.Sequential)) and len(node) > len(best):
            best = list(node)
        queue.extend(node.children())
    if len(best) >= 2:
        return best
    return list(module.children())


def set_trainable(module: nn.Module, last_k: int | None = None, trainable: bool = True) -> int:
    """Make all parameters of ``module`` trainable, or only those of its last ``last_k`` layers.

    With ``last_k=None`` every parameter gets ``requires_grad=trainable``. With ``last_k=k`` the
    whole module is first frozen, then the last ``k`` entries of :func:`layer_stack` are set to
    ``trainable`` (``last_k=0`` freezes everything). Returns the number of parameters (elements)
    that now require gradients.
    """
    if last_k is None:
        for p in module.parameters():
            p.requires_grad_(trainable)
    else:
        if last_k < 0:
            raise ValueError(f"set_trainable: last_k must be >= 0 or None, got {last_k}")
        layers = layer_stack(module)
        if last_k > len(layers):
            raise ValueError(
                f"set_trainable: last_k={last_k} but {type(module).__name__} has only {len(layers)} layers"
            )
        for p in module.parameters():
            p.requires_grad_(False)
        if trainable:
            for layer in layers[len(layers) - last_k:]:
                for p in layer.parameters():
                    p.requires_grad_(True)
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _is_trainable(module: nn.Module | None) -> bool:
    return isinstance(module, nn.Module) and any(p.requires_grad for p in module.parameters())


class AlignmentModel(nn.Module):
    """Two towers mapping modality A and modality B into one L2-normalised joint space.

    ``embed_a(x) = head_a(encoder_a(x))`` (just ``head_a(x)`` when ``encoder_a`` is None, i.e. when
    ``x`` holds cached features); likewise for B. Encoders passed here are frozen (and kept in
    eval mode) until :func:`set_trainable` / :meth:`set_encoder_trainable` unfreezes them.
    Encoders may be any callable; only ``nn.Module`` encoders can be fine-tuned and saved.
    """

    def __init__(
        self,
        head_a: nn.Module,
        head_b: nn.Module,
        encoder_a: nn.Module | None = None,
        encoder_b: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.head_a = head_a
        self.head_b = head_b
        # Plain callables are stored outside the module tree (no parameters to train or save).
        if encoder_a is not None and not isinstance(encoder_a, nn.Module) and not callable(encoder_a):
            raise TypeError("AlignmentModel: encoder_a must be an nn.Module or a callable")
        if encoder_b is not None and not isinstance(encoder_b, nn.Module) and not callable(encoder_b):
            raise TypeError("AlignmentModel: encoder_b must be an nn.Module or a callable")
        self.encoder_a = encoder_a
        self.encoder_b = encoder_b
        for enc in (encoder_a, encoder_b):
            if isinstance(enc, nn.Module):
                for p in enc.parameters():
                    p.requires_grad_(False)
                enc.eval()

    # ---------------------------------------------------------------- trainability
    def set_encoder_trainable(self, which: Literal["a", "b", "both"] = "both", last_k: int | None = None) -> int:
        """Unfreeze encoder ``which`` (all layers or the last ``last_k``); returns the trainable count."""
        if which not in ("a", "b", "both"):
            raise ValueError(f"set_encoder_trainable: which must be 'a', 'b' or 'both', got {which!r}")
        total = 0
        for side in ("a", "b") if which == "both" else (which,):
            enc = getattr(self, f"encoder_{side}")
            if not isinstance(enc, nn.Module):
                raise ValueError(f"set_encoder_trainable: encoder_{side} is not an nn.Module (got "
                                 f"{type(enc).__name__})")
            total += set_trainable(enc, last_k)
        return total

    def head_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Named trainable parameters of the two heads."""
        for prefix, head in (("head_a", self.head_a), ("head_b", self.head_b)):
            for name, p in head.named_parameters():
                if p.requires_grad:
                    yield f"{prefix}.{name}", p

    def encoder_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Named trainable parameters of the encoders (empty in the frozen-encoder regime)."""
        for prefix, enc in (("encoder_a", self.encoder_a), ("encoder_b", self.encoder_b)):
            if isinstance(enc, nn.Module):
                for name, p in enc.named_parameters():
                    if p.requires_grad:
                        yield f"{prefix}.{name}", p

    def train(self, mode: bool = True) -> "AlignmentModel":
        """Like ``nn.Module.train``, but frozen encoders stay in eval mode (no dropout noise)."""
        super().train(mode)
        for enc in (self.encoder_a, self.encoder_b):
            if isinstance(enc, nn.Module) and not _is_trainable(enc):
                enc.eval()
        return self

    # ---------------------------------------------------------------- forward
    def embed_a(self, x: Any) -> torch.Tensor:
        """Joint-space embeddings ``[n, d]`` of modality-A inputs (raw or cached features)."""
        if self.encoder_a is not None:
            if _is_trainable(self.encoder_a):
                x = self.encoder_a(x)
            else:
                with torch.no_grad():
                    x = self.encoder_a(x)
        return self.head_a(x)

    def embed_b(self, x: Any) -> torch.Tensor:
        """Joint-space embeddings ``[n, d]`` of modality-B inputs (raw or cached features)."""
        if self.encoder_b is not None:
            if _is_trainable(self.encoder_b):
                x = self.encoder_b(x)
            else:
                with torch.no_grad():
                    x = self.encoder_b(x)
        return self.head_b(x)

    def forward(self, a: Any, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embed_a(a), embed_b(b))``."""
        return self.embed_a(a), self.embed_b(b)

    @torch.no_grad()
    def encode(self, x: np.ndarray | torch.Tensor, side: Literal["a", "b"], batch_size: int = 4096) -> np.ndarray:
        """Embed a feature array ``[n, D]`` in eval mode, in chunks; returns float32 ``[n, d]``.

        Convenient for evaluation (``functools.partial(model.encode, side="a")``). The model's
        train/eval mode is restored afterwards.
        """
        if side not in ("a", "b"):
            raise ValueError(f"encode: side must be 'a' or 'b', got {side!r}")
        fn = self.embed_a if side == "a" else self.embed_b
        device = module_device(self)
        was_training = self.training
        self.eval()
        try:
            out = []
            for start in range(0, len(x), batch_size):
                chunk = x[start:start + batch_size]
                if isinstance(chunk, np.ndarray):  # memmaps are read-only: torch wants writable memory
                    chunk = np.require(np.asarray(chunk, dtype=np.float32), requirements=["C", "W"])
                t = torch.as_tensor(chunk)
                out.append(fn(t.to(device, torch.float32)).float().cpu().numpy())
            if not out:
                d = getattr(self.head_a if side == "a" else self.head_b, "out_dim", 0)
                return np.zeros((0, d), dtype=np.float32)
            return np.concatenate(out, axis=0)
        finally:
            self.train(was_training)

    def encode_a(self, x: np.ndarray | torch.Tensor, batch_size: int = 4096) -> np.ndarray:
        """:meth:`encode` with ``side="a"``."""
        return self.encode(x, "a", batch_size)

    def encode_b(self, x: np.ndarray | torch.Tensor, batch_size: int = 4096) -> np.ndarray:
        """:meth:`encode` with ``side="b"``."""
        return self.encode(x, "b", batch_size)

    # ---------------------------------------------------------------- persistence
    def _saved_encoders(self) -> list[str]:
        return [side for side in ("a", "b") if _is_trainable(getattr(self, f"encoder_{side}"))]

    def save_pretrained(self, directory: str | Path, extra_config: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (both heads; fine-tuned encoders too).

        Encoders are saved only when they are ``nn.Module``s with trainable parameters (fine-tuned);
        frozen encoders are reproducible from their own identity and are not duplicated.
        ``extra_config`` (JSON-serialisable) is stored under ``"extra"``. Returns the directory.
        """
        from safetensors.torch import save_file

        from gentleclip.io import atomic_path, atomic_write_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for side, head in (("a", self.head_a), ("b", self.head_b)):
            if not hasattr(head, "config"):
                raise TypeError(
                    f"save_pretrained: head_{side} ({type(head).__name__}) has no config(); "
                    "use ProjectionHead or give the head a config() returning its constructor kwargs"
                )
        saved = self._saved_encoders()
        config = {
            "format_version": FORMAT_VERSION,
            "model_type": "gentleclip.AlignmentModel",
            "head_a": {"class": _head_class_name(self.head_a), **self.head_a.config()},
            "head_b": {"class": _head_class_name(self.head_b), **self.head_b.config()},
            "encoders": {
                side: {
                    "class": None if getattr(self, f"encoder_{side}") is None
                    else type(getattr(self, f"encoder_{side}")).__name__,
                    "saved": side in saved,
                    "tower": callable(getattr(getattr(self, f"encoder_{side}"), "collate", None)),
                }
                for side in ("a", "b")
            },
            "extra": extra_config or {},
        }
        tensors: dict[str, torch.Tensor] = {}
        modules: list[tuple[str, nn.Module]] = [("head_a", self.head_a), ("head_b", self.head_b)]
        modules += [(f"encoder_{side}", getattr(self, f"encoder_{side}")) for side in saved]
        for prefix, module in modules:
            for key, value in module.state_dict().items():
                # clone: safetensors refuses tensors that share storage
                tensors[f"{prefix}.{key}"] = value.detach().cpu().contiguous().clone()
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        atomic_write_json(directory / CONFIG_NAME, config, indent=2, sort_keys=True)
        return directory

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        encoder_a: nn.Module | None = None,
        encoder_b: nn.Module | None = None,
        map_location: str | torch.device = "cpu",
    ) -> "AlignmentModel":
        """Rebuild a model written by :meth:`save_pretrained`.

        The heads are rebuilt from ``config.json``. Encoders are not rebuilt (their construction is
        domain-specific): pass them in; if fine-tuned encoder weights were saved they are loaded
        into the given encoders, which are then left fully trainable (call :func:`set_trainable` to
        choose fewer layers).
        """
        from safetensors.torch import load_file

        directory = Path(directory)
        cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not cfg_path.is_file() or not w_path.is_file():
            raise FileNotFoundError(f"from_pretrained: expected {CONFIG_NAME} and {WEIGHTS_NAME} in {directory}")
        config = json.loads(cfg_path.read_text())
        if config.get("model_type") != "gentleclip.AlignmentModel":
            raise ValueError(f"from_pretrained: {cfg_path} is not a gentleclip AlignmentModel config")
        heads = []
        for side in ("a", "b"):
            hc = dict(config[f"head_{side}"])
            klass = hc.pop("class", "ProjectionHead")
            heads.append(_head_class(klass, f"{cfg_path}: head_{side}")(**hc))
        model = cls(heads[0], heads[1], encoder_a, encoder_b)
        state = load_file(str(w_path), device=str(map_location))
        for side, head in zip(("a", "b"), heads):
            prefix = f"head_{side}."
            head.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        for side in ("a", "b"):
            prefix = f"encoder_{side}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not sub:
                continue
            enc = getattr(model, f"encoder_{side}")
            if not isinstance(enc, nn.Module):
                raise ValueError(
                    f"from_pretrained: {w_path} holds fine-tuned weights for encoder_{side}; "
                    f"pass encoder_{side}= the same architecture to load them"
                )
            enc.load_state_dict(sub)
            set_trainable(enc)
        return model.to(map_location)

    @staticmethod
    def load_config(directory: str | Path) -> dict[str, Any]:
        """The ``config.json`` written by :meth:`save_pretrained` (including ``"extra"``)."""
        return json.loads((Path(directory) / CONFIG_NAME).read_text())
