r"""Which encoder layers to align: cross-modal representational similarity measured on the training pairs.

STRUCTURE's second finding (Gröger et al., NeurIPS 2025, arXiv 2506.16895) is that aligning the
layers whose representations are most alike across the modalities beats aligning the last layers.
Given the features of several layers of each encoder for the same ``n`` training pairs (row ``i`` of
every array is pair ``i``), :func:`select_layers` scores every (layer of A, layer of B) combination
and returns the best. Two measures:

* ``"mutual_knn"`` (Huh et al., "The Platonic Representation Hypothesis", ICML 2024): the mean over
  the pairs of :math:`|N^A_k(i) \cap N^B_k(i)| / k`, where :math:`N_k(i)` are the ``k`` nearest other
  pairs of pair ``i`` by cosine similarity in that modality's space (1 = the same neighbourhoods);
* ``"cka"``: linear centred kernel alignment (Kornblith et al., ICML 2019),
  :math:`\lVert Y^\top X\rVert_F^2 / (\lVert X^\top X\rVert_F \lVert Y^\top Y\rVert_F)` of the centred
  features (invariant to rotations and isotropic scaling of either side).

Only training pairs may be passed: the selection must never see validation or test items.
:class:`LayerCandidates` holds one task per (layer of A, layer of B), all over the same items; the
benchmarks' grid (:func:`gentleclip.app.grid.run_one`) then chooses the layers of every run on that
run's own training pairs and records the choice in its ``run.json``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

import numpy as np

if TYPE_CHECKING:
    from gentleclip.task import AlignmentTask

__all__ = ["mutual_knn_alignment", "linear_cka", "select_layers", "LayerSelection", "LayerCandidates", "MEASURES"]

MEASURES = ("mutual_knn", "cka")


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"expected features [n, Da] and [n, Db] of the same n pairs, got {a.shape} and {b.shape}")
    if len(a) < 3:
        raise ValueError(f"need at least 3 pairs to compare neighbourhoods, got {len(a)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("features hold NaN or inf")
    return a, b


def _knn(x: np.ndarray, k: int) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    xn = x / np.where(norms > 0, norms, 1.0)
    sims = xn @ xn.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def mutual_knn_alignment(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean fraction of shared ``k`` nearest neighbours (cosine) of each pair in the two spaces (0..1)."""
    a, b = _check_pair(a, b)
    k = int(min(k, len(a) - 1))
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    na, nb = _knn(a, k), _knn(b, k)
    shared = [len(set(na[i]).intersection(nb[i])) for i in range(len(a))]
    return float(np.mean(shared) / k)


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA of the centred features (0..1; 1 = equal up to rotation and scale)."""
    a, b = _check_pair(a, b)
    a, b = a - a.mean(0), b - b.mean(0)
    cross = np.linalg.norm(b.T @ a) ** 2
    denom = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    return float(cross / denom) if denom > 0 else 0.0


@dataclass
class LayerSelection:
    """What :func:`select_layers` chose: ``best`` = (layer of A, layer of B), and every score."""

    best: tuple[str, str]
    measure: str
    scores: dict[tuple[str, str], float] = field(default_factory=dict)
    n_pairs: int = 0

    def to_dict(self) -> dict:
        """JSON-serialisable form (scores as ``"layer_a|layer_b"`` keys)."""
        return {"best": list(self.best), "measure": self.measure, "n_pairs": self.n_pairs,
                "scores": {f"{a}|{b}": v for (a, b), v in self.scores.items()}}


def select_layers(layers_a: Mapping[str, np.ndarray], layers_b: Mapping[str, np.ndarray],
                  measure: str = "mutual_knn", k: int = 10) -> LayerSelection:
    """Score every (layer of A, layer of B) on the training pairs and pick the most similar pair of layers.

    ``layers_a[name]`` is ``[n, D]`` (row ``i`` = pair ``i``, the same rows for every layer of both
    sides). Ties go to the layer pair listed first (A's order, then B's).
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    if not layers_a or not layers_b:
        raise ValueError("select_layers: give at least one layer of each side")
    score = (lambda x, y: mutual_knn_alignment(x, y, k)) if measure == "mutual_knn" else linear_cka
    scores = {(la, lb): score(xa, xb) for la, xa in layers_a.items() for lb, xb in layers_b.items()}
    best = max(scores, key=lambda key: scores[key])  # first maximum in insertion order
    n = len(next(iter(layers_a.values())))
    return LayerSelection(best=best, measure=measure, scores=scores, n_pairs=n)


