"""ESM-2 (fair-esm) sequence embeddings as a frozen, cacheable feature encoder.

Three ways to get a model::

    ESMEncoder("esm2_t6_8M_UR50D")                # hub name: torch hub cache, else download
    ESMEncoder("/models/esm2_t33_650M_UR50D.pt")  # a local checkpoint in fair-esm's format
    ESMEncoder(model, alphabet)                   # an already-built fair-esm model

**Weights offline.** A hub name is looked up first in the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<name>.pt``, see :func:`esm_checkpoint_path`); only when absent is
``esm.pretrained.load_model_and_alphabet`` asked to download it. When that fails (no internet, or
``allow_download=False``) :class:`ESMWeightsUnavailableError` says where to put the ``.pt`` file
and names the offline alternatives (:class:`~domains.protein.kmer.KmerEncoder`, a local path).
Local checkpoints are read with ``torch.load(weights_only=True)`` inside
``torch.serialization.safe_globals([argparse.Namespace])`` (fair-esm stores its config as a
Namespace; recent torch refuses it otherwise) and built by fair-esm's own
``load_model_and_alphabet_core``; the contact-regression file next to it is optional (contacts
are not used here). :func:`save_esm2_checkpoint` writes that format.

**Embedding.** Residue representations of layer ``layer`` (default: the last) are pooled:
``"mean"`` over the residue positions (BOS/CLS, EOS and padding excluded) or ``"cls"`` (the BOS
token). Sequences longer than ``max_residues`` (1022, ESM-2's training length) are split into
windows of ``max_residues`` with ``window_overlap`` shared residues (:func:`sequence_windows`); the
item's embedding is the window embeddings' average weighted by window length. Windows of all
items are sorted by length and packed into batches of at most ``tokens_per_batch`` tokens
(padding included); outputs are returned in input order. Runs under ``torch.inference_mode``;
``half=True`` uses float16 on CUDA (ignored, with a warning, on CPU).

**Views** (self-supervision): view ``k > 0`` masks residues with ``<mask>`` (default 15%) or crops
the sequence (:mod:`domains.protein.views`), deterministically per (seed, k, sequence).

**Identity** (the cache key): architecture (layers, width, heads) + a BLAKE2 hash of the state
dict + layer + pooling + windowing + views (+ ``fp16``), so a different checkpoint, layer or
preprocessing never reuses cached features.
"""
from __future__ import annotations

import argparse
import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gentleclip.finetune import EncoderTower
from gentleclip.model import weights_hash
from gentleclip.progress import progress

from .records import ProteinRecord, validate_sequence
from .views import check_view_args, view_plan

__all__ = [
    "ESMEncoder",
    "ESMTower",
    "ESMWeightsUnavailableError",
    "ESM2_MODELS",
    "esm_checkpoint_path",
    "load_esm_checkpoint",
    "save_esm2_checkpoint",
    "sequence_windows",
    "state_dict_hash",
]

#: Known ESM-2 hub names -> (layers, embedding dim).
ESM2_MODELS: dict[str, tuple[int, int]] = {
    "esm2_t6_8M_UR50D": (6, 320),
    "esm2_t12_35M_UR50D": (12, 480),
    "esm2_t30_150M_UR50D": (30, 640),
    "esm2_t33_650M_UR50D": (33, 1280),
    "esm2_t36_3B_UR50D": (36, 2560),
    "esm2_t48_15B_UR50D": (48, 5120),
}
_OTHER_HUB = re.compile(r"^esm(1b|1v|1|_msa1b|_msa1)_t\d+_\w+$")
_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/{}.pt"


class ESMWeightsUnavailableError(OSError):
    """ESM weights could not be found locally nor downloaded."""


