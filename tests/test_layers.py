"""Layer selection by cross-modal similarity on the training pairs (gentleclip.layers)."""
from __future__ import annotations

import numpy as np
import pytest

from gentleclip.layers import linear_cka, mutual_knn_alignment, select_layers


def _latent(n: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 5))


def test_mutual_knn_and_cka_are_one_for_the_same_geometry_and_low_for_unrelated_features() -> None:
    z = _latent()
    rng = np.random.default_rng(1)
    rotation = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    assert mutual_knn_alignment(z, 2.5 * z @ rotation, k=5) == pytest.approx(1.0)
    assert linear_cka(z, 3.0 * z @ rotation) == pytest.approx(1.0)
    noise = rng.normal(size=(60, 5))
    assert mutual_knn_alignment(z, noise, k=5) < 0.3 and linear_cka(z, noise) < 0.3


def test_mutual_knn_counts_shared_neighbours_on_a_small_case() -> None:
    a = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    b = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])  # pairs 1 and 2 swapped places
    # k = 1: neighbours in A: 0<->1, 2<->3; in B: 0<->2, 1<->3 -> no pair keeps its neighbour
    assert mutual_knn_alignment(a, b, k=1) == 0.0
    assert mutual_knn_alignment(a, a, k=1) == 1.0


def test_select_layers_finds_the_planted_pair_and_reports_every_score() -> None:
    z = _latent(80)
    rng = np.random.default_rng(2)
    layers_a = {"a0": rng.normal(size=(80, 8)), "a1": z @ rng.normal(size=(5, 8)), "a2": rng.normal(size=(80, 8))}
    layers_b = {"b0": rng.normal(size=(80, 6)), "b1": np.tanh(z @ rng.normal(size=(5, 6)))}
    for measure in ("mutual_knn", "cka"):
        sel = select_layers(layers_a, layers_b, measure=measure, k=8)
        assert sel.best == ("a1", "b1") and len(sel.scores) == 6 and sel.n_pairs == 80
        assert sel.to_dict()["best"] == ["a1", "b1"] and "a1|b1" in sel.to_dict()["scores"]
    with pytest.raises(ValueError, match="same n pairs"):
        select_layers({"a": z}, {"b": z[:10]})
    with pytest.raises(ValueError, match="measure"):
        select_layers({"a": z}, {"b": z}, measure="svcca")