@dataclass
class LayerCandidates:
    """One alignment problem encoded at several layers of each encoder, for per-run layer selection.

    ``tasks[(layer_a, layer_b)]`` are :class:`~gentleclip.task.AlignmentTask` objects over the same
    items in the same order (same name, split groups and validation items; only the encoders' layer
    differs). :meth:`choose` scores the layer pairs on given training pairs (at most ``max_pairs`` of
    them, a seeded sample, to bound the ``n x n`` neighbour search) and returns the chosen task.
    Any method runs on the chosen layers.
    """

    tasks: dict[tuple[str, str], "AlignmentTask"]
    measure: str = "mutual_knn"
    k: int = 10
    max_pairs: int = 2000

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("LayerCandidates: no tasks given")
        if self.measure not in MEASURES:
            raise ValueError(f"LayerCandidates: measure must be one of {MEASURES}, got {self.measure!r}")
        ref = self.reference
        for key, task in self.tasks.items():
            if task.name != ref.name or len(task.train_a) != len(ref.train_a) or len(task.train_b) != len(ref.train_b):
                raise ValueError(f"LayerCandidates: task {key} ({task.name}, {len(task.train_a)} items) is not the "
                                 f"same problem as {next(iter(self.tasks))} ({ref.name}, {len(ref.train_a)} items)")

    @property
    def reference(self) -> "AlignmentTask":
        """The first task: what the candidates share (name, items, groups, validation) is read from it."""
        return next(iter(self.tasks.values()))

    @property
    def name(self) -> str:
        """The task name the candidates share."""
        return self.reference.name

    def layers(self, side: str) -> list[str]:
        """The candidate layers of side ``"a"`` or ``"b"``, in order."""
        pos = {"a": 0, "b": 1}[side]
        return list(dict.fromkeys(key[pos] for key in self.tasks))

    def choose_for(self, ratio: float, seed: int, selection: str = "val") -> tuple["AlignmentTask", LayerSelection]:
        """The task of the run (``ratio``, ``seed``): its layers chosen on that run's training pairs (the split
        :func:`~gentleclip.run.fit_run` makes, less any pairs held out for validation)."""
        from gentleclip.pairing import make_pairing_split
        from gentleclip.run import validation_for

        ref = self.reference
        split = make_pairing_split(len(ref.train_a), ratio=ratio, seed=seed, groups=ref.groups)
        split, _ = validation_for(ref, split, selection, seed)
        return self.choose(split.paired, seed)

    def choose(self, pairs: np.ndarray, seed: int = 0) -> tuple["AlignmentTask", LayerSelection]:
        """The task of the layer pair most alike across the modalities on the training ``pairs`` (item
        rows), with the :class:`LayerSelection`."""
        pairs = np.asarray(pairs, dtype=np.int64)
        if len(pairs) > self.max_pairs:
            pairs = np.sort(np.random.default_rng(seed).choice(pairs, self.max_pairs, replace=False))
        if len(pairs) < 3:
            ref_key = next(iter(self.tasks))
            return self.tasks[ref_key], LayerSelection(best=ref_key, measure=f"none ({len(pairs)} pairs: the first "
                                                       "candidates)", n_pairs=int(len(pairs)))
        feats_a, feats_b = {}, {}
        for (la, lb), task in self.tasks.items():
            feats_a.setdefault(la, np.asarray(task.train_a[pairs, 0], dtype=np.float32))
            feats_b.setdefault(lb, np.asarray(task.train_b[pairs, 0], dtype=np.float32))
        chosen = select_layers(feats_a, feats_b, self.measure, self.k)
        if chosen.best not in self.tasks:
            raise ValueError(f"LayerCandidates: layers {chosen.best} were chosen but there is no task for them; give "
                             "a task for every (layer of A, layer of B)")
        return self.tasks[chosen.best], chosen
