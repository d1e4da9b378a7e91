"""Protein downstream scores of a joint space, built on :mod:`gentleclip.evaluate`.

Every function takes joint-space embeddings (``[n, d]`` arrays) and returns ``dict[str, float]``
with DESIGN.md metric names; :func:`to_rows` turns such a dict into the tidy
``{"task", "dataset", "metric", "value"}`` rows an :class:`~gentleclip.task.AlignmentTask`
returns.

* :func:`zero_shot_localisation` -- proteins vs ProtST location prompts (``zeroshot_top1``,
  ``zeroshot_top5``, ``zeroshot_balanced_acc``); proteins without a single ProtST class are left out.
* :func:`probe_metrics` -- ``linear_probe_acc`` (logistic regression) and ``knn_acc`` (cosine k-NN)
  trained on training-split embeddings, scored on test embeddings.
* :func:`protein_text_retrieval` -- ``p2t_R@k`` (protein query, text gallery), ``t2p_R@k``,
  medians, ``mean_recall``.
* :func:`location_clustering` -- k-means on the protein embeddings vs location labels (``nmi``,
  ``ari``, ``v_measure``).
* :func:`modality_gap` -- ``gap_centroid_distance``, ``pair_cosine_mean``,
  ``modality_classifier_acc``, ``uniformity`` of the true (protein, text) test pairs.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from gentleclip.evaluate import (
    clustering_metrics,
    gap_metrics,
    knn_accuracy,
    linear_probe_accuracy,
    retrieval_metrics,
    zero_shot_metrics,
)

from .locations import PROTST_LOCATIONS

__all__ = [
    "zero_shot_localisation",
    "probe_metrics",
    "protein_text_retrieval",
    "location_clustering",
    "modality_gap",
    "to_rows",
]


def to_rows(metrics: dict[str, float], task: str, dataset: str) -> list[dict]:
    """``{"task", "dataset", "metric", "value"}`` rows of a metric dict (values as floats)."""
    return [{"task": task, "dataset": dataset, "metric": k, "value": float(v)} for k, v in metrics.items()]


def zero_shot_localisation(
    protein_emb: Any,
    protst_labels: Sequence[str | None],
    class_emb: Any,
    class_names: Sequence[str] = PROTST_LOCATIONS,
    min_items: int = 1,
) -> dict[str, float]:
    """Zero-shot localisation of proteins against class prompt embeddings.

    Args:
        protein_emb: ``[n, d]`` protein embeddings.
        protst_labels: ProtST class name of each protein, or None to leave it out.
        class_emb: ``[C, d]`` or ``[C, T, d]`` prompt embeddings, in ``class_names`` order.
        class_names: the C class names.
        min_items: fewer scorable proteins than this -> ``{}`` (no score).
    """
    emb = np.asarray(protein_emb)
    if len(protst_labels) != len(emb):
        raise ValueError(f"protst_labels has {len(protst_labels)} entries for {len(emb)} embeddings")
    index = {c: i for i, c in enumerate(class_names)}
    unknown = sorted({lab for lab in protst_labels if lab is not None and lab not in index})
    if unknown:
        raise ValueError(f"protst_labels: {unknown} are not among the classes {list(class_names)}")
    keep = np.array([lab is not None for lab in protst_labels], dtype=bool)
    if keep.sum() < max(1, min_items):
        return {}
    y = np.array([index[lab] for lab in protst_labels if lab is not None], dtype=np.int64)
    return zero_shot_metrics(emb[keep], y, class_emb)


def probe_metrics(
    train_emb: Any,
    train_labels: Sequence,
    test_emb: Any,
    test_labels: Sequence,
    knn_k: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """``linear_probe_acc`` and ``knn_acc`` (percent); ``{}`` when training has < 2 classes."""
    ytr, yte = np.asarray(train_labels), np.asarray(test_labels)
    if len(np.unique(ytr)) < 2 or len(yte) == 0:
        return {}
    out = {"linear_probe_acc": linear_probe_accuracy(train_emb, ytr, test_emb, yte, seed=seed)}
    out["knn_acc"] = knn_accuracy(train_emb, ytr, test_emb, yte, k=min(knn_k, len(ytr)))
    return out


def protein_text_retrieval(protein_emb: Any, text_emb: Any) -> dict[str, float]:
    """Retrieval between aligned rows (row i of each is one protein and its text), both ways:
    ``p2t_R@1/5/10``, ``t2p_R@1/5/10``, ``p2t_median_rank``, ``t2p_median_rank``, ``mean_recall``."""
    n = len(np.asarray(protein_emb))
    return retrieval_metrics(protein_emb, text_emb, np.arange(n), names=("p2t", "t2p"))


def location_clustering(protein_emb: Any, labels: Sequence, seed: int = 0) -> dict[str, float]:
    """k-means (k = number of distinct labels) vs labels: ``nmi``, ``ari``, ``v_measure``."""
    y = np.asarray(labels)
    if len(np.unique(y)) < 2:
        return {}
    return clustering_metrics(protein_emb, y, seed=seed)


def modality_gap(protein_emb: Any, text_emb: Any, seed: int = 0) -> dict[str, float]:
    """Modality-gap metrics of aligned (protein, text) pairs (see :func:`gentleclip.evaluate.gap_metrics`)."""
    n = len(np.asarray(protein_emb))
    cv = max(2, min(5, n))
    return gap_metrics(protein_emb, text_emb, paired=True, seed=seed, cv=cv)
