"""Low-pairing splits: paired / unpaired-A / unpaired-B pools with no hidden correspondence.

A dataset of ``N`` aligned items (item ``i`` is the true pair ``(a_i, b_i)``) is split into

* ``paired``: items whose two halves are shown to the model as a pair;
* ``unpaired_a``: items of which only the A half is used;
* ``unpaired_b``: items of which only the B half is used.

Unpaired must mean unpaired. In the default ``mode="disjoint"`` the non-paired items are split
between the A side and the B side, so no item sits in both unpaired pools and no unpaired A row
has its true partner among the unpaired B rows (or among the pairs). ``mode="transductive"`` is
an explicit opt-in in which *both* unpaired pools hold every non-paired item, as the official
Set-CLIP code did: the true partner of every unpaired A row is then present, unlabelled, in the
unpaired B pool, which is easier than the disjoint setting and must be reported as such.

Optional group labels (e.g. sequence-identity clusters, scenes, source images) keep a whole group
on one side: a group is entirely paired, entirely A-only, or entirely B-only.
"""
from __future__ import annotations

import json
import math
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

SPLIT_FORMAT = "gentleclip.pairing_split"
FORMAT_VERSION = 1
MODES = ("disjoint", "transductive")


def _as_index_array(values: Any, name: str) -> np.ndarray:
    arr = np.asarray([] if values is None else values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"PairingSplit: {name} must be a 1-D array of integer item indices, got dtype {arr.dtype} "
                         f"and shape {arr.shape}")
    return arr.astype(np.int64)


def _check_n_items(n_items: Any) -> int:
    try:
        n = operator.index(n_items)
    except TypeError:
        raise ValueError(f"n_items must be an integer, got {n_items!r}") from None
    if n < 1:
        raise ValueError(f"n_items must be at least 1, got {n}")
    return n


