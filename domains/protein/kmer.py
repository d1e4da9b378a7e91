r"""k-mer composition features: a weight-free, offline protein encoder.

For each ``j = 1..k`` the encoder counts the overlapping ``j``-mers of the 20 standard amino acids
(``20**j`` bins; a ``j``-mer that covers a non-standard letter ``X B Z U O`` or a masked residue
is not counted), turns the counts into frequencies ``f`` (summing to 1), and applies the
**Hellinger** map ``sqrt(f)`` (default; ``normalization="frequency"`` keeps ``f``). Because the
frequencies of a block sum to 1, every Hellinger block has unit L2 norm; the ``k`` blocks are
scaled by ``1/sqrt(k)`` and concatenated, so a feature vector has unit norm and the cosine of two
vectors is the mean over ``j`` of the Bhattacharyya coefficients of their ``j``-mer
distributions. A block with no countable ``j``-mer (sequence shorter than ``j``) is zero.

``dim = 20 + 400 + 8000 = 8420`` for ``k = 3``. With ``hash_dim = H``, every block with more than
``H`` bins (``20**j > H``) is folded into ``H`` buckets by a fixed multiplicative hash of the
``j``-mer index (frequencies of colliding ``j``-mers add up), e.g. ``k=3, hash_dim=1024`` ->
``20 + 400 + 1024 = 1444`` dims: ~6x less disk and memory for the cached ``[N, V, D]`` array.

Counting is vectorised with numpy over a whole chunk of sequences (one ``np.bincount`` per ``j``),
so featurising SCL2205's 19k sequences takes seconds. Views ``k > 0`` are the deterministic
masking/cropping augmentations of :mod:`domains.protein.views`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from gentleclip.finetune import EncoderTower
from gentleclip.progress import progress

from .records import STANDARD_RESIDUES, ProteinRecord, validate_sequence
from .views import check_view_args, view_plan

__all__ = ["KmerEncoder"]

_MISSING = np.uint8(255)
_CODES = np.full(256, _MISSING, dtype=np.uint8)
_CODES[np.frombuffer(STANDARD_RESIDUES.encode(), dtype=np.uint8)] = np.arange(20, dtype=np.uint8)
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


def _sequence_of(item: object, index: int) -> str:
    seq = item.sequence if isinstance(item, ProteinRecord) else item
    return validate_sequence(seq, record=f"item {index}")  # type: ignore[arg-type]


class KmerEncoder:
    """k-mer composition (``j = 1..k``) with per-``j`` Hellinger normalisation; see module docstring.

    Args:
        k: largest k-mer length (1-4; ``k=4`` needs ``hash_dim`` because 20**4 = 160,000 bins).
        hash_dim: fold blocks larger than this into ``hash_dim`` buckets; None = exact counts.
        normalization: ``"hellinger"`` (sqrt of frequencies, unit-norm blocks) or ``"frequency"``.
        augment: view mode ``"mask"``, ``"crop"`` or ``"crop+mask"`` (views ``k > 0``).
        mask_prob: fraction of residues masked by a masking view.
        crop_fraction: fraction of the sequence kept by a cropping view.
        seed: seed of the views.
        batch_size: sequences counted together (memory ``batch_size * bins * 8`` bytes).

    Implements the ``gentleclip.cache.FeatureEncoder`` protocol (``name``, ``identity``, ``dim``,
    ``encode``). Items are sequences (``str``) or :class:`ProteinRecord` s.
    """

    def __init__(
        self,
        k: int = 3,
        hash_dim: int | None = None,
        normalization: str = "hellinger",
        augment: str = "mask",
        mask_prob: float = 0.15,
        crop_fraction: float = 0.8,
        seed: int = 0,
        batch_size: int = 512,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 4:
            raise ValueError(f"KmerEncoder: k must be an integer in 1..4, got {k!r}")
        if hash_dim is not None and (isinstance(hash_dim, bool) or not isinstance(hash_dim, int) or hash_dim < 20):
            raise ValueError(f"KmerEncoder: hash_dim must be None or an integer >= 20, got {hash_dim!r}")
        if k == 4 and hash_dim is None:
            raise ValueError("KmerEncoder: k=4 has 160,000 bins per sequence; pass hash_dim (e.g. 4096)")
        if normalization not in ("hellinger", "frequency"):
            raise ValueError(f"KmerEncoder: normalization must be 'hellinger' or 'frequency', got {normalization!r}")
        check_view_args(augment, mask_prob, crop_fraction)
        if batch_size < 1:
            raise ValueError(f"KmerEncoder: batch_size must be positive, got {batch_size!r}")
        self.k = k
        self.hash_dim = hash_dim
        self.normalization = normalization
        self.augment = augment
        self.mask_prob = float(mask_prob)
        self.crop_fraction = float(crop_fraction)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.block_sizes = tuple(
            20**j if hash_dim is None or 20**j <= hash_dim else hash_dim for j in range(1, k + 1)
        )  # fmt: skip
        self.dim = int(sum(self.block_sizes))
        hashed = "" if hash_dim is None else f"-h{hash_dim}"
        self.name = f"kmer{k}{hashed}"
        self.identity = (
            f"kmer-composition-v1|k=1..{k}|hash={hash_dim}|norm={normalization}|"
            f"views={augment},mask={self.mask_prob},crop={self.crop_fraction},seed={self.seed}"
        )

    def recipe(self, **overrides: Any) -> dict[str, Any]:
        """Constructor arguments that rebuild this encoder (saved with a trained model)."""
        kwargs = {k: getattr(self, k) for k in ("k", "hash_dim", "normalization", "augment", "mask_prob",
                                                 "crop_fraction", "seed", "batch_size")}
        return {**kwargs, **overrides}

    def __repr__(self) -> str:
        return f"KmerEncoder(k={self.k}, hash_dim={self.hash_dim}, dim={self.dim})"

    # ------------------------------------------------------------------ encoding
    def _codes(self, sequence: str, view: int) -> np.ndarray:
        codes = _CODES[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]
        if view:
            plan = view_plan(sequence, view, self.augment, self.mask_prob, self.crop_fraction, self.seed)
            codes = codes[plan.start:plan.stop].copy()
            codes[plan.masked] = _MISSING
        return codes

    def _counts(self, concat: np.ndarray, seq_id: np.ndarray, n_seq: int, j: int, bins: int) -> np.ndarray:
        n = len(concat) - j + 1
        if n <= 0:
            return np.zeros((n_seq, bins), dtype=np.float64)
        valid = np.ones(n, dtype=bool)
        idx = np.zeros(n, dtype=np.int64)
        for o in range(j):
            part = concat[o:o + n]
            valid &= part != _MISSING
            idx = idx * 20 + part.astype(np.int64)
        idx = idx[valid]
        if bins < 20**j:
            idx = ((idx.astype(np.uint64) * _HASH_MUL) >> np.uint64(32)).astype(np.int64) % bins
        combined = seq_id[:n][valid] * bins + idx
        return np.bincount(combined, minlength=n_seq * bins).reshape(n_seq, bins).astype(np.float64)

    def _encode_batch(self, seqs: list[str], view: int) -> np.ndarray:
        codes = [self._codes(s, view) for s in seqs]
        # One separator (a missing code) after each sequence: no k-mer spans two sequences.
        concat = np.concatenate([np.append(c, _MISSING) for c in codes])
        seq_id = np.repeat(np.arange(len(codes), dtype=np.int64), [len(c) + 1 for c in codes])
        blocks = []
        scale = 1.0 / np.sqrt(self.k) if self.normalization == "hellinger" else 1.0
        for j, bins in zip(range(1, self.k + 1), self.block_sizes):
            counts = self._counts(concat, seq_id, len(codes), j, bins)
            totals = counts.sum(axis=1, keepdims=True)
            freq = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
            blocks.append((np.sqrt(freq) if self.normalization == "hellinger" else freq) * scale)
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def tower(self) -> "KmerTower":
        """A tower without weights (:mod:`gentleclip.finetune`): the protein side of an end-to-end run whose
        text side trains; its views are made online, as every tower's."""
        return KmerTower(self)

    def encode(self, items: Sequence[str | ProteinRecord], view: int = 0) -> np.ndarray:
        """k-mer features ``[len(items), dim]`` (float32) of the sequences under augmentation ``view``.

        Raises:
            InvalidSequenceError: an empty sequence or invalid letter (names the item index,
                position and letter).
        """
        if view < 0:
            raise ValueError(f"KmerEncoder.encode: view must be >= 0, got {view}")
        seqs = [_sequence_of(item, i) for i, item in enumerate(items)]
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        starts = range(0, len(seqs), self.batch_size)
        for s in progress(starts, desc=f"{self.name} view {view}", unit="batch", leave=False,
                          disable=True if len(starts) < 8 else None):  # fmt: skip
            out[s:s + self.batch_size] = self._encode_batch(seqs[s:s + self.batch_size], view)
        return out


class KmerTower(EncoderTower):
    """:class:`KmerEncoder` as a (weight-free) tower: ``collate`` computes the k-mer features of the items at
    their views, ``forward`` passes them on."""

    def __init__(self, encoder: KmerEncoder) -> None:
        super().__init__()
        self.dim = encoder.dim
        self._encoder = encoder

    def collate(self, items: list, views: np.ndarray) -> torch.Tensor:
        """K-mer features ``[n, dim]`` of ``items`` at ``views``."""
        views = np.asarray(views, dtype=np.int64)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for view in np.unique(views):
            rows = np.flatnonzero(views == view)
            out[rows] = self._encoder.encode([items[i] for i in rows], view=int(view))
        return torch.from_numpy(out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The features as they are."""
        return features

    def recipe(self) -> dict[str, Any]:
        """The recipe of its encoder."""
        return self._encoder.recipe()
