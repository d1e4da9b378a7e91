"""Image reading, corrupt/missing files, deterministic views, and GeoTIFF tiling + captions tables."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from test_rs_fixtures import write_image

from domains.remote_sensing import (
    ImageEncoder,
    ImageNotFoundError,
    ImageReadError,
    RasterTile,
    RemoteSensingDataWarning,
    item_key,
    load_image,
    raster_tiles,
    read_geotiff_captions,
    read_geotiff_folder,
    scale_bands,
    view_params,
)
from domains.remote_sensing.images import prepare_image


# ------------------------------------------------------------------ corrupt and missing images
def test_missing_and_corrupt_images_name_the_file(tmp_path):
    with pytest.raises(ImageNotFoundError, match=r"image file not found: .*nope\.jpg"):
        load_image(tmp_path / "nope.jpg")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageReadError, match=r"junk\.jpg: not a readable image"):
        load_image(junk)
    good = write_image(tmp_path / "good.jpg", 3, size=64)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ImageReadError, match=r"truncated\.jpg: corrupt or truncated image"):
        load_image(truncated)
    bad_tif = tmp_path / "bad.tif"
    bad_tif.write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageReadError, match=r"bad\.tif"):
        load_image(bad_tif)
    # the encoder surfaces the same errors, naming the file
    enc = ImageEncoder("test_convnext", weights="random", image_size=32)
    with pytest.raises(ImageReadError, match=r"truncated\.jpg"):
        enc.encode([str(good), str(truncated)])
    with pytest.raises(ImageNotFoundError, match=r"nope\.jpg"):
        enc.encode([str(tmp_path / "nope.jpg")])


def test_pil_image_scaled_to_unit_range_and_grey_to_rgb(tmp_path):
    arr = (np.arange(32 * 40) % 256).astype(np.uint8).reshape(32, 40)
    Image.fromarray(arr).save(tmp_path / "grey.png")
    x = load_image(tmp_path / "grey.png")
    assert x.shape == (3, 32, 40) and x.dtype == np.float32
    np.testing.assert_allclose(x[1], arr / 255.0, atol=1e-6)
    y = prepare_image(str(tmp_path / "grey.png"), view=0, size=40)
    assert tuple(y.shape) == (3, 40, 40) and float(y.min()) >= 0 and float(y.max()) <= 1


# ------------------------------------------------------------------ views
def test_views_are_deterministic_distinct_and_location_independent(tmp_path):
    a = write_image(tmp_path / "root1" / "cls" / "img.png", 5, size=64)
    x0 = prepare_image(str(a), 0, size=64)
    raw = torch.from_numpy(np.array(Image.open(a).convert("RGB"))).permute(2, 0, 1).float() / 255
    assert torch.allclose(x0, raw, atol=1e-6)  # view 0 = the clean image
    x1, x1b, x2 = prepare_image(str(a), 1, 64), prepare_image(str(a), 1, 64), prepare_image(str(a), 2, 64)
    assert torch.equal(x1, x1b)
    assert not torch.allclose(x1, x0) and not torch.allclose(x1, x2)
    # the same file under another data root gives the same views
    b = tmp_path / "elsewhere" / "cls" / "img.png"
    b.parent.mkdir(parents=True)
    shutil.copy(a, b)
    assert item_key(a) == item_key(b) == "cls/img.png"
    assert torch.equal(prepare_image(str(b), 1, 64), x1)
    # parameters: crops inside the image, never the identity
    for k in range(1, 50):
        p = view_params(k, f"cls/img{k}.png", 100, 80)
        top, left, h, w = p.crop
        assert 0 <= top and 0 <= left and top + h <= 100 and left + w <= 80
        assert not (p.crop == (0, 0, 100, 80) and p.rot90 == 0 and not p.flip)
        assert 0.3 * 8000 <= h * w <= 8000
    assert view_params(0, "x", 10, 10) is None
    with pytest.raises(ValueError):
        view_params(-1, "x", 10, 10)


def test_encoded_views_do_not_depend_on_batching(tmp_path):
    paths = [str(write_image(tmp_path / f"i{i}.jpg", i, size=40)) for i in range(5)]
    enc = ImageEncoder("test_convnext", weights="random", image_size=32, batch_size=2, num_threads=1)
    before = torch.get_num_threads()
    full = enc.encode(paths, view=1)
    assert torch.get_num_threads() == before  # restored
    part = enc.encode(paths[3:], view=1)
    np.testing.assert_allclose(full[3:], part, rtol=1e-5, atol=1e-6)
    v0 = enc.encode(paths, view=0)
    assert full.shape == v0.shape == (5, enc.dim) and full.dtype == np.float32
    assert not np.allclose(full, v0)


def test_default_image_batch_size_is_the_measured_cpu_one():
    from domains.remote_sensing.encoders import CPU_BATCH_SIZE

    enc = ImageEncoder("test_convnext", weights="random", image_size=32)
    assert enc.batch_size == CPU_BATCH_SIZE == 4
    assert ImageEncoder("test_convnext", weights="random", image_size=32, batch_size=3).batch_size == 3
    with pytest.raises(ValueError, match="batch_size >= 1"):
        ImageEncoder("test_convnext", weights="random", image_size=32, batch_size=0)


# ------------------------------------------------------------------ GeoTIFF
def _write_geotiff(path, bands=5, height=100, width=130, nodata_block=True):
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(0)
    data = np.stack([1000 * (b + 1) + rng.integers(0, 500, (height, width)) for b in range(bands)]).astype(np.uint16)
    if nodata_block:
        data[:, :10, :10] = 0
    with rasterio.open(
        path, "w", driver="GTiff", height=height, width=width, count=bands, dtype="uint16",
        crs="EPSG:32633", transform=Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4500000.0), nodata=0,
    ) as dst:  # fmt: skip
        dst.write(data)
    return data


def test_geotiff_tiles_bands_and_scaling(tmp_path):
    data = _write_geotiff(tmp_path / "scene.tif")
    tiles = raster_tiles(tmp_path / "scene.tif", tile_size=64)
    # rows start at 0, 36 (last row shifted to the edge); columns at 0, 64, 66
    assert [t.window for t in tiles] == [(r, c, 64, 64) for r in (0, 36) for c in (0, 64, 66)]
    whole = raster_tiles(tmp_path / "scene.tif")
    assert len(whole) == 1 and whole[0].window is None
    t = RasterTile(tiles[4].path, tiles[4].window, (3, 1), "none")
    x = load_image(t)
    assert x.shape == (2, 64, 64)
    np.testing.assert_array_equal(x[0], data[2, 36:100, 64:128].astype(np.float32))
    np.testing.assert_array_equal(x[1], data[0, 36:100, 64:128].astype(np.float32))
    # per-band percentile scaling ignores nodata and sets it to 0
    xp = load_image(RasterTile(tiles[0].path, tiles[0].window, (1, 2), "percentile"))
    assert xp.min() >= 0 and xp.max() <= 1 and np.all(xp[:, :10, :10] == 0)
    assert 0.3 < xp[:, 10:, 10:].mean() < 0.7  # each band stretched on its own values
    xd = load_image(RasterTile(tiles[0].path, tiles[0].window, (2,), 10000.0))
    np.testing.assert_allclose(xd[0, 20:, 20:], data[1, 20:64, 20:64] / 10000.0, rtol=1e-6)
    np.testing.assert_allclose(scale_bands(np.array([[[5.0, 5.0]]]), "minmax"), [[[0.0, 0.0]]])
    with pytest.raises(ValueError, match="scaling"):
        scale_bands(np.zeros((1, 2, 2)), "bogus")
    with pytest.raises(ValueError, match="bands"):
        raster_tiles(tmp_path / "scene.tif", bands=(6,))
    with pytest.raises(ImageReadError, match="window outside"):
        load_image(RasterTile(tiles[0].path, (90, 0, 64, 64)))


def test_geotiff_tiles_encode_with_band_selection(tmp_path):
    _write_geotiff(tmp_path / "scene.tif")
    tiles = raster_tiles(tmp_path / "scene.tif", tile_size=64, bands=(3, 2, 1))
    enc = ImageEncoder("test_convnext", weights="random", image_size=32)
    f0, f1 = enc.encode(tiles, 0), enc.encode(tiles, 1)
    assert f0.shape == (6, enc.dim) and np.isfinite(f0).all() and not np.allclose(f0, f1)
    enc5 = ImageEncoder("test_convnext", weights="random", image_size=32, in_chans=5)
    assert enc5.encode(raster_tiles(tmp_path / "scene.tif", tile_size=64)[:2]).shape == (2, enc5.dim)
    with pytest.raises(ImageReadError, match=r"scene\.tif.*has 5 band\(s\) but .* takes 3"):
        enc.encode(raster_tiles(tmp_path / "scene.tif", tile_size=64)[:1])


def test_geotiff_captions_table(tmp_path):
    _write_geotiff(tmp_path / "a.tif")
    _write_geotiff(tmp_path / "b.tif", height=64, width=64)
    table = tmp_path / "captions.csv"
    table.write_text(
        "file,tile,caption,split\n"
        "a.tif,,a whole scene with fields,train\n"
        "a.tif,0,the north-west corner,train\n"
        "a.tif,0,  a corner   with nodata ,train\n"
        "b.tif,0,a small scene,test\n"
    )
    rs = read_geotiff_captions(table, tile_size=64, bands=(1, 2, 3))
    assert [(r.image_id, len(r.captions), r.split) for r in rs] == [
        ("a.tif", 1, "train"), ("a.tif#0", 2, "train"), ("b.tif#0", 1, "test")]
    assert rs[1].captions[1] == "a corner with nodata"
    assert rs[0].image.window is None and rs[1].image.window == (0, 0, 64, 64) and rs[1].image.bands == (1, 2, 3)
    more = read_geotiff_captions(table, tile_size=64, include_uncaptioned_tiles=True)
    assert len(more) == 3 + 5  # a.tif has 6 tiles, one captioned
    # bad rows: raise naming the line, or skip with a report
    table.write_text(
        "file,tile,caption\n"
        "a.tif,0,fine\n"
        "missing.tif,,gone\n"
        "a.tif,99,out of range\n"
        "a.tif,x,not an int\n"
        "a.tif,1,\n"
    )
    with pytest.raises(FileNotFoundError, match=r"captions\.csv: line 3 \(missing\.tif\): image file .* not found"):
        read_geotiff_captions(table, tile_size=64)
    with pytest.warns(RemoteSensingDataWarning, match="skipped 4 record"):
        rs = read_geotiff_captions(table, tile_size=64, on_error="skip")
    assert [r.image_id for r in rs] == ["a.tif#0"]
    reasons = " | ".join(s.reason for s in rs.report.skipped)
    assert "out of range" in reasons and "not an integer" in reasons and "empty 'caption'" in reasons
    with pytest.raises(ValueError, match="no tile_size"):
        read_geotiff_captions(table)
    table.write_text("path,text\na.tif,x\n")
    with pytest.raises(ValueError, match=r"expected 'file' and 'caption'"):
        read_geotiff_captions(table)


def test_geotiff_folder_reports_corrupt_rasters(tmp_path):
    _write_geotiff(tmp_path / "ok.tif", height=64, width=64)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00not really a tiff")
    with pytest.raises(ImageReadError, match=r"broken\.tif"):
        read_geotiff_folder(tmp_path, tile_size=32)
    with pytest.warns(RemoteSensingDataWarning, match="broken.tif"):
        rs = read_geotiff_folder(tmp_path, tile_size=32, on_error="skip")
    assert len(rs) == 4 and all(r.image_id.startswith("ok.tif#") for r in rs)