def esm_checkpoint_path(name: str) -> Path:
    """Where fair-esm / torch.hub keep the checkpoint of hub model ``name``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / f"{name}.pt"


def _offline_message(name: str, reason: str) -> str:
    path = esm_checkpoint_path(name)
    return (
        f"ESM weights {name!r} are not available: {reason}.\n"
        f"  To use them offline, download {_URL.format(name)} on a machine with internet and place the file at\n"
        f"    {path}\n"
        f"  (the torch hub cache; set TORCH_HOME to move it), or pass its path: ESMEncoder('/path/to/{name}.pt').\n"
        "  Offline alternatives that need no ESM weights: KmerEncoder() (k-mer composition, "
        "ProteinAdapter(encoder='kmer')), or ESMEncoder(model, alphabet) with a fair-esm model you built."
    )


#: BLAKE2b (16 hex digits) of a model's state dict: the engine's one weights hash, under its old name here
state_dict_hash = weights_hash


def save_esm2_checkpoint(model: torch.nn.Module, path: str | os.PathLike, with_regression: bool = True) -> Path:
    """Save a fair-esm ``ESM2`` in the checkpoint format ``esm.pretrained.load_model_and_alphabet_local``
    reads: ``{"model": state dict (prefixed "encoder."), "cfg": {"model": Namespace(encoder_layers,
    encoder_embed_dim, encoder_attention_heads, token_dropout)}}``, plus, with ``with_regression``,
    the contact-regression weights in ``<stem>-contact-regression.pt`` next to it.

    fair-esm picks the ESM-2 format from the file name, so the name must start with ``esm2``.
    """
    path = Path(path)
    if not path.name.startswith("esm2") or path.suffix != ".pt":
        raise ValueError(f"save_esm2_checkpoint: {path.name!r}: fair-esm needs a name 'esm2*.pt' for ESM-2 checkpoints")
    state = model.state_dict()
    regression = {k: v for k, v in state.items() if k.startswith("contact_head.regression")}
    body = {f"encoder.{k}": v for k, v in state.items() if k not in regression}
    cfg = argparse.Namespace(
        encoder_layers=model.num_layers,
        encoder_embed_dim=model.embed_dim,
        encoder_attention_heads=model.attention_heads,
        token_dropout=model.token_dropout,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": body, "cfg": {"model": cfg}}, path)
    if with_regression:
        torch.save({"model": regression}, path.with_name(path.stem + "-contact-regression.pt"))
    return path


def load_esm_checkpoint(path: str | os.PathLike, weights_only: bool = True) -> tuple[torch.nn.Module, Any]:
    """Load a local fair-esm checkpoint (ESM-2 ``cfg`` format or ESM-1 ``args`` format).

    Uses ``safe_globals([argparse.Namespace])`` with ``weights_only=True``; pass
    ``weights_only=False`` only for a checkpoint you trust that holds other Python objects.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a fair-esm checkpoint (message names the file and the keys).
    """
    import esm

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ESM checkpoint {path} does not exist")

    def _load(p: Path) -> Any:
        with torch.serialization.safe_globals([argparse.Namespace]):
            try:
                return torch.load(str(p), map_location="cpu", weights_only=weights_only)
            except Exception as e:  # noqa: BLE001 - re-raised with the file name
                if weights_only and "weights_only" in str(e):
                    raise ValueError(
                        f"ESM checkpoint {p}: torch.load(weights_only=True) refused it ({str(e).splitlines()[0]}); "
                        "if you trust the file, pass weights_only=False"
                    ) from e
                raise ValueError(f"ESM checkpoint {p}: cannot be read by torch.load ({e})") from e

    data = _load(path)
    if not isinstance(data, dict) or "model" not in data or not ({"cfg", "args"} & set(data)):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"ESM checkpoint {path}: expected a dict with 'model' and 'cfg' (ESM-2) or 'args' (ESM-1), got {keys}"
        )
    stem = path.stem
    core_name = stem if ("cfg" not in data or stem.startswith("esm2")) else f"esm2_{stem}"
    regression_path = path.with_name(stem + "-contact-regression.pt")
    regression = _load(regression_path) if regression_path.is_file() else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Regression weights not found")
        model, alphabet = esm.pretrained.load_model_and_alphabet_core(core_name, data, regression)
    return model, alphabet


def _load_hub(name: str, allow_download: bool) -> tuple[torch.nn.Module, Any]:
    import esm

    local = esm_checkpoint_path(name)
    if local.is_file():
        return load_esm_checkpoint(local)
    if not allow_download:
        raise ESMWeightsUnavailableError(_offline_message(name, f"{local} does not exist and allow_download=False"))
    try:
        return esm.pretrained.load_model_and_alphabet_hub(name)
    except Exception as e:  # noqa: BLE001 - any download failure gets the same guidance
        raise ESMWeightsUnavailableError(
            _offline_message(name, f"{local} does not exist and the download failed ({type(e).__name__}: {e})")
        ) from e


def sequence_windows(length: int, max_residues: int = 1022, overlap: int = 256) -> list[tuple[int, int]]:
    """``[start, stop)`` windows covering ``length`` residues: one window when it fits, else
    windows of ``max_residues`` advancing by ``max_residues - overlap`` (the last one may be
    shorter; it always reaches the end and is at least ``overlap`` long)."""
    if length <= max_residues:
        return [(0, length)]
    stride = max_residues - overlap
    windows = []
    start = 0
    while True:
        stop = min(start + max_residues, length)
        windows.append((start, stop))
        if stop == length:
            return windows
        start += stride


class ESMEncoder:
    """Frozen ESM embeddings of protein sequences (fair-esm); see the module docstring.

    Args:
        model: hub name (e.g. ``"esm2_t6_8M_UR50D"``), path to a ``.pt`` checkpoint, or a built
            fair-esm model (then pass ``alphabet``, or it is taken from ``model.alphabet``).
        alphabet: the ``esm.data.Alphabet`` of a built model.
        layer: representation layer; negative counts from the end (-1 = last). 0 = embeddings.
        pooling: ``"mean"`` (residues only) or ``"cls"`` (the BOS token).
        device: ``"cuda"``, ``"cpu"``...; default CUDA when available. A built model is moved
            there in place (and set to eval mode).
        half: float16 weights on CUDA (a built model is converted in place).
        tokens_per_batch: token budget of a batch (padding included).
        max_residues: longest window fed to the model (ESM-2: 1022).
        window_overlap: residues shared by consecutive windows of a long sequence.
        augment, mask_prob, crop_fraction, seed: views ``k > 0`` (:mod:`domains.protein.views`).
        allow_download: let fair-esm download a hub model that is not in the torch hub cache.
        weights_only: ``torch.load`` mode for local checkpoints.
        name: override the display/cache-folder name.
    """

    def __init__(
        self,
        model: str | os.PathLike | torch.nn.Module = "esm2_t6_8M_UR50D",
        alphabet: Any = None,
        layer: int = -1,
        pooling: str = "mean",
        device: str | torch.device | None = None,
        half: bool = False,
        tokens_per_batch: int = 4096,
        max_residues: int = 1022,
        window_overlap: int = 256,
        augment: str = "mask",
        mask_prob: float = 0.15,
        crop_fraction: float = 0.8,
        seed: int = 0,
        allow_download: bool = True,
        weights_only: bool = True,
        name: str | None = None,
    ) -> None:
        if pooling not in ("mean", "cls"):
            raise ValueError(f"ESMEncoder: pooling must be 'mean' or 'cls', got {pooling!r}")
        if max_residues < 1 or not 0 <= window_overlap < max_residues:
            raise ValueError(
                f"ESMEncoder: need max_residues >= 1 and 0 <= window_overlap < max_residues, got "
                f"{max_residues} and {window_overlap}"
            )
        if tokens_per_batch < max_residues + 2:
            raise ValueError(
                f"ESMEncoder: tokens_per_batch={tokens_per_batch} cannot hold one window of "
                f"{max_residues} residues + 2 special tokens"
            )
        check_view_args(augment, mask_prob, crop_fraction)

        model, alphabet, source, default_name = self._load_model(model, alphabet, allow_download, weights_only)
        self.model: torch.nn.Module = model
        self.alphabet = alphabet
        self.source = source
        self.name = name or default_name

        n_layers, dim, heads = self._model_shape(model)
        if layer < 0:
            if n_layers is None:
                raise ValueError(f"ESMEncoder: cannot tell how many layers {source} has; pass layer >= 0")
            layer = n_layers + 1 + layer
        if layer < 0 or (n_layers is not None and layer > n_layers):
            raise ValueError(f"ESMEncoder: layer {layer} out of range for a {n_layers}-layer model ({source})")
        self.layer = int(layer)
        self.n_layers = n_layers
        self.pooling = pooling
        self.tokens_per_batch = int(tokens_per_batch)
        self.max_residues = int(max_residues)
        self.window_overlap = int(window_overlap)
        self.augment, self.mask_prob = augment, float(mask_prob)
        self.crop_fraction, self.seed = float(crop_fraction), int(seed)

        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.half = bool(half)
        if self.half and self.device.type != "cuda":
            warnings.warn("ESMEncoder: half=True is only used on CUDA; computing in float32 on " f"{self.device}",
                          stacklevel=2)  # fmt: skip
            self.half = False
        self.model.eval().to(self.device)
        if self.half:
            self.model.half()
        self.dim, self.n_heads = int(dim or 0), heads
        if self.dim <= 0:
            raise ValueError(f"ESMEncoder: cannot tell the embedding width of {source}")

        lookup = np.full(256, -1, dtype=np.int64)
        for letter in "ACDEFGHIKLMNPQRSTVWYXBZUO":
            idx = alphabet.get_idx(letter)
            if idx == alphabet.unk_idx:
                continue
            lookup[ord(letter)] = idx
        self._lookup = lookup
        self._identity: str | None = None

    _IDENTITY_TAG = "esm"

    @staticmethod
    def _model_shape(model: torch.nn.Module) -> tuple[int | None, int, Any]:
        """``(layers, width, attention heads)`` of a fair-esm model."""
        args = getattr(model, "args", None)
        n_layers = getattr(model, "num_layers", None) or getattr(args, "layers", None)
        dim = getattr(model, "embed_dim", 0) or getattr(args, "embed_dim", 0)
        return n_layers, int(dim or 0), getattr(model, "attention_heads", "?")

    def _load_model(self, model: Any, alphabet: Any, allow_download: bool, weights_only: bool
                    ) -> tuple[torch.nn.Module, Any, str, str]:
        """``(model, alphabet, source, default name)`` from a hub name, a checkpoint path or a built model."""
        if isinstance(model, torch.nn.Module):
            alphabet = alphabet if alphabet is not None else getattr(model, "alphabet", None)
            if alphabet is None:
                raise ValueError("ESMEncoder: a built model needs its alphabet (ESMEncoder(model, alphabet))")
            layers, width = getattr(model, "num_layers", "?"), getattr(model, "embed_dim", "?")
            kind = type(model).__name__
            return model, alphabet, f"{kind} object", f"{kind.lower()}_L{layers}_D{width}"
        spec = os.fspath(model)
        path = Path(spec).expanduser()
        if path.is_file() or spec.endswith(".pt"):
            if not path.is_file():
                raise FileNotFoundError(f"ESMEncoder: checkpoint {path} does not exist")
            model, alphabet = load_esm_checkpoint(path, weights_only=weights_only)
            return model, alphabet, str(path), path.stem
        if spec in ESM2_MODELS or _OTHER_HUB.match(spec):
            model, alphabet = _load_hub(spec, allow_download)
            return model, alphabet, f"hub:{spec}", spec
        raise ValueError(
            f"ESMEncoder: {spec!r} is neither an existing checkpoint file nor a known ESM hub name; "
            f"known ESM-2 names: {', '.join(ESM2_MODELS)} (Hugging Face names such as 'facebook/esm2_t6_8M_UR50D' "
            "go to HFESMEncoder)"
        )

    def recipe(self, **overrides: Any) -> dict[str, Any] | None:
        """Constructor arguments that rebuild this encoder (a hub name or checkpoint path), or None for
        a model passed as an ``nn.Module`` (it must be passed again when loading)."""
        source = str(getattr(self, "source", ""))
        if source.startswith("hub:"):
            model = source[len("hub:"):]
        elif source and not source.endswith(" object"):
            model = source
        else:
            return None
        kwargs = {"model": model, "name": self.name}
        kwargs.update({k: getattr(self, k) for k in ("layer", "pooling", "tokens_per_batch", "max_residues",
                                                      "window_overlap", "augment", "mask_prob", "crop_fraction",
                                                      "seed")})
        return {**kwargs, **overrides}

    def __repr__(self) -> str:
        return (f"ESMEncoder({self.name!r}, layer={self.layer}, pooling={self.pooling!r}, dim={self.dim}, "
                f"device={self.device})")

    @property
    def identity(self) -> str:
        """Architecture + state-dict hash + layer + pooling + windowing + views (computed once)."""
        if self._identity is None:
            arch = f"{type(self.model).__name__}(L={self.n_layers},D={self.dim},H={self.n_heads})"
            self._identity = (
                f"{self._IDENTITY_TAG}|{arch}|weights={state_dict_hash(self.model)}|layer={self.layer}|pool={self.pooling}|"
                f"win={self.max_residues}/{self.window_overlap}|views={self.augment},mask={self.mask_prob},"
                f"crop={self.crop_fraction},seed={self.seed}" + ("|fp16" if self.half else "")
            )
        return self._identity

    # ------------------------------------------------------------------ tokenisation
    def _token_ids(self, sequence: str, index: int, view: int) -> np.ndarray:
        ids = self._lookup[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]
        if (ids < 0).any():
            pos = int(np.argmax(ids < 0))
            raise ValueError(f"item {index}: residue {sequence[pos]!r} at position {pos + 1} is not in the ESM "
                             "alphabet")
        if view:
            plan = view_plan(sequence, view, self.augment, self.mask_prob, self.crop_fraction, self.seed)
            ids = ids[plan.start:plan.stop].copy()
            ids[plan.masked] = self.alphabet.mask_idx
        return ids

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Segment indices grouped into batches under the token budget, longest first."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        extra = int(bool(self.alphabet.prepend_bos)) + int(bool(self.alphabet.append_eos))
        batches: list[list[int]] = []
        current: list[int] = []
        width = 0
        for i in order:
            w = max(width, lengths[i] + extra)
            if current and w * (len(current) + 1) > self.tokens_per_batch:
                batches.append(current)
                current, w = [], lengths[i] + extra
            current.append(i)
            width = w
        if current:
            batches.append(current)
        return batches

    def _representations(self, tokens: torch.Tensor) -> torch.Tensor:
        """Residue representations ``[batch, width, dim]`` of layer ``self.layer`` (fair-esm's forward)."""
        return self.model(tokens, repr_layers=[self.layer])["representations"][self.layer]

    @torch.inference_mode()
    def _embed_segments(self, segments: list[np.ndarray], desc: str) -> np.ndarray:
        out = np.zeros((len(segments), self.dim), dtype=np.float32)
        batches = self._batches([len(s) for s in segments])
        for batch in progress(batches, desc=desc, unit="batch", leave=False,
                              disable=True if len(batches) < 4 else None):  # fmt: skip
            tokens = self._pad([segments[i] for i in batch])
            lengths = torch.tensor([len(segments[i]) for i in batch])
            out[batch] = self._pool(tokens.to(self.device), lengths.to(self.device)).cpu().numpy()
        return out

    def _pad(self, segments: list[np.ndarray]) -> torch.Tensor:
        """Token ids ``[n, width]``: BOS, the residues, EOS, then padding."""
        a = self.alphabet
        bos, eos = bool(a.prepend_bos), bool(a.append_eos)
        width = max(len(seg) for seg in segments) + bos + eos
        tokens = torch.full((len(segments), width), a.padding_idx, dtype=torch.long)
        for row, seg in enumerate(segments):
            if bos:
                tokens[row, 0] = a.cls_idx
            tokens[row, bos:bos + len(seg)] = torch.from_numpy(seg)
            if eos:
                tokens[row, bos + len(seg)] = a.eos_idx
        return tokens

    def _pool(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Pooled representations ``[n, dim]`` of padded ``tokens`` holding ``lengths`` residues each."""
        bos = bool(self.alphabet.prepend_bos)
        rep = self._representations(tokens).float()
        if self.pooling == "cls":
            if not bos:
                raise ValueError(f"ESMEncoder {self.name}: pooling='cls' needs an alphabet that prepends a BOS token")
            return rep[:, 0]
        pos = torch.arange(tokens.shape[1], device=rep.device)[None, :]
        mask = (pos >= bos) & (pos < bos + lengths[:, None])
        return (rep * mask[..., None]).sum(1) / lengths[:, None]

    def tower(self) -> "ESMTower":
        """The trainable tower over this encoder's model (:mod:`gentleclip.finetune`)."""
        return ESMTower(self)

    def encode(self, items: Sequence[str | ProteinRecord], view: int = 0) -> np.ndarray:
        """Pooled embeddings ``[len(items), dim]`` (float32), in input order.

        Raises:
            InvalidSequenceError: an empty sequence or invalid letter (names the item index,
                position and letter).
        """
        if view < 0:
            raise ValueError(f"ESMEncoder.encode: view must be >= 0, got {view}")
        segments: list[np.ndarray] = []
        owner: list[int] = []
        weight: list[float] = []
        for i, item in enumerate(items):
            seq = item.sequence if isinstance(item, ProteinRecord) else item
            seq = validate_sequence(seq, record=f"item {i}")  # type: ignore[arg-type]
            ids = self._token_ids(seq, i, view)
            for start, stop in sequence_windows(len(ids), self.max_residues, self.window_overlap):
                segments.append(ids[start:stop])
                owner.append(i)
                weight.append(float(stop - start))
        n = len(items)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        seg_emb = self._embed_segments(segments, desc=f"{self.name} view {view}")
        w = np.asarray(weight, dtype=np.float64)
        own = np.asarray(owner, dtype=np.int64)
        acc = np.zeros((n, self.dim), dtype=np.float64)
        np.add.at(acc, own, seg_emb.astype(np.float64) * w[:, None])
        totals = np.bincount(own, weights=w, minlength=n)
        return (acc / totals[:, None]).astype(np.float32)


class ESMTower(EncoderTower):
    """:class:`ESMEncoder` (fair-esm or transformers) as a trainable tower.

    ``collate`` gives the padded token ids of the items at their views (residue masking or cropping,
    :mod:`domains.protein.views`; a sequence longer than ``max_residues`` keeps its first window at
    view 0 and a seeded window elsewhere); ``forward`` runs length-sorted micro-batches under the
    encoder's token budget (less padding, as for embedding) and pools as ``encode`` does, in input
    order. Shares the encoder's model.
    """

    def __init__(self, encoder: ESMEncoder) -> None:
        super().__init__()
        self.model = encoder.model
        self.dim = encoder.dim
        self._encoder = encoder

    def collate(self, items: list, views: np.ndarray) -> dict[str, torch.Tensor]:
        """``{"tokens": [n, width], "lengths": [n]}`` for sequences (or records) at ``views``."""
        enc = self._encoder
        segments = []
        for i, (item, view) in enumerate(zip(items, np.asarray(views, dtype=np.int64))):
            seq = item.sequence if isinstance(item, ProteinRecord) else item
            ids = enc._token_ids(validate_sequence(seq, record=f"item {i}"), i, int(view))
            if len(ids) > enc.max_residues:
                start = 0 if view == 0 else int(np.random.default_rng([enc.seed, int(view), len(ids)]).integers(
                    0, len(ids) - enc.max_residues + 1))
                ids = ids[start:start + enc.max_residues]
            segments.append(ids)
        return {"tokens": enc._pad(segments), "lengths": torch.tensor([len(seg) for seg in segments])}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features ``[n, dim]``, in input order."""
        tokens, lengths = inputs["tokens"], inputs["lengths"]
        groups = self._encoder._batches([int(n) for n in lengths.tolist()])
        parts, order = [], []
        for group in groups:
            width = int(lengths[group].max()) + int(bool(self._encoder.alphabet.prepend_bos)) + int(
                bool(self._encoder.alphabet.append_eos))
            parts.append(self._encoder._pool(tokens[group, :width], lengths[group]))
            order += group
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return torch.cat(parts)[inverse.to(tokens.device)]

    def recipe(self) -> dict[str, Any] | None:
        """The recipe of the encoder it trains."""
        return self._encoder.recipe()
