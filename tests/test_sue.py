"""SUE's stages on small known cases: the graph's eigenvectors, the Nyström map, CCA on the pairs, the
MMD stage as a run, saving and loading, and no CCA without pairs."""
import json

import numpy as np
import pytest
import torch

from gentleclip.methods import get_method
from gentleclip.model import AlignmentModel
from gentleclip.run import NotApplicable
from gentleclip.sue import SUE, SpectralMap, spectral_eigenvectors


def _clusters(n_per: int = 40, dim: int = 6, seed: int = 0, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:3] * 3.0 + 1.0
    labels = np.repeat(np.arange(3), n_per)
    return (centres[labels] + noise * rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def _dense_graph(x: np.ndarray, n_neighbors: int, sigma: float) -> np.ndarray:
    """The symmetrised Gaussian kNN graph of the normalised rows, written out densely."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    w = np.zeros_like(d2)
    for i, row in enumerate(d2):
        nn = np.argsort(row)[:n_neighbors]
        w[i, nn] = np.exp(-row[nn] / sigma**2)
    return (w + w.T) / 2


def test_the_eigenvectors_solve_the_random_walk_eigenproblem_and_separate_clusters() -> None:
    x, labels = _clusters()
    psi, mu, sigma = spectral_eigenvectors(x, n_eigenvectors=4, n_neighbors=10, scale_k=5)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = np.sqrt(((xn[:, None] - xn[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    assert sigma == pytest.approx(np.median(np.sort(d, axis=1)[:, 4]), rel=1e-5)  # 5th neighbour, median
    w = _dense_graph(x, 10, sigma)
    p = w / w.sum(1, keepdims=True)
    np.testing.assert_allclose(p @ psi, psi * mu, atol=2e-4)  # P psi = mu psi, column by column
    assert np.all(np.diff(mu) <= 1e-6) and mu[0] < 1.0 + 1e-6
    np.testing.assert_allclose((psi**2).mean(0), 1.0, rtol=1e-5)
    # three clusters joined by a few edges: the two leading non-trivial eigenvectors tell them apart
    centroids = np.stack([psi[labels == c, :2].mean(0) for c in range(3)])
    spread = max(psi[labels == c, :2].std(0).max() for c in range(3))
    assert min(np.linalg.norm(centroids[i] - centroids[j]) for i in range(3) for j in range(i)) > 4 * spread


def test_a_graph_in_separate_parts_is_reported() -> None:
    x, _ = _clusters(noise=0.05)
    with pytest.warns(UserWarning, match="3 separate parts"):
        spectral_eigenvectors(x, n_eigenvectors=4, n_neighbors=10, scale_k=5)


def test_the_nystrom_map_is_one_random_walk_step_into_the_graph() -> None:
    x, _ = _clusters()
    spectral = SpectralMap.fit(x, n_eigenvectors=4, n_neighbors=10, scale_k=5)
    queries = _clusters(n_per=5, seed=1)[0]
    got = spectral(torch.from_numpy(queries)).numpy()
    ref = spectral.reference.float().numpy()
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    expected = []
    for row in q:
        d2 = ((ref - row) ** 2).sum(1)
        nn = np.argsort(d2)[:10]
        w = np.exp(-d2[nn] / float(spectral.sigma) ** 2)
        expected.append((w / w.sum()) @ spectral.psi.numpy()[nn] / spectral.mu.numpy())
    np.testing.assert_allclose(got, np.array(expected), atol=1e-4)


def test_the_map_computes_each_row_once_and_gives_what_the_formula_gives(monkeypatch) -> None:
    x, _ = _clusters()
    spectral = SpectralMap.fit(x, n_eigenvectors=4, n_neighbors=10, scale_k=5)
    queries = torch.from_numpy(_clusters(n_per=5, seed=1)[0])
    computed = []
    plain = SpectralMap._coordinates

    def counting(self, rows):
        computed.append(len(rows))
        return plain(self, rows)

    monkeypatch.setattr(SpectralMap, "_coordinates", counting)
    first = spectral(queries[:7])
    again = spectral(queries[[6, 2, 9, 8, 0]])  # two rows new, three seen
    assert computed == [7, 2]
    torch.testing.assert_close(first, plain(spectral, queries[:7]), atol=1e-6, rtol=0)
    torch.testing.assert_close(again, plain(spectral, queries[[6, 2, 9, 8, 0]]), atol=1e-6, rtol=0)
    spectral.psi.mul_(2.0)  # changed buffers (a loaded model): everything is computed again
    torch.testing.assert_close(spectral(queries[:3]), plain(spectral, queries[:3]), atol=1e-6, rtol=0)
    assert computed[-1] == 3


def test_cca_on_the_pairs_aligns_two_views_of_the_same_geometry() -> None:
    """B is an orthogonal rotation of A: the same graph, so stages 1 and 2 put partners on each other."""
    rng = np.random.default_rng(2)
    x, _ = _clusters(n_per=60, dim=8)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    y = (x @ q).astype(np.float32)
    pairs = np.stack([np.arange(20), np.arange(20)], axis=1)
    head_a, head_b, info = SUE(n_eigenvectors=6, n_components=3, n_neighbors=10, scale_k=5).build_heads(x, y, pairs, 0)
    assert info["sue"]["n_pairs"] == 20 and min(info["sue"]["cca_train_correlations"]) > 0.999
    new = _clusters(n_per=10, dim=8, seed=5)[0]
    with torch.no_grad():
        za = head_a.spectral(torch.from_numpy(new))  # stage 1-2 only: the MMD network comes later
        za = (za - head_a.cca_mean) @ head_a.cca_rotation
        zb = head_b(torch.from_numpy((new @ q).astype(np.float32)))
    sim = torch.nn.functional.normalize(za, dim=1) @ torch.nn.functional.normalize(zb, dim=1).T
    assert sim.diagonal().min() > 0.98 and sim.diagonal().mean() > 0.999  # (float16 reference: near ties)
    assert not list(head_b.parameters()) and len(list(head_a.parameters())) == 6  # only A's MMD network learns


def test_sue_needs_more_pairs_than_components() -> None:
    x, _ = _clusters(noise=1.0)
    with pytest.raises(NotApplicable, match="needs at least 9"):
        SUE().build_heads(x, x, np.zeros((8, 2), dtype=np.int64), 0)
    with pytest.raises(ValueError, match="n_components"):
        SUE(n_eigenvectors=4, n_components=8)


def test_a_sue_run_trains_only_the_mmd_network_and_saves_and_loads(tmp_path) -> None:
    from test_methods import _tiny_config, _tiny_task

    from gentleclip.run import HeadConfig, fit_run

    task, _ = _tiny_task()
    method = get_method("sue")
    assert method.uses == "pairs + unpaired A + B" and method.objective.enabled_terms() == ["mmd"]
    fitted = fit_run(task, method, 0.5, 0, _tiny_config(max_steps=40, save_model=True), HeadConfig(8, 16), tmp_path)
    log = (tmp_path / "log.csv").read_text().splitlines()
    header, rows = log[0].split(","), [r.split(",") for r in log[1:]]
    mmd = [float(r[header.index("mmd")]) for r in rows]
    assert np.mean(mmd[-10:]) < np.mean(mmd[:10])  # stage 3 brings A's distribution to B's
    info = fitted.info["pipeline"]["sue"]
    split = fitted.split  # the pairs and each unpaired pool: no item is seen in both unpaired pools
    assert info["n_pairs"] == len(split.paired) == 60
    assert (info["n_rows_a"], info["n_rows_b"]) == (60 + len(split.unpaired_a), 60 + len(split.unpaired_b)) == (90, 90)
    model_dir = tmp_path / "model"
    loaded = AlignmentModel.from_pretrained(model_dir)
    x = torch.from_numpy(np.asarray(task.train_a[:7, 0]))
    torch.testing.assert_close(loaded.head_a(x), fitted.model.head_a.eval()(x))
    assert json.loads((model_dir / "config.json").read_text())["head_a"]["class"] == "gentleclip.sue:SUEHead"


def test_tuning_selects_sues_own_settings_not_a_temperature_it_does_not_have() -> None:
    from gentleclip.app.tune import default_params, search_space
    from gentleclip.methods import with_config

    method = get_method("sue")
    space = search_space(method)
    assert set(space) == {"lr", "pipeline.n_eigenvectors", "pipeline.n_components", "pipeline.n_neighbors"}
    defaults = default_params(method, 1e-3)
    assert all(defaults[k] in space[k] for k in space)  # trial 0 is the registered default
    chosen = with_config(method, None, {"n_components": 16, "n_eigenvectors": 30})
    assert chosen.pipeline.n_components == 16 and method.pipeline.n_components == 8
    with pytest.raises(ValueError, match="no pipeline"):
        with_config(get_method("clip"), None, {"n_components": 16})
    assert "temperature" in search_space(get_method("clip"))


def test_repeated_items_do_not_collapse_the_gaussian_scale() -> None:
    """Texts repeat (one description per class): the scale comes from the items that are not copies."""
    x, _ = _clusters()
    repeated = np.concatenate([np.repeat(x[:3], 20, axis=0), x])  # 60 copies of 3 items, then 120 distinct
    psi, _, sigma = spectral_eigenvectors(repeated, n_eigenvectors=4, n_neighbors=10, scale_k=5)
    distinct = spectral_eigenvectors(x, n_eigenvectors=4, n_neighbors=10, scale_k=5)[2]
    assert 0.5 * distinct < sigma < 2 * distinct and np.isfinite(psi).all()
