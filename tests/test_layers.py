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


def _layered_tasks():
    """Layer "2" of A and layer "1" of B see the same latent geometry; the others see noise."""
    from dataclasses import replace

    from test_protocol import _task

    base = _task()
    rng = np.random.default_rng(4)
    n = len(base.train_a)
    noise = lambda dim: rng.normal(size=(n, base.train_a.shape[1], dim)).astype(np.float32)  # noqa: E731
    sides_a = {"1": noise(12), "2": base.train_a}
    sides_b = {"1": base.train_b, "last": noise(10)}
    return {(la, lb): replace(base, train_a=fa, train_b=fb, encoders={"a": f"a@{la}", "b": f"b@{lb}"})
            for la, fa in sides_a.items() for lb, fb in sides_b.items()}


def test_each_run_chooses_its_layers_on_its_own_training_pairs(tmp_path) -> None:
    import json

    from test_protocol import _cfg

    from gentleclip.app.grid import run_grid
    from gentleclip.layers import LayerCandidates
    from gentleclip.pairing import make_pairing_split
    from gentleclip.run import HeadConfig

    candidates = LayerCandidates(_layered_tasks(), k=5)
    assert candidates.layers("a") == ["1", "2"] and candidates.layers("b") == ["1", "last"]
    res = run_grid(candidates, ["clip", "structure"], [0.2, 0.5], [0, 1], _cfg(max_steps=3), tmp_path,
                   HeadConfig(8, 16))
    assert len(res.rows) == 8
    for run in tmp_path.rglob("run.json"):
        info = json.loads(run.read_text())
        split = make_pairing_split(200, ratio=info["pairing_ratio"], seed=info["seed"])
        assert info["layers"]["best"] == ["2", "1"] and info["encoders"] == {"a": "a@2", "b": "b@1"}
        assert info["layers"]["n_pairs"] == len(split.paired) == info["n_paired"]  # that run's pairs, no others
        assert set(info["layers"]["scores"]) == {"1|1", "1|last", "2|1", "2|last"}


def test_layer_candidates_must_be_one_problem_and_layer_flags_parse() -> None:
    from dataclasses import replace

    from gentleclip.app.grid import parse_layers
    from gentleclip.layers import LayerCandidates

    tasks = _layered_tasks()
    key = next(iter(tasks))
    with pytest.raises(ValueError, match="not the same problem"):
        LayerCandidates({**tasks, key: replace(tasks[key], name="other")})
    assert parse_layers("2, 4,last,2", "--layers-a") == [2, 4, None] and parse_layers(None, "--layers-b") == [None]
    with pytest.raises(ValueError, match="--layers-b: cannot read 'top'"):
        parse_layers("1,top", "--layers-b")


def test_remote_sensing_benchmark_chooses_text_layers_per_run(tmp_path) -> None:
    """run_remote_sensing.py --layers-b end to end on a miniature dataset: it builds one task per text
    layer, each run records the layers it chose, and config.json lists the candidates."""
    import importlib.util
    import json
    from pathlib import Path

    from test_rs_fixtures import make_fake_remote_sensing

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("run_rs_layers", repo / "benchmarks" / "run_remote_sensing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = make_fake_remote_sensing(tmp_path / "data", image_size=32)
    out = tmp_path / "out"
    assert module.main(["--data-dir", str(data), "--image-encoder", "test_convnext", "--image-weights", "random",
                        "--cache-dir", str(tmp_path / "cache"), "--layers-b", "1,last", "--methods", "clip",
                        "--ratios", "0.5", "--seeds", "0", "--steps", "2", "--batch-size", "8",
                        "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["layer_selection"]["layers_b"] == ["1", "last"] and len(config["adapter"]) == 2
    (run,) = out.rglob("run.json")
    chosen = json.loads(run.read_text())["layers"]
    assert chosen["best"][1] in ("1", "last") and set(chosen["scores"]) == {"last|1", "last|last"}
