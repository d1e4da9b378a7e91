"""Remote sensing end-to-end: the adapter's raw-item mode feeds image files and caption groups to the
towers, clip and gentle fine-tune both encoders, and the test split is scored through them."""
from __future__ import annotations

import math

import numpy as np
import pytest
from test_rs_fixtures import make_fake_remote_sensing

from domains.remote_sensing import ImageEncoder, RemoteSensingAdapter
from domains.text import TextEncoder
from gentleclip.finetune import EndToEnd, FinetuneConfig
from gentleclip.methods import get_method
from gentleclip.run import HeadConfig, embed_fns, fit_run
from gentleclip.train import TrainConfig


@pytest.mark.parametrize("method", ["clip", "gentle"])
def test_rsicd_raw_items_fine_tune_both_towers(tmp_path, method) -> None:
    data = make_fake_remote_sensing(tmp_path / "data")
    image, text = ImageEncoder("test_convnext", weights="random", image_size=32, batch_size=8), TextEncoder()
    adapter = RemoteSensingAdapter(data, image_encoder=image, text_encoder=text, cache_dir=tmp_path / "cache",
                                   raw_items=True)
    task = adapter.build_task()
    assert task.train_a.dtype == object and task.train_b.shape[1:] == (5, 1)  # 5 caption views per image
    assert task.train_b[0, 0, 0] != task.train_b[0, 1, 0]  # the captions themselves, not copies
    assert not list((tmp_path / "cache").rglob("features.npy"))  # nothing encoded ahead
    e2e = EndToEnd((image.tower(), text.tower()), FinetuneConfig(a="last1", b="last1"))
    cfg = TrainConfig(max_steps=3, batch_size=8, lr=1e-3, log_every=1, save_model=False, tensorboard=False,
                      device="cpu", eval_every=3)
    fitted = fit_run(task, get_method(method), 0.5, 0, cfg, HeadConfig(8, 16), tmp_path / "run", end_to_end=e2e)
    assert fitted.info["finetune"]["trainable_parameters"]["a"] > 0
    rows = task.evaluate(*embed_fns(fitted.model))
    assert rows and all(math.isfinite(r["value"]) for r in rows)
    assert {r["metric"] for r in rows} >= {"mean_recall", "zeroshot_top1"}
    z = embed_fns(fitted.model)[0](task.validation.a)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
