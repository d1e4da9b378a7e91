"""Validation data: the held-out pairs that choose hyperparameters, steps and checkpoints.

A task gives a :class:`ValidationSet` built from data that no method trains on and no table
reports (RSICD ``val``, SCL2205 ``eval``, a group-aware share of the training proteins of user
data). Its :meth:`~ValidationSet.score` is the selection metric, higher is better:

* ``"mean_recall"`` (retrieval tasks): the mean of A->B and B->A Recall@1/5/10, in percent, over
  the validation pairs (``b`` may hold several B items per A item, e.g. 5 captions per image);
* ``"zeroshot_top1"`` (classification tasks): zero-shot top-1 accuracy, in percent, of the A items
  against the class prompts ``class_b`` embedded by the B head.

Two selection modes (:data:`SELECTION_MODES`): ``"val"`` scores on the task's own validation set,
outside the pair budget (as most semi-supervised papers do); ``"budget"`` takes the validation
pairs out of the given pairs (:func:`gentleclip.pairing.hold_out_pairs`) and scores on those, the
realistic setting of Oliver et al., "Realistic Evaluation of Deep Semi-Supervised Learning
Algorithms", NeurIPS 2018. The test split is never read by either.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["ValidationSet", "SELECTION_MODES", "METRICS"]

EmbedFn = Callable[[np.ndarray], np.ndarray]
SELECTION_MODES = ("val", "budget")
METRICS = ("mean_recall", "zeroshot_top1")


def _inputs(x: np.ndarray) -> np.ndarray:
    """Features as float32; raw items (object arrays, :mod:`gentleclip.items`) as they are."""
    x = np.asarray(x)
    return x if x.dtype == object else x.astype(np.float32, copy=False)


@dataclass
class ValidationSet:
    """Validation items of a task and the metric that selects on them.

    ``a [n, Da]``: A features (view 0), or raw items (``[n, 1]`` object arrays, :mod:`gentleclip.items`)
    for end-to-end training; the same for ``b`` and ``class_b``. ``b [n, Db]`` or ``[n, V, Db]``: the B
    item(s) of each A item
    (needed for ``mean_recall``). ``labels [n]``: class index of each A item into ``class_b`` (needed
    for ``zeroshot_top1``; ``-1`` marks an item without a class, left out). ``class_b [C, T, Db]``:
    features of ``T`` prompts for each of ``C`` classes. ``source`` says where the items come from.
    """

    metric: str
    a: np.ndarray
    b: np.ndarray | None = None
    labels: np.ndarray | None = None
    class_b: np.ndarray | None = None
    source: str = "validation split"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"ValidationSet: metric must be one of {METRICS}, got {self.metric!r}")
        self.a = _inputs(self.a)
        if self.a.ndim != 2:
            raise ValueError(f"ValidationSet: a must be [n, Da], got shape {self.a.shape}")
        if self.metric == "mean_recall":
            if self.b is None or len(self.b) != len(self.a) or np.asarray(self.b).ndim not in (2, 3):
                raise ValueError(f"ValidationSet: metric 'mean_recall' needs b [n={len(self.a)}, Db] or "
                                 f"[n, V, Db], got {None if self.b is None else np.asarray(self.b).shape}")
            self.b = _inputs(self.b)
        else:
            if self.labels is None or len(self.labels) != len(self.a):
                raise ValueError(f"ValidationSet: metric 'zeroshot_top1' needs labels [n={len(self.a)}]")
            if self.class_b is None or np.asarray(self.class_b).ndim != 3:
                raise ValueError("ValidationSet: metric 'zeroshot_top1' needs class_b [C, T, Db] (class prompts)")
            self.labels = np.asarray(self.labels, dtype=np.int64)
            self.class_b = _inputs(self.class_b)
            keep = self.labels >= 0
            if not keep.all():
                self.a, self.labels = self.a[keep], self.labels[keep]
                if self.b is not None:
                    self.b = np.asarray(self.b)[keep]
        if len(self.a) < 2:
            raise ValueError(f"ValidationSet ({self.source}): need at least 2 usable items, got {len(self.a)}")

    def __len__(self) -> int:
        return len(self.a)

    def score(self, embed_a: EmbedFn, embed_b: EmbedFn) -> float:
        """The selection metric of the joint space given by ``embed_a`` / ``embed_b`` (higher is better)."""
        from gentleclip.evaluate import retrieval_metrics, zero_shot_metrics

        za = np.asarray(embed_a(self.a))
        if self.metric == "mean_recall":
            b = self.b if self.b.ndim == 3 else self.b[:, None, :]
            n, v, d = b.shape
            zb = np.asarray(embed_b(b.reshape(n * v, d)))
            return float(retrieval_metrics(za, zb, np.repeat(np.arange(n), v))["mean_recall"])
        c, t, d = self.class_b.shape
        zc = np.asarray(embed_b(self.class_b.reshape(c * t, d))).reshape(c, t, -1)
        return float(zero_shot_metrics(za, self.labels, zc, ks=(1,))["zeroshot_top1"])

    def like(self, a: np.ndarray, b: np.ndarray | None, labels: np.ndarray | None, source: str) -> "ValidationSet":
        """A validation set of other items with this set's metric and class prompts (``--selection budget``)."""
        return ValidationSet(self.metric, a, b if self.metric == "mean_recall" else None,
                             labels if self.metric == "zeroshot_top1" else None, self.class_b, source)
