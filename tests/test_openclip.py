"""open_clip as a paired encoder family, tested with a small randomly initialised model of open_clip's own classes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

open_clip = pytest.importorskip("open_clip")

from domains.remote_sensing.openclip import (  # noqa: E402
    OpenCLIPWeightsUnavailableError,
    load_open_clip,
    open_clip_pair,
)

TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16,
                                        "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A registered tiny open_clip config and a checkpoint of it written as open_clip writes state dicts."""
    folder = tmp_path_factory.mktemp("openclip")
    (folder / "tiny-test.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder / "tiny-test.json")
    model, _ = load_open_clip("tiny-test", None, seed=3)
    torch.save(model.state_dict(), folder / "tiny.pt")
    rng = np.random.default_rng(0)
    images = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (72, 72, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        images.append(folder / f"{i}.png")
    return folder / "tiny.pt", images


def test_a_local_checkpoint_loads_into_both_towers_and_they_match_clip(tiny_clip) -> None:
    checkpoint, images = tiny_clip
    image_enc, text_enc = open_clip_pair("tiny-test", checkpoint)
    assert image_enc.clip is text_enc.clip and image_enc.dim == text_enc.dim == 32
    reference, _ = load_open_clip("tiny-test", None, seed=3)  # the weights the checkpoint holds
    texts = ["a forest near a river", "many buildings"]
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference.encode_text(open_clip.get_tokenizer("tiny-test")(texts)),
                                                 dim=-1)
    np.testing.assert_allclose(text_enc.encode(texts), expected.numpy(), atol=1e-5)
    feats = image_enc.encode(images)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    for enc, items in ((image_enc, images), (text_enc, texts)):  # the towers give the same features
        tower = enc.tower()
        with torch.no_grad():
            got = tower(tower.collate(items, np.zeros(len(items), dtype=np.int64))).numpy()
        np.testing.assert_allclose(got, enc.encode(items), atol=1e-5)
    assert image_enc.recipe()["pretrained"] == str(checkpoint) and "open_clip|tiny-test|visual" in image_enc.identity


def test_a_missing_checkpoint_says_what_to_pass(tmp_path, tiny_clip) -> None:
    with pytest.raises(OpenCLIPWeightsUnavailableError, match="checkpoint file"):
        load_open_clip("tiny-test", tmp_path / "RemoteCLIP-ViT-B-32.pt")
