"""Evaluators of a joint embedding space; domain-agnostic.

Inputs are numpy arrays or torch tensors (converted; rows are L2-normalised defensively for
cosine-based metrics). Bad input (different lengths, NaN/inf, empty arrays, labels out of range,
no class prompts) raises ``ValueError`` naming the argument.

Units: every *recall* and *accuracy* is a percentage in [0, 100] (``*_R@k``, ``mean_recall``,
``zeroshot_*``, ``linear_probe_acc``, ``knn_acc``, ``modality_classifier_acc``); ranks are 1-based;
clustering scores (``nmi``, ``ari``, ``v_measure``), cosines and distances are in their natural
units. Each ``*_metrics`` function returns ``dict[str, float]`` keyed by the metric names of
DESIGN.md, ready for :meth:`gentleclip.app.report.Results.extend`.
"""
from __future__ import annotations

from .clustering import clustering_metrics, clustering_scores, joint_clustering_metrics, kmeans_labels
from .gap import gap_centroid_distance, gap_metrics, modality_classifier_accuracy, pair_cosine_mean, uniformity
from .probes import knn_accuracy, linear_probe_accuracy
from .retrieval import recall_at_k, retrieval_metrics, retrieval_ranks
from .zeroshot import (
    build_class_embeddings,
    class_prototypes,
    zero_shot_confusion,
    zero_shot_metrics,
    zero_shot_predict,
    zero_shot_scores,
)

__all__ = [
    "build_class_embeddings",
    "class_prototypes",
    "clustering_metrics",
    "clustering_scores",
    "gap_centroid_distance",
    "gap_metrics",
    "joint_clustering_metrics",
    "kmeans_labels",
    "knn_accuracy",
    "linear_probe_accuracy",
    "modality_classifier_accuracy",
    "pair_cosine_mean",
    "recall_at_k",
    "retrieval_metrics",
    "retrieval_ranks",
    "uniformity",
    "zero_shot_confusion",
    "zero_shot_metrics",
    "zero_shot_predict",
    "zero_shot_scores",
]
