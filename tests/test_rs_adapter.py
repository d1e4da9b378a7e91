"""RemoteSensingAdapter: the RSICD AlignmentTask on a generated miniature copy of the data, caching, evaluation."""
from __future__ import annotations

import numpy as np
import pytest
from test_rs_fixtures import HashTextEncoder, make_fake_remote_sensing

from domains.remote_sensing import EvalData, ImageEncoder, RemoteSensingAdapter


class CountingEncoder:
    """Wraps a FeatureEncoder and counts encode calls (to prove the cache serves the second run)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.name, self.identity, self.dim = inner.name, inner.identity, inner.dim

    def encode(self, items, view=0):
        self.calls += 1
        return self.inner.encode(items, view)


@pytest.fixture(scope="module")
def tiny_image_encoder():
    return ImageEncoder("test_convnext", weights="random", image_size=32, batch_size=8)


@pytest.fixture()
def fake(tmp_path):
    return make_fake_remote_sensing(tmp_path / "data")


def _adapter(fake, tmp_path, image_encoder, text_encoder, **kw):
    return RemoteSensingAdapter(fake, image_encoder=image_encoder, text_encoder=text_encoder,
                                cache_dir=tmp_path / "cache", **kw)  # fmt: skip


def test_build_task_shapes_rows_and_cache(fake, tmp_path, tiny_image_encoder):
    img, txt = CountingEncoder(tiny_image_encoder), HashTextEncoder()
    ad = _adapter(fake, tmp_path, img, txt)
    task = ad.build_task()
    train = ad.rsicd().split("train")
    n, d_img = len(train), tiny_image_encoder.dim
    assert n == 12
    assert task.train_a.shape == (n, 2, d_img) and task.train_b.shape == (n, 5, 32)
    assert task.extra_unpaired_b.shape == (3 + 3, 5, 32)  # Sydney 3 images + RSITMD 3 names
    assert task.dataset == "rsicd" and task.modality_names == ("image", "text") and task.groups is None
    assert task.encoders == {"image": tiny_image_encoder.identity, "text": HashTextEncoder.identity}
    cfg = ad.config()
    assert cfg["n_views"] == 2 and cfg["extra_text"] == ["sydney", "rsitmd"] and cfg["encoders"] == task.encoders
    import json

    json.dumps(cfg)  # JSON-serialisable
    # row i of train_a / train_b is image i of the train split and its own 5 captions
    np.testing.assert_allclose(task.train_a[:, 0], tiny_image_encoder.encode(train.images, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(task.train_a[:, 1], tiny_image_encoder.encode(train.images, 1), rtol=1e-5, atol=1e-6)
    for i in (0, 7):
        np.testing.assert_allclose(task.train_b[i], txt.encode(train[i].captions), atol=1e-6)
    assert not np.allclose(task.train_a[:, 0], task.train_a[:, 1])

    rng = np.random.default_rng(0)
    wa, wb = rng.normal(size=(d_img, 16)), rng.normal(size=(32, 16))
    rows = task.evaluate(lambda x: x @ wa, lambda x: x @ wb)
    got = {(r["task"], r["dataset"], r["metric"]) for r in rows}
    for m in ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "mean_recall"):
        assert ("retrieval", "rsicd", m) in got
    for ds in ("rsicd", "ucm"):
        for task_name, m in (("zeroshot", "zeroshot_top1"), ("linear_probe", "linear_probe_acc"),
                             ("clustering", "nmi"), ("clustering", "v_measure")):  # fmt: skip
            assert (task_name, ds, m) in got
    assert ("gap", "rsicd", "gap_centroid_distance") in got
    assert all(np.isfinite(r["value"]) and set(r) == {"task", "dataset", "metric", "value"} for r in rows)

    # a second adapter on the same cache computes nothing
    img2, txt2 = CountingEncoder(tiny_image_encoder), HashTextEncoder()
    task2 = _adapter(fake, tmp_path, img2, txt2).build_task()
    assert img2.calls == 0 and txt2.calls == 0
    np.testing.assert_array_equal(task2.train_a, task.train_a)


def test_evaluate_wiring_gives_perfect_scores_on_a_perfect_space(fake, tmp_path, tiny_image_encoder):
    """Images and captions that share one feature per scene item -> recall 100, zero-shot 100."""
    ad = _adapter(fake, tmp_path, tiny_image_encoder, HashTextEncoder())
    rng = np.random.default_rng(1)
    n_test, n_cls = 10, 3
    labels = np.arange(n_test) % n_cls
    protos = np.eye(8)[:n_cls] * 5
    test_img = rng.normal(size=(n_test, 8)) + protos[labels]
    ev = EvalData(
        test_img=test_img, test_txt=np.repeat(test_img, 5, axis=0) + 1e-4 * rng.normal(size=(5 * n_test, 8)),
        test_txt_to_img=np.repeat(np.arange(n_test), 5), rsicd_classes=["a", "b", "c"],
        rsicd_prompts=np.repeat(protos[:, None, :], 2, axis=1), train_img=test_img, train_labels=labels,
        test_labels=labels, ucm_classes=["a", "b", "c"], ucm_img=test_img, ucm_labels=labels,
        ucm_prompts=np.repeat(protos[:, None, :], 2, axis=1),
    )  # fmt: skip
    rows = {(r["task"], r["dataset"], r["metric"]): r["value"] for r in ad.evaluate(lambda x: x, lambda x: x, ev)}
    assert rows[("retrieval", "rsicd", "i2t_R@1")] == 100.0 and rows[("retrieval", "rsicd", "t2i_R@1")] == 100.0
    assert rows[("zeroshot", "rsicd", "zeroshot_top1")] == 100.0 and rows[("zeroshot", "ucm", "zeroshot_top1")] == 100.0
    assert rows[("clustering", "ucm", "nmi")] == pytest.approx(1.0)
    assert rows[("linear_probe", "rsicd", "linear_probe_acc")] == 100.0
    # a shuffled text side breaks retrieval: the metric can fail
    perm = np.roll(np.arange(5 * n_test), 5)
    ev.test_txt = ev.test_txt[perm]
    rows = {(r["task"], r["metric"]): r["value"] for r in ad.evaluate(lambda x: x, lambda x: x, ev)}
    assert rows[("retrieval", "i2t_R@1")] < 50.0


def test_options_subset_extra_text_and_real_task_with_grid(fake, tmp_path, tiny_image_encoder):
    from gentleclip.app.grid import run_grid
    from gentleclip.train import TrainConfig

    ad = _adapter(fake, tmp_path, tiny_image_encoder, HashTextEncoder(), extra_text=("ucm",), n_views=3)
    task = ad.build_task(max_train=5)
    assert task.train_a.shape[:2] == (5, 3)
    assert task.extra_unpaired_b.shape[0] == 6  # all 6 UCM-captions records, with or without image
    assert ad.build_task(max_train=5, extra_text=()).extra_unpaired_b is None
    assert ad.build_task(max_train=5, max_extra_text=4).extra_unpaired_b.shape[0] == 4
    # duplicated texts are encoded once and copied back in order
    feats = ad.text_features(["b", "a", "b", "c", "a"])
    np.testing.assert_array_equal(feats[0], feats[2])
    np.testing.assert_array_equal(feats[1], feats[4])
    np.testing.assert_allclose(feats, HashTextEncoder().encode(["b", "a", "b", "c", "a"]), atol=1e-6)
    # the core's grid runner trains and scores on the task end to end
    res = run_grid(task, ["gentle"], [0.4], [0], TrainConfig(max_steps=3, batch_size=8, device="cpu"),
                   tmp_path / "out")  # fmt: skip
    assert any(r["metric"] == "mean_recall" and r["method"] == "gentle" for r in res.rows)


def test_missing_data_gives_instructions(tmp_path, tiny_image_encoder):
    with pytest.raises(FileNotFoundError, match=r"does not exist\.\nExpected layout under data_dir"):
        RemoteSensingAdapter(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    ad = RemoteSensingAdapter(tmp_path / "empty", image_encoder=tiny_image_encoder, text_encoder=HashTextEncoder(),
                              cache_dir=tmp_path / "cache")  # fmt: skip
    with pytest.raises(FileNotFoundError, match=r"(?s)RSICD caption file not found at "
                                                r".*dataset_rsicd\.json.*\n.*rsicd/images"):
        ad.build_task()
    with pytest.raises(ValueError, match="unknown set"):
        RemoteSensingAdapter(tmp_path / "empty", extra_text=("coco",))


def test_parent_data_dir_and_missing_optional_sets(fake, tmp_path, tiny_image_encoder):
    ad = RemoteSensingAdapter(fake.parent, image_encoder=tiny_image_encoder, text_encoder=HashTextEncoder(),
                              cache_dir=tmp_path / "cache", extra_text=("sydney",), ucm=False)  # fmt: skip
    assert ad.data_dir == fake
    import shutil

    shutil.rmtree(fake / "sydney")
    with pytest.raises(FileNotFoundError, match="Sydney-captions folder not found"):
        ad.build_task()
    task = ad.build_task(extra_text=())
    rows = task.evaluate(lambda x: x[:, :8], lambda x: x[:, :8])
    assert not any(r["dataset"] == "ucm" for r in rows)


def test_real_data_records_and_default_text_encoder(shared_data, tmp_path):
    """Adapter on the real folders: datasets and splits, and the default text encoder is usable."""
    ad = RemoteSensingAdapter(shared_data, cache_dir=tmp_path / "cache")
    rsicd = ad.rsicd()
    assert len(rsicd.split("train")) == 7862 and len(rsicd.split("test")) == 1093
    assert len(ad.ucm_scenes()) == 1600
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extra = ad.extra_text_records()
    assert len(extra) == 555 + len(ad.rsitmd_captions())
    prompts = ad.prompt_features(["BaseballField", "Beach"])
    assert prompts.shape == (2, len(ad.templates), ad.text_encoder.dim)


def test_corrupt_and_missing_rsicd_images(fake, tmp_path, tiny_image_encoder):
    from domains.remote_sensing import ImageReadError, RemoteSensingDataWarning

    (fake / "rsicd" / "images" / "airport_1.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (fake / "rsicd" / "images" / "beach_2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"dataset_rsicd\.json: images\[\d+\] \(beach_2\.jpg\): image file .* "
                                                r"not found"):
        _adapter(fake, tmp_path, tiny_image_encoder, HashTextEncoder()).rsicd()
    ad = _adapter(fake, tmp_path, tiny_image_encoder, HashTextEncoder(), on_error="skip")
    with pytest.warns(RemoteSensingDataWarning, match="skipped 1 record"):
        assert len(ad.rsicd()) == 23
    with pytest.raises(ImageReadError, match=r"airport_1\.jpg"):  # found only when encoding...
        ad.build_task(extra_text=())
    ad = _adapter(fake, tmp_path, tiny_image_encoder, HashTextEncoder(), on_error="skip", verify_images=True)
    with pytest.warns(RemoteSensingDataWarning, match="skipped 2 record"):  # ...or up front with verify_images
        rs = ad.rsicd()
    assert len(rs) == 22 and {s.record.split(" ")[1] for s in rs.report.skipped} == {"(airport_1.jpg)", "(beach_2.jpg)"}
    task = ad.build_task(extra_text=())
    assert len(task.train_a) == len(rs.split("train"))