def _group_codes(groups: Any, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, codes)``: the groups as an array and integer codes 0..G-1 per item."""
    labels = np.asarray(groups)
    if labels.ndim != 1 or labels.shape[0] != n_items:
        raise ValueError(f"groups must be a 1-D sequence with one label per item ({n_items}), got shape {labels.shape}")
    _, codes = np.unique(labels, return_inverse=True)
    return labels, codes.reshape(-1).astype(np.int64)


@dataclass(eq=False)
class PairingSplit:
    """A low-pairing split of ``n_items`` aligned items (see the module docstring).

    ``paired``, ``unpaired_a``, ``unpaired_b`` are sorted int64 arrays of item indices.
    ``ratio`` is the requested pairing ratio (``n_pairs / n_items`` when a count was requested),
    ``n_pairs`` the number of paired items actually drawn, ``seed`` the seed that drew it,
    ``mode`` ``"disjoint"`` or ``"transductive"``, ``groups`` the per-item group labels or None.
    The invariants are checked on construction (:meth:`validate`).
    """

    paired: np.ndarray
    unpaired_a: np.ndarray
    unpaired_b: np.ndarray
    n_items: int
    ratio: float
    n_pairs: int
    seed: int
    mode: str = "disjoint"
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.n_items = _check_n_items(self.n_items)
        self.paired = np.sort(_as_index_array(self.paired, "paired"))
        self.unpaired_a = np.sort(_as_index_array(self.unpaired_a, "unpaired_a"))
        self.unpaired_b = np.sort(_as_index_array(self.unpaired_b, "unpaired_b"))
        self.ratio = float(self.ratio)
        self.n_pairs = int(self.n_pairs)
        self.seed = int(self.seed)
        if self.groups is not None:
            self.groups = np.asarray(self.groups)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise a ``ValueError`` unless the split is consistent and leaks no correspondence.

        Checks: indices in ``[0, n_items)`` and unique within each pool; ``n_pairs == len(paired)``;
        ``ratio`` in [0, 1]; no paired item in an unpaired pool; ``disjoint``: no item in both
        unpaired pools; ``transductive``: both unpaired pools hold the same items; with groups,
        every group lies on one side only (paired / A-only / B-only, or paired / unpaired).
        """
        if self.mode not in MODES:
            raise ValueError(f"PairingSplit: mode must be one of {MODES}, got {self.mode!r}")
        if not (0.0 <= self.ratio <= 1.0):
            raise ValueError(f"PairingSplit: ratio must be in [0, 1], got {self.ratio}")
        for name, pool in (("paired", self.paired), ("unpaired_a", self.unpaired_a), ("unpaired_b", self.unpaired_b)):
            if pool.size and (pool[0] < 0 or pool[-1] >= self.n_items):
                raise ValueError(f"PairingSplit: {name} holds item indices outside [0, {self.n_items})")
            if pool.size and np.any(np.diff(pool) == 0):
                raise ValueError(f"PairingSplit: {name} lists an item more than once")
        if self.n_pairs != self.paired.size:
            raise ValueError(f"PairingSplit: n_pairs is {self.n_pairs} but paired holds {self.paired.size} items")
        for name, pool in (("unpaired_a", self.unpaired_a), ("unpaired_b", self.unpaired_b)):
            if np.intersect1d(self.paired, pool).size:
                raise ValueError(f"PairingSplit: paired items also appear in {name}")
        both = np.intersect1d(self.unpaired_a, self.unpaired_b)
        if self.mode == "disjoint" and both.size:
            raise ValueError(f"PairingSplit: mode 'disjoint' but {both.size} item(s) are in both unpaired pools "
                             f"(e.g. item {int(both[0])}), so their true partners would leak")
        if self.mode == "transductive" and not np.array_equal(self.unpaired_a, self.unpaired_b):
            raise ValueError("PairingSplit: mode 'transductive' requires both unpaired pools to hold the same items")
        if self.groups is not None:
            _, codes = _group_codes(self.groups, self.n_items)
            side = np.full(self.n_items, -1, dtype=np.int64)  # -1: unused item
            side[self.paired] = 0
            side[self.unpaired_a] = 1
            if self.mode == "disjoint":
                side[self.unpaired_b] = 2
            used = side >= 0
            pairs = np.unique(np.stack([codes[used], side[used]], axis=1), axis=0)
            if pairs.shape[0] != np.unique(pairs[:, 0]).size:
                values, counts = np.unique(pairs[:, 0], return_counts=True)
                bad = np.flatnonzero(codes == values[counts > 1][0])[0]
                raise ValueError(f"PairingSplit: group {self.groups[bad]!r} straddles several pools; "
                                 "a group must be entirely paired, A-only or B-only")

    # ------------------------------------------------------------------ views
    @property
    def n_unpaired_a(self) -> int:
        """Number of items in the unpaired-A pool."""
        return int(self.unpaired_a.size)

    @property
    def n_unpaired_b(self) -> int:
        """Number of items in the unpaired-B pool."""
        return int(self.unpaired_b.size)

    def summary(self) -> str:
        """One line: mode, ratio and pool sizes."""
        return (f"PairingSplit({self.mode}, ratio={self.ratio:g}, seed={self.seed}): {self.n_pairs} paired, "
                f"{self.n_unpaired_a} unpaired A, {self.n_unpaired_b} unpaired B of {self.n_items} items")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PairingSplit):
            return NotImplemented
        same_groups = (self.groups is None and other.groups is None) or (
            self.groups is not None and other.groups is not None and np.array_equal(self.groups, other.groups)
        )
        return (
            same_groups
            and (self.n_items, self.ratio, self.n_pairs, self.seed, self.mode)
            == (other.n_items, other.ratio, other.n_pairs, other.seed, other.mode)
            and all(np.array_equal(getattr(self, k), getattr(other, k)) for k in ("paired", "unpaired_a", "unpaired_b"))
        )

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict with the format name and version."""
        return {
            "format": SPLIT_FORMAT,
            "version": FORMAT_VERSION,
            "n_items": self.n_items,
            "ratio": self.ratio,
            "n_pairs": self.n_pairs,
            "seed": self.seed,
            "mode": self.mode,
            "paired": self.paired.tolist(),
            "unpaired_a": self.unpaired_a.tolist(),
            "unpaired_b": self.unpaired_b.tolist(),
            "groups": None if self.groups is None else self.groups.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], n_items: int | None = None) -> PairingSplit:
        """Inverse of :meth:`to_dict`; ``n_items`` (optional) must match the stored one."""
        if data.get("format") != SPLIT_FORMAT:
            raise ValueError(f"not a pairing split: expected format {SPLIT_FORMAT!r}, got {data.get('format')!r}")
        version = data.get("version")
        if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
            raise ValueError(f"unsupported pairing split version {version!r}; this gentleclip reads "
                             f"1..{FORMAT_VERSION}")
        missing = [k for k in ("n_items", "ratio", "n_pairs", "seed", "mode", "paired", "unpaired_a", "unpaired_b")
                   if k not in data]
        if missing:
            raise ValueError(f"pairing split is missing field(s) {missing}")
        if n_items is not None and int(data["n_items"]) != n_items:
            raise ValueError(f"the pairing split was made for {data['n_items']} items but the dataset has {n_items}")
        return cls(
            paired=np.asarray(data["paired"], dtype=np.int64),
            unpaired_a=np.asarray(data["unpaired_a"], dtype=np.int64),
            unpaired_b=np.asarray(data["unpaired_b"], dtype=np.int64),
            n_items=data["n_items"],
            ratio=data["ratio"],
            n_pairs=data["n_pairs"],
            seed=data["seed"],
            mode=data["mode"],
            groups=None if data.get("groups") is None else np.asarray(data["groups"]),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the split as JSON (atomically); returns the path."""
        from gentleclip.io import atomic_write_json

        return atomic_write_json(path, self.to_dict(), indent=None)

    @classmethod
    def load(cls, path: str | os.PathLike, n_items: int | None = None) -> PairingSplit:
        """Read a split written by :meth:`save`; with ``n_items``, check it was made for that many items."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object holding a pairing split")
        try:
            return cls.from_dict(data, n_items=n_items)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def _target_pairs(n_items: int, ratio: float | None, n_pairs: int | None) -> tuple[int, float]:
    if (ratio is None) == (n_pairs is None):
        raise ValueError("make_pairing_split: give exactly one of ratio (in [0, 1]) or n_pairs (a count)")
    if ratio is not None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating, np.integer)) \
                or not math.isfinite(ratio) or not 0.0 <= ratio <= 1.0:
            raise ValueError(f"make_pairing_split: ratio must be a number in [0, 1], got {ratio!r}")
        k = int(math.floor(float(ratio) * n_items + 0.5))
        if ratio > 0:
            k = max(k, 1)
        return min(k, n_items), float(ratio)
    try:
        k = operator.index(n_pairs)
    except TypeError:
        raise ValueError(f"make_pairing_split: n_pairs must be an integer, got {n_pairs!r}") from None
    if k < 0 or k > n_items:
        raise ValueError(f"make_pairing_split: n_pairs must be in [0, {n_items}] (the number of items), got {k}")
    return k, k / n_items


def _first_fit(order: np.ndarray, sizes: np.ndarray, capacity: int) -> np.ndarray:
    """Groups chosen by first-fit: walk ``order`` and take each group that still fits ``capacity``.

    Vectorised in rounds: each round keeps the groups that fit the remaining capacity and takes
    the longest prefix of them whose sizes fit; the capacity only shrinks, so a skipped group never
    fits later and the result equals the sequential first-fit.
    """
    chosen = np.zeros(sizes.shape[0], dtype=bool)
    remaining = order
    while capacity > 0:
        remaining = remaining[sizes[remaining] <= capacity]
        if remaining.size == 0:
            break
        take = np.cumsum(sizes[remaining]) <= capacity
        picked = remaining[take]
        chosen[picked] = True
        capacity -= int(sizes[picked].sum())
        remaining = remaining[~take]
    return chosen


def make_pairing_split(
    n_items: int,
    ratio: float | None = None,
    n_pairs: int | None = None,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
    mode: str = "disjoint",
    unpaired_a_fraction: float = 0.5,
) -> PairingSplit:
    """Draw a low-pairing split of ``n_items`` aligned items; deterministic given ``seed``.

    Give exactly one of ``ratio`` (in [0, 1]; ``n_pairs = round(ratio * n_items)``, rounding
    halves up, and at least 1 when ``ratio > 0``) or ``n_pairs`` (a count in [0, n_items]).
    ``mode="disjoint"`` (default) puts each non-paired item on exactly one side: a share
    ``unpaired_a_fraction`` (rounded) of them in ``unpaired_a`` and the rest in ``unpaired_b``.
    ``mode="transductive"`` puts every non-paired item in both unpaired pools (see the module
    docstring: the true partners are then present, unlabelled).

    With ``groups`` (one label per item), whole groups are assigned, in a seeded random order, by
    first-fit: a group becomes paired if it still fits the requested number of pairs, then A-only
    if it fits the A share, else B-only. The number of pairs is then at most the requested one
    (exactly it when group sizes allow), but at least one group when ``ratio > 0`` / ``n_pairs > 0``
    (the smallest group, if no group is small enough). ``n_pairs`` of the result is the actual count.
    """
    n = _check_n_items(n_items)
    if mode not in MODES:
        raise ValueError(f"make_pairing_split: mode must be one of {MODES}, got {mode!r}")
    if not 0.0 <= unpaired_a_fraction <= 1.0:
        raise ValueError(f"make_pairing_split: unpaired_a_fraction must be in [0, 1], got {unpaired_a_fraction!r}")
    try:
        seed = operator.index(seed)
    except TypeError:
        raise ValueError(f"make_pairing_split: seed must be an integer, got {seed!r}") from None
    k, ratio_value = _target_pairs(n, ratio, n_pairs)
    rng = np.random.default_rng(seed)

    if groups is None:
        labels = None
        perm = rng.permutation(n)
        paired, rest = perm[:k], perm[k:]
        n_a = int(math.floor(unpaired_a_fraction * rest.size + 0.5))
        side_a, side_b = rest[:n_a], rest[n_a:]
    else:
        labels, codes = _group_codes(groups, n)
        sizes = np.bincount(codes)
        order = rng.permutation(sizes.size)
        is_paired = _first_fit(order, sizes, k)
        if k > 0 and not is_paired.any():
            smallest = order[np.argmin(sizes[order])]  # first of the smallest groups in the random order
            is_paired[smallest] = True
        rest_order = order[~is_paired[order]]
        n_rest = int(sizes[rest_order].sum())
        is_a = _first_fit(rest_order, sizes, int(math.floor(unpaired_a_fraction * n_rest + 0.5)))
        paired = np.flatnonzero(is_paired[codes])
        side_a = np.flatnonzero(~is_paired[codes] & is_a[codes])
        side_b = np.flatnonzero(~is_paired[codes] & ~is_a[codes])
        rest = np.concatenate([side_a, side_b])

    if mode == "transductive":
        side_a = side_b = rest
    return PairingSplit(
        paired=paired,
        unpaired_a=side_a,
        unpaired_b=side_b,
        n_items=n,
        ratio=ratio_value,
        n_pairs=int(np.size(paired)),
        seed=seed,
        mode=mode,
        groups=labels,
    )


def hold_out_pairs(split: PairingSplit, fraction: float = 0.2, seed: int = 0) -> tuple[PairingSplit, np.ndarray]:
    """Take a validation share out of the given pairs (``--selection budget``).

    Returns ``(train_split, validation_items)``: ``fraction`` of the paired items (rounded, at least
    one, at most all but one; whole groups when the split has groups, by first-fit in a seeded
    order) move out of ``paired``; they join no other pool, so no method trains on them. With fewer
    than two pairs there is nothing to hold out: the split comes back unchanged with no validation
    items. This is the realistic setting of Oliver et al. (NeurIPS 2018): validation pairs cost
    pairs from the budget.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"hold_out_pairs: fraction must be in (0, 1), got {fraction!r}")
    paired = split.paired
    if paired.size < 2:
        return split, np.zeros(0, dtype=np.int64)
    k = min(max(int(math.floor(fraction * paired.size + 0.5)), 1), paired.size - 1)
    rng = np.random.default_rng([int(seed), 0x7A1])
    if split.groups is None:
        val = rng.permutation(paired)[:k]
    else:
        _, codes = _group_codes(split.groups, split.n_items)
        pcodes, inverse = np.unique(codes[paired], return_inverse=True)
        if pcodes.size < 2:  # one group of pairs cannot be split without straddling
            return split, np.zeros(0, dtype=np.int64)
        sizes = np.bincount(inverse)
        chosen = _first_fit(rng.permutation(pcodes.size), sizes, k)
        if chosen.all():  # keep at least one group of pairs for training
            chosen[np.flatnonzero(chosen)[-1]] = False
        if not chosen.any():  # every group is larger than k: the smallest one
            chosen[np.argmin(sizes)] = True
        val = paired[chosen[inverse]]
    val = np.sort(val)
    train = PairingSplit(paired=np.setdiff1d(paired, val), unpaired_a=split.unpaired_a, unpaired_b=split.unpaired_b,
                         n_items=split.n_items, ratio=split.ratio, n_pairs=int(paired.size - val.size),
                         seed=split.seed, mode=split.mode, groups=split.groups)
    return train, val
