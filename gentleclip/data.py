"""Semi-paired batching over three pools: paired rows, unpaired A rows and unpaired B rows.

A :class:`SemiPairedLoader` batch holds ``n_paired`` true pairs (rows ``0..n_paired-1`` of ``a`` and
``b``), followed by unpaired A rows in ``a`` and unpaired B rows in ``b``. Feature arrays stay
where they are (numpy arrays or read-only memmaps); each batch gathers only its own rows, so the
memory a step needs does not grow with the pool sizes.

Sampling is a pure function of ``(seed, step)``: every pool is read as an endless stream of
seeded permutations (pass ``p`` of pool ``k`` is ``permutation(seed, k, p)``), batch ``t`` takes
the next slice of each stream, and the views of each row are drawn from a generator seeded by
``(seed, step)``. Resuming at step ``t`` therefore reproduces the uninterrupted run exactly, and
``rank``/``world_size`` shards are contiguous slices of the same global batch.

Raw items (end-to-end training): a pool may instead be a :class:`RawRows` (protein sequences, image
files, caption strings with the trainable encoder's ``collate``). A batch then holds the encoder's
inputs (token ids, pixels) for the same rows and views, collated once per modality, both views of a
row in one collated batch (``Batch.stacked_views``). Views are online: ``RawRows`` declares
:data:`ONLINE_VIEWS` views, so a row gets a fresh, seeded augmentation at every step; view 0 is
the clean item. :class:`StepBatches` computes the batches in ``DataLoader`` workers (decoding and
tokenising off the training process) without changing them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch

__all__ = ["SemiPairedData", "SemiPairedLoader", "Batch", "BatchComposition", "RawRows", "StepBatches",
           "ONLINE_VIEWS"]

_POOL_PAIRED, _POOL_A, _POOL_B = 0, 1, 2
_VIEW_STREAM = 7
#: Views of a raw item: view 0 is the clean item, every other number a seeded random augmentation.
ONLINE_VIEWS = 2**31 - 1


class RawRows:
    """Raw items of one modality and how the trainable encoder turns rows of them into inputs.

    ``items[i, k]`` is the item of row ``i`` at stored view ``k`` (an ``[N, K]`` object array, or a
    sequence of items: ``K = 1``): a sequence, an image path, a caption. Most items are the same at
    every ``k``; remote-sensing images keep their 5 captions there, as the cached path keeps their
    features as 5 views. Row ``i`` at view ``v`` is ``items[i, v % K]``, collated at view ``v``:
    ``collate(items, views)`` returns the encoder's inputs (a tensor or a dict of tensors; it runs
    in ``DataLoader`` workers, so it must be picklable and depend on nothing but its arguments).
    ``n_views`` defaults to :data:`ONLINE_VIEWS` (a new augmentation at each step).
    """

    def __init__(self, items: Any, collate: Any, label: str = "items", n_views: int = ONLINE_VIEWS) -> None:
        arr = np.asarray(items, dtype=object) if isinstance(items, np.ndarray) else None
        if arr is None:
            arr = np.empty((len(items), 1), dtype=object)
            for i, item in enumerate(items):
                arr[i, 0] = item
        if arr.ndim == 3 and arr.shape[2] == 1:  # an item array [N, V, 1] (gentleclip.items)
            arr = arr[:, :, 0]
        if arr.ndim != 2 or len(arr) == 0:
            raise ValueError(f"RawRows {label}: expected items [N, K] with N >= 1, got shape {arr.shape}")
        if not callable(collate):
            raise TypeError(f"RawRows {label}: collate must be callable, got {type(collate).__name__}")
        self.items = arr
        self.collate = collate
        self.label = label
        self.n = len(arr)
        self.n_views = int(n_views)
        self.dim = 0  # the encoder's output width (inputs are not features)

    def gather(self, rows: np.ndarray, views: np.ndarray) -> Any:
        """The collated inputs of row ``rows[i]`` at view ``views[i]``."""
        views = np.asarray(views, dtype=np.int64)
        k = self.items.shape[1]
        return self.collate([self.items[int(r), int(v) % k] for r, v in zip(rows, views)], views)


class _Rows:
    """Read-only row source over one or several ``[N, V, D]`` arrays, virtually concatenated.

    Only the rows asked for are read (numpy advanced indexing on each part), so memmaps are never
    loaded whole. ``[N, D]`` arrays are treated as ``[N, 1, D]`` (a view; nothing is copied).
    """

    def __init__(self, parts: np.ndarray | Sequence[np.ndarray], label: str) -> None:
        if isinstance(parts, (np.ndarray, torch.Tensor)) or hasattr(parts, "shape"):
            parts = [parts]
        arrays: list[np.ndarray] = []
        for i, arr in enumerate(parts):
            if isinstance(arr, torch.Tensor):
                arr = arr.detach().cpu().numpy()
            if not hasattr(arr, "ndim") or not hasattr(arr, "shape"):
                raise TypeError(f"{label}[{i}]: expected a numpy array or memmap, got {type(arr).__name__}")
            if arr.ndim == 2:
                arr = arr[:, None, :]
            if arr.ndim != 3:
                raise ValueError(f"{label}[{i}]: expected features [N, V, D] (or [N, D]), got shape {tuple(arr.shape)}")
            arrays.append(arr)
        if not arrays:
            raise ValueError(f"{label}: no feature arrays given")
        v, d = arrays[0].shape[1:]
        for i, arr in enumerate(arrays[1:], start=1):
            if arr.shape[2] != d:
                raise ValueError(f"{label}[{i}]: feature dim {arr.shape[2]} differs from {label}[0]'s {d}")
            v = min(v, arr.shape[1])
        if v < 1 or d < 1:
            raise ValueError(f"{label}: need at least one view and one feature dim, got V={v}, D={d}")
        self.label = label
        self.parts = arrays
        self.n_views = int(v)
        self.dim = int(d)
        dtypes = {np.dtype(a.dtype) for a in arrays}
        floating = all(np.issubdtype(t, np.floating) for t in dtypes)
        if not floating and len(dtypes) > 1:
            raise TypeError(f"{label}: parts have different non-float dtypes {sorted(map(str, dtypes))}")
        # float features are served as float32; integer inputs (e.g. token ids) keep their dtype
        self.dtype = np.dtype(np.float32) if floating else dtypes.pop()
        self.offsets = np.cumsum([0] + [len(a) for a in arrays])
        self.n = int(self.offsets[-1])

    def gather(self, rows: np.ndarray, views: np.ndarray) -> np.ndarray:
        """``[len(rows), D]`` (float32 for float features): row ``rows[i]`` at view ``views[i]``."""
        out = np.empty((len(rows), self.dim), dtype=self.dtype)
        if len(rows) == 0:
            return out
        if len(self.parts) == 1:
            out[:] = self.parts[0][rows, views]
            return out
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        for k in np.unique(part):
            sel = np.nonzero(part == k)[0]
            out[sel] = self.parts[k][rows[sel] - self.offsets[k], views[sel]]
        return out


def _as_index(name: str, idx: Any, n: int, label: str) -> np.ndarray:
    arr = np.asarray([] if idx is None else idx)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"SemiPairedData: {name} must be a 1-D index array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"SemiPairedData: {name} must hold integer indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    bad = np.nonzero((arr < 0) | (arr >= n))[0]
    if len(bad):
        raise IndexError(
            f"SemiPairedData: {name}[{bad[0]}] = {arr[bad[0]]} is out of range for {label} with {n} rows "
            f"({len(bad)} bad indices in all)"
        )
    return arr


class SemiPairedData:
    """The three training pools as index arrays into the two feature arrays.

    ``features_a [Na, V, Da]`` and ``features_b [Nb, V', Db]`` are numpy arrays or read-only
    memmaps (or lists of them, read as one virtual concatenation), or :class:`RawRows` of raw items
    for end-to-end training. ``paired_a[i]``/``paired_b[i]``
    are the A and B rows of pair ``i``; ``unpaired_a``/``unpaired_b`` are rows used without a
    partner. Training needs at least one A row and one B row in total (pairs count for both);
    with no pairs, both unpaired pools must be non-empty.
    """

    def __init__(
        self,
        features_a: np.ndarray | Sequence[np.ndarray],
        features_b: np.ndarray | Sequence[np.ndarray],
        paired_a: Sequence[int] | np.ndarray | None,
        paired_b: Sequence[int] | np.ndarray | None,
        unpaired_a: Sequence[int] | np.ndarray | None = None,
        unpaired_b: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        self.rows_a = features_a if isinstance(features_a, RawRows) else _Rows(features_a, "features_a")
        self.rows_b = features_b if isinstance(features_b, RawRows) else _Rows(features_b, "features_b")
        self.paired_a = _as_index("paired_a", paired_a, self.rows_a.n, "features_a")
        self.paired_b = _as_index("paired_b", paired_b, self.rows_b.n, "features_b")
        if len(self.paired_a) != len(self.paired_b):
            raise ValueError(
                f"SemiPairedData: paired_a has {len(self.paired_a)} rows but paired_b has {len(self.paired_b)}; "
                "pair i is (paired_a[i], paired_b[i])"
            )
        self.unpaired_a = _as_index("unpaired_a", unpaired_a, self.rows_a.n, "features_a")
        self.unpaired_b = _as_index("unpaired_b", unpaired_b, self.rows_b.n, "features_b")
        n_p, n_a, n_b = len(self.paired_a), len(self.unpaired_a), len(self.unpaired_b)
        if n_p + n_a == 0 or n_p + n_b == 0:
            missing = "A" if n_p + n_a == 0 else "B"
            raise ValueError(
                f"SemiPairedData: nothing to train on: {n_p} pairs, {n_a} unpaired A rows, {n_b} unpaired B rows; "
                f"with no pairs both unpaired pools must be non-empty (no {missing} rows at all)"
            )

    @classmethod
    def from_split(
        cls,
        features_a: np.ndarray,
        features_b: np.ndarray,
        split: Any,
        extra_unpaired_b: np.ndarray | None = None,
        use_unpaired: bool = True,
    ) -> "SemiPairedData":
        """Build the pools from a :class:`gentleclip.pairing.PairingSplit` over shared item indices.

        Item ``i`` is row ``i`` of both feature arrays. ``extra_unpaired_b [M, V, Db]`` (B-only items,
        e.g. captions without images) is appended (virtually, nothing is copied) to the B rows and
        joins the unpaired-B pool. ``use_unpaired=False`` keeps only the pairs (for CLIP-only runs).
        """
        if len(features_a) != len(features_b):
            raise ValueError(
                f"SemiPairedData.from_split: features_a has {len(features_a)} items but features_b has "
                f"{len(features_b)}; row i of each must be item i"
            )
        n_items = getattr(split, "n_items", None)
        if n_items is not None and int(n_items) != len(features_a):
            raise ValueError(
                f"SemiPairedData.from_split: split covers {n_items} items but the features hold {len(features_a)}"
            )
        paired = np.asarray(split.paired, dtype=np.int64)
        ua = np.asarray(split.unpaired_a, dtype=np.int64) if use_unpaired else np.zeros(0, np.int64)
        ub = np.asarray(split.unpaired_b, dtype=np.int64) if use_unpaired else np.zeros(0, np.int64)
        parts_b: list[np.ndarray] = [features_b]
        if extra_unpaired_b is not None and len(extra_unpaired_b) and use_unpaired:
            parts_b.append(extra_unpaired_b)
            ub = np.concatenate([ub, len(features_b) + np.arange(len(extra_unpaired_b), dtype=np.int64)])
        return cls(features_a, parts_b, paired, paired, ua, ub)

    @property
    def n_paired(self) -> int:
        """Number of pairs."""
        return len(self.paired_a)

    @property
    def n_unpaired_a(self) -> int:
        """Size of the unpaired-A pool."""
        return len(self.unpaired_a)

    @property
    def n_unpaired_b(self) -> int:
        """Size of the unpaired-B pool."""
        return len(self.unpaired_b)

    @property
    def dim_a(self) -> int:
        """Feature dimension of modality A."""
        return self.rows_a.dim

    @property
    def dim_b(self) -> int:
        """Feature dimension of modality B."""
        return self.rows_b.dim

    def __repr__(self) -> str:
        return (
            f"SemiPairedData(pairs={self.n_paired}, unpaired_a={self.n_unpaired_a}, "
            f"unpaired_b={self.n_unpaired_b}, dim_a={self.dim_a}, dim_b={self.dim_b})"
        )


@dataclass
class Batch:
    """One (shard of a) semi-paired batch.

    ``a [n_paired + ua, Da]`` and ``b [n_paired + ub, Db]``: rows ``0..n_paired-1`` are true pairs,
    the rest unpaired. ``a2``/``b2`` hold a second, different view of the same rows (None when the
    loader was built with ``n_views=1``). ``idx_a``/``idx_b`` are the feature rows used (for tests
    and debugging); ``step`` is the global step the batch belongs to. With raw items ``a``/``b`` are
    the encoders' collated inputs; ``stacked_views`` then means that both views of every row are in
    them (first views, then second views, ``2 * len(idx_a)`` rows) and ``a2``/``b2`` are None.
    """

    a: Any
    b: Any
    n_paired: int
    a2: Any = None
    b2: Any = None
    idx_a: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    idx_b: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    step: int = 0
    stacked_views: bool = False

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """A copy with every tensor (also inside dicts of encoder inputs) moved to ``device``."""
        def mv(t: Any) -> Any:
            if isinstance(t, dict):
                return {k: mv(v) for k, v in t.items()}
            return t.to(device, non_blocking=non_blocking) if isinstance(t, torch.Tensor) else t

        return Batch(mv(self.a), mv(self.b), self.n_paired, mv(self.a2), mv(self.b2), self.idx_a, self.idx_b, self.step,
                     self.stacked_views)

    def nbytes(self) -> int:
        """Bytes held by the batch tensors."""
        def size(t: Any) -> int:
            if isinstance(t, dict):
                return sum(size(v) for v in t.values())
            return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0

        return sum(size(t) for t in (self.a, self.b, self.a2, self.b2))


@dataclass(frozen=True)
class BatchComposition:
    """Rows per global batch taken from each pool: ``paired``, ``unpaired_a``, ``unpaired_b``."""

    paired: int
    unpaired_a: int
    unpaired_b: int

    @property
    def total(self) -> int:
        """Distinct items in the batch (``paired + unpaired_a + unpaired_b``)."""
        return self.paired + self.unpaired_a + self.unpaired_b


def _compose(
    n_p: int, n_a: int, n_b: int, batch_size: int, paired_per_batch: int | None, multiple: int,
    unpaired_per_batch: int | None = None,
) -> BatchComposition:
    """Rows per step from each pool (see :class:`SemiPairedLoader`): the pairs do not depend on the
    unpaired pools, so every method at a given pairing sees the same pairs per step."""
    for name, value in (("paired_per_batch", paired_per_batch), ("unpaired_per_batch", unpaired_per_batch)):
        if value is not None and value < 0:
            raise ValueError(f"SemiPairedLoader: {name} must be >= 0, got {value}")
    p = min(batch_size if paired_per_batch is None else int(paired_per_batch), n_p)
    if multiple > 1:  # every rank must hold the same number of pairs
        p -= p % multiple
    u = min(batch_size if unpaired_per_batch is None else int(unpaired_per_batch), n_a + n_b)
    ua = int(round(u * n_a / (n_a + n_b))) if n_a + n_b else 0
    ub = u - ua
    # never more distinct rows than a pool holds; give the excess to the other pool
    if ua > n_a:
        ub, ua = min(n_b, ub + ua - n_a), n_a
    if ub > n_b:
        ua, ub = min(n_a, ua + ub - n_b), n_b
    return BatchComposition(p, ua, ub)


class _PoolStream:
    """Pool ``k`` read as an endless stream of seeded permutations of its rows."""

    def __init__(self, rows: np.ndarray, seed: int, pool_id: int) -> None:
        self.rows = rows
        self.seed = seed
        self.pool_id = pool_id
        self._cache: dict[int, np.ndarray] = {}

    def _perm(self, pass_no: int) -> np.ndarray:
        perm = self._cache.get(pass_no)
        if perm is None:
            rng = np.random.default_rng([self.seed, self.pool_id, pass_no])
            perm = rng.permutation(len(self.rows))
            if len(self._cache) >= 2:  # a batch spans at most two passes
                self._cache.pop(min(self._cache))
            self._cache[pass_no] = perm
        return perm

    def take(self, start: int, count: int) -> np.ndarray:
        """Rows at stream positions ``start .. start+count-1`` (as indices into the features)."""
        n = len(self.rows)
        if count == 0 or n == 0:
            return np.zeros(0, dtype=np.int64)
        if count > n:
            raise ValueError(f"cannot take {count} distinct rows per batch from a pool of {n}")
        first, last = start // n, (start + count - 1) // n
        if first == last:
            off = start - first * n
            return self.rows[self._perm(first)[off:off + count]]
        split = (first + 1) * n - start
        return np.concatenate([
            self.rows[self._perm(first)[n - split:]],
            self.rows[self._perm(last)[:count - split]],
        ])


def _gather(rows: "RawRows | _Rows", idx: np.ndarray, v1: np.ndarray, v2: np.ndarray | None) -> Any:
    """Rows ``idx`` at views ``v1`` (then again at ``v2``, stacked) as encoder inputs or feature tensors."""
    if v2 is not None:
        idx, v1 = np.concatenate([idx, idx]), np.concatenate([v1, v2])
    out = rows.gather(idx, v1)
    return torch.from_numpy(out) if isinstance(out, np.ndarray) else out


class StepBatches(torch.utils.data.Dataset):
    """The loader's batches as a map-style dataset over steps, for ``DataLoader`` workers: item ``t`` is
    ``loader.batch_at(t)``, a pure function of ``(seed, t)``, so workers change nothing but where the
    decoding and tokenising run."""

    def __init__(self, loader: "SemiPairedLoader") -> None:
        self.loader = loader

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> "Batch":
        return self.loader.batch_at(int(step))


class SemiPairedLoader:
    """Iterable of :class:`Batch` mixing the three pools of a :class:`SemiPairedData`.

    Composition of the global batch (the same pairs per step for every method):

    * ``paired_per_batch`` pairs (default ``batch_size``), capped at the number of pairs: a
      method's pair throughput never depends on whether it also reads unpaired rows;
    * on top of them, ``unpaired_per_batch`` unpaired rows (default ``batch_size``) split between
      unpaired A and unpaired B in proportion to their pool sizes (never more than a pool holds;
      a method that uses no unpaired pool gets batches of pairs only). The batch of distinct
      items of such a method is larger: :attr:`composition` reports it;
    * with ``world_size > 1`` the pair count is rounded down to a multiple of ``world_size`` so
      that every rank holds the same number of pairs (the unpaired rows may split unevenly).

    One epoch is ``len(loader)`` steps: enough for the pool that needs the most steps to be seen
    once. Pools are sampled without replacement inside a pass and reshuffled (seeded) between
    passes; smaller pools simply start their next pass sooner.

    Views: ``a``/``b`` take, per row, view ``rng.integers(V)`` (``views="random"``, default) or the
    clean view 0 (``views="clean"``); ``a2``/``b2`` (``n_views=2``) take another view, different from
    the first whenever ``V >= 2`` (the same row when ``V == 1``). Draws depend only on
    ``(seed, step)``.

    ``rank``/``world_size``: rank ``r`` receives the ``r``-th contiguous slice of each of the three
    parts of the global batch; concatenating the ranks' pairs, then their unpaired rows, in rank
    order gives the global batch exactly.
    """

    def __init__(
        self,
        data: SemiPairedData,
        batch_size: int = 256,
        paired_per_batch: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        n_views: int = 2,
        views: Literal["random", "clean"] = "random",
        device: torch.device | str | None = None,
        unpaired_per_batch: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"SemiPairedLoader: batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"SemiPairedLoader: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if n_views not in (1, 2):
            raise ValueError(f"SemiPairedLoader: n_views must be 1 or 2, got {n_views}")
        if views not in ("random", "clean"):
            raise ValueError(f"SemiPairedLoader: views must be 'random' or 'clean', got {views!r}")
        self.data = data
        self.batch_size = int(batch_size)
        self.paired_per_batch = paired_per_batch
        self.unpaired_per_batch = unpaired_per_batch
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.n_views = int(n_views)
        self.views = views
        self.device = device
        self.composition = _compose(
            data.n_paired, data.n_unpaired_a, data.n_unpaired_b, self.batch_size, paired_per_batch, self.world_size,
            unpaired_per_batch,
        )
        c = self.composition
        if c.paired + c.unpaired_a == 0 or c.paired + c.unpaired_b == 0:
            raise ValueError(
                f"SemiPairedLoader: batches would hold no {'A' if c.paired + c.unpaired_a == 0 else 'B'} rows "
                f"(composition {c}, batch_size={batch_size}, world_size={world_size}, data={data}); "
                "increase batch_size or the pools"
            )
        self._streams = (
            _PoolStream(np.arange(data.n_paired, dtype=np.int64), self.seed, _POOL_PAIRED),
            _PoolStream(data.unpaired_a, self.seed, _POOL_A),
            _PoolStream(data.unpaired_b, self.seed, _POOL_B),
        )
        counts = ((data.n_paired, c.paired), (data.n_unpaired_a, c.unpaired_a), (data.n_unpaired_b, c.unpaired_b))
        self.steps_per_epoch = max(math.ceil(n / k) for n, k in counts if k > 0)
        self.position = 0  # next global step to yield

    # ------------------------------------------------------------------ sampling
    def __len__(self) -> int:
        return self.steps_per_epoch

    @property
    def epoch(self) -> int:
        """Epoch of the next batch."""
        return self.position // self.steps_per_epoch

    def _global_indices(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.composition
        pairs = self._streams[0].take(step * c.paired, c.paired)
        ua = self._streams[1].take(step * c.unpaired_a, c.unpaired_a)
        ub = self._streams[2].take(step * c.unpaired_b, c.unpaired_b)
        return pairs, ua, ub

    def _views(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-row views (v1, v2) for A rows and B rows of the global batch, from ``(seed, step)``."""
        c = self.composition
        rng = np.random.default_rng([self.seed, _VIEW_STREAM, step])
        out = []
        for n_rows, n_v in ((c.paired + c.unpaired_a, self.data.rows_a.n_views),
                            (c.paired + c.unpaired_b, self.data.rows_b.n_views)):
            v1 = rng.integers(0, n_v, size=n_rows) if self.views == "random" else np.zeros(n_rows, np.int64)
            if n_v >= 2:
                v2 = (v1 + rng.integers(1, n_v, size=n_rows)) % n_v
            else:
                v2 = v1.copy()
            out += [v1, v2]
        return out[0], out[1], out[2], out[3]

    def _shard(self, n: int) -> slice:
        """Contiguous slice of ``n`` rows for this rank (``np.array_split`` boundaries)."""
        per, extra = divmod(n, self.world_size)
        start = self.rank * per + min(self.rank, extra)
        return slice(start, start + per + (1 if self.rank < extra else 0))

    def batch_at(self, step: int) -> Batch:
        """The batch (this rank's shard) of global step ``step``; a pure function of (seed, step)."""
        if step < 0:
            raise ValueError(f"SemiPairedLoader.batch_at: step must be >= 0, got {step}")
        c = self.composition
        pairs, ua, ub = self._global_indices(step)
        va1, va2, vb1, vb2 = self._views(step)
        sp, sa, sb = self._shard(c.paired), self._shard(c.unpaired_a), self._shard(c.unpaired_b)
        # rows of this shard within the global A (pairs then unpaired A) and B orderings
        sel_a = np.concatenate([np.arange(c.paired)[sp], c.paired + np.arange(c.unpaired_a)[sa]])
        sel_b = np.concatenate([np.arange(c.paired)[sp], c.paired + np.arange(c.unpaired_b)[sb]])
        idx_a = np.concatenate([self.data.paired_a[pairs[sp]], ua[sa]])
        idx_b = np.concatenate([self.data.paired_b[pairs[sp]], ub[sb]])
        raw = isinstance(self.data.rows_a, RawRows) or isinstance(self.data.rows_b, RawRows)
        if raw:  # one collated batch per modality, both views of every row in it
            a = _gather(self.data.rows_a, idx_a, va1[sel_a], va2[sel_a] if self.n_views == 2 else None)
            b = _gather(self.data.rows_b, idx_b, vb1[sel_b], vb2[sel_b] if self.n_views == 2 else None)
            batch = Batch(a, b, len(pairs[sp]), None, None, idx_a, idx_b, step, stacked_views=self.n_views == 2)
            return batch.to(self.device) if self.device is not None else batch
        a = torch.from_numpy(self.data.rows_a.gather(idx_a, va1[sel_a]))
        b = torch.from_numpy(self.data.rows_b.gather(idx_b, vb1[sel_b]))
        a2 = b2 = None
        if self.n_views == 2:
            a2 = torch.from_numpy(self.data.rows_a.gather(idx_a, va2[sel_a]))
            b2 = torch.from_numpy(self.data.rows_b.gather(idx_b, vb2[sel_b]))
        batch = Batch(a, b, len(pairs[sp]), a2, b2, idx_a, idx_b, step)
        return batch.to(self.device) if self.device is not None else batch

    def __iter__(self) -> Iterator[Batch]:
        """Yield the remaining batches of the current epoch, advancing :attr:`position`."""
        end = (self.epoch + 1) * self.steps_per_epoch
        while self.position < end:
            step = self.position
            self.position += 1
            yield self.batch_at(step)

    # ------------------------------------------------------------------ state
    def set_epoch(self, epoch: int) -> None:
        """Move to the start of ``epoch``."""
        self.position = int(epoch) * self.steps_per_epoch

    def state_dict(self) -> dict[str, Any]:
        """Loader position and the settings that determine the batches (checked on load)."""
        c = self.composition
        return {
            "position": self.position,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "composition": [c.paired, c.unpaired_a, c.unpaired_b],
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position; refuses a state written with a different seed or composition."""
        c = self.composition
        mine = {"seed": self.seed, "batch_size": self.batch_size, "composition": [c.paired, c.unpaired_a, c.unpaired_b]}
        for key, value in mine.items():
            if key in state and list(np.atleast_1d(state[key])) != list(np.atleast_1d(value)):
                raise ValueError(
                    f"SemiPairedLoader.load_state_dict: saved {key}={state[key]} differs from this loader's {value}; "
                    "resume with the same data, batch size and seed"
                )
        self.position = int(state["position"])
