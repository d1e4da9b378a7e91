"""Every PIL image mode is read with a correct scaling to [0, 1], or refused by name (never a silent white image)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from domains.remote_sensing import ImageReadError
from domains.remote_sensing.images import load_image, prepare_image


def _gradient(h: int = 24, w: int = 32) -> np.ndarray:
    """8-bit grayscale test pattern with values 2..255."""
    return (np.add.outer(np.arange(h) * 4, np.arange(w) * 4) % 254 + 2).astype(np.uint8)


@pytest.fixture()
def gray8(tmp_path):
    g = _gradient()
    path = tmp_path / "gray8.png"
    Image.fromarray(g, mode="L").save(path)
    return path, g


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16_bit_grayscale_png_matches_the_8_bit_original(tmp_path, gray8, mode) -> None:
    """A 16-bit PNG of the same picture (values x 257, up to 65535) reads as the 8-bit original."""
    path8, g = gray8
    g16 = g.astype(np.uint16) * 257
    path = tmp_path / f"gray16_{mode.replace(';', '')}.png"
    dtype = ">u2" if mode == "I;16B" else "<u2"
    img = Image.frombytes(mode, (g.shape[1], g.shape[0]), g16.astype(dtype).tobytes())
    img.save(path)
    with Image.open(path) as check:
        assert check.mode in ("I;16", "I;16B", "I")  # what PIL reads back
    a16, a8 = load_image(path), load_image(path8)
    assert a16.shape == (3, 24, 32) and a16.max() <= 1.0 and a16.min() > 0.0
    np.testing.assert_allclose(a16, a8, atol=1e-6)
    v16, v8 = prepare_image(path, view=0, size=16), prepare_image(path8, view=0, size=16)  # PIL vs torch resize
    cos = float((v16 * v8).sum() / (v16.norm() * v8.norm()))
    assert cos > 0.999, f"encoded inputs of the 16-bit copy differ from the original (cosine {cos:.3f})"


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK"])
def test_8_bit_modes_convert_to_rgb(tmp_path, gray8, mode) -> None:
    path8, g = gray8
    base = Image.fromarray(g, mode="L")
    img = base.convert(mode)
    path = tmp_path / f"img_{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
    img.save(path)
    arr = load_image(path)
    expected = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
    assert arr.shape == (3, 24, 32) and 0.0 <= arr.min() and arr.max() <= 1.0
    np.testing.assert_allclose(arr, expected, atol=1e-6)
    if mode in ("L", "LA", "P", "RGB", "RGBA"):
        np.testing.assert_allclose(arr[0], g / 255.0, atol=1e-6), "grey values kept"


def test_32_bit_integer_and_float_images_are_scaled_as_rasters(tmp_path) -> None:
    rng = np.random.default_rng(0)
    data = rng.uniform(100, 5000, size=(20, 30)).astype(np.float32)
    for mode, arr in (("F", data), ("I", data.astype(np.int32))):
        path = tmp_path / f"img_{mode}.tiff.pil"
        Image.fromarray(arr, mode=mode).save(path, format="TIFF")
        out = load_image(path)
        assert out.shape == (3, 20, 30) and out.min() >= 0.0 and out.max() <= 1.0
        lo, hi = np.percentile(arr.astype(np.float32), (2, 98))
        np.testing.assert_allclose(out[0], np.clip((arr - lo) / (hi - lo), 0, 1), atol=1e-5)
        assert 0.3 < out.mean() < 0.7, "not a white (or black) image"


def test_unsupported_mode_is_refused_by_name(tmp_path, monkeypatch) -> None:
    path = tmp_path / "odd.png"
    Image.fromarray(_gradient(), mode="L").save(path)
    from domains.remote_sensing import images

    monkeypatch.setattr(images, "PIL_8BIT_MODES", ())  # pretend L were an unknown mode
    with pytest.raises(ImageReadError, match=r"odd\.png: PIL image mode 'L' is not supported"):
        load_image(path)
