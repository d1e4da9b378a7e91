"""Reading images into float arrays, per-band scaling, resizing and the deterministic views.

Every image item becomes a float32 array ``[C, H, W]``:

* JPEG/PNG/... files are read with PIL and scaled to [0, 1]: 8-bit modes (RGB, L, P, CMYK, ...)
  converted to RGB and divided by 255, 16-bit grayscale divided by 65535, 32-bit ``I``/``F``
  images scaled as rasters are; grayscale repeated on three channels; other modes refused by name.
* ``.tif``/``.tiff`` files and :class:`~domains.remote_sensing.records.RasterTile` windows are
  read with rasterio (any number of bands, any dtype); 8-bit data is scaled ``/255``, other
  dtypes by the tile's ``scaling`` or the caller's default (:func:`scale_bands`), nodata pixels
  set to 0 after scaling.

Views (for the self-supervised term): view 0 is the clean image resized to ``size x size``;
view ``k > 0`` is a deterministic augmentation: a random resized crop (area 35-100 %, aspect
3/4-4/3, taken at the native resolution), resized to ``size``, then one of the 8 symmetries of
the square (rotation by a multiple of 90 degrees, optionally mirrored), all drawn from a
generator seeded by ``(k, item key)``. The item key is the file's last two path components
(``class/file.jpg``) plus the window and bands of a tile, so views do not depend on where the
data folder lives, on the order of the items or on how the cache chunks them.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .records import RasterTile

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "ImageReadError",
    "ImageNotFoundError",
    "RASTER_EXTENSIONS",
    "load_image",
    "verify_image",
    "scale_bands",
    "item_key",
    "ViewParams",
    "view_params",
    "apply_view",
    "prepare_image",
    "prepare_batch",
]

#: File endings read with rasterio rather than PIL.
RASTER_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff")

#: Area range and aspect-ratio range of the random resized crop of views ``k > 0``.
CROP_SCALE: tuple[float, float] = (0.35, 1.0)
CROP_RATIO: tuple[float, float] = (3 / 4, 4 / 3)


class ImageReadError(OSError):
    """An image file could not be read or decoded (the message names the file and the reason)."""


class ImageNotFoundError(ImageReadError, FileNotFoundError):
    """An image file does not exist."""


# --------------------------------------------------------------------------------------------
# Scaling
# --------------------------------------------------------------------------------------------
def scale_bands(
    arr: np.ndarray, scaling: str | float, valid: np.ndarray | None = None,
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> np.ndarray:
    """Scale each band of ``arr [C, H, W]`` to roughly [0, 1].

    Args:
        arr: raw band values.
        scaling: ``"percentile"`` (per band, ``percentiles`` of the valid pixels mapped to 0 and
            1, clipped), ``"minmax"`` (per band min/max of the valid pixels), ``"none"``
            (unchanged), or a positive number ``d`` (``arr / d``, e.g. 10000 for Sentinel-2 L2A).
        valid: optional ``[H, W]`` bool mask of pixels that are not nodata; invalid pixels are
            ignored in the statistics and set to 0.
        percentiles: low/high percentiles of ``"percentile"``.

    Returns:
        float32 ``[C, H, W]``. A constant band becomes 0.
    """
    x = arr.astype(np.float32, copy=True)
    if isinstance(scaling, (int, float)) and not isinstance(scaling, bool):
        if not scaling > 0:
            raise ValueError(f"scaling: a numeric scaling must be a positive divisor, got {scaling!r}")
        x /= float(scaling)
    elif scaling in ("percentile", "minmax"):
        for b in range(x.shape[0]):
            band = x[b]
            vals = band[valid] if valid is not None else band.reshape(-1)
            vals = vals[np.isfinite(vals)]
            if vals.size == 0:
                band[...] = 0.0
                continue
            if scaling == "percentile":
                lo, hi = np.percentile(vals, percentiles)
            else:
                lo, hi = float(vals.min()), float(vals.max())
            if hi > lo:
                np.clip((band - lo) / (hi - lo), 0.0, 1.0, out=band)
            else:
                band[...] = 0.0
    elif scaling != "none":
        raise ValueError(
            f"scaling: expected 'percentile', 'minmax', 'none' or a positive divisor, got {scaling!r}"
        )
    if valid is not None:
        x[:, ~valid] = 0.0
    np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return x


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
#: PIL modes of 8 bits per channel: PIL converts them to RGB (alpha dropped, palette and CMYK resolved).
PIL_8BIT_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
#: PIL modes of 16-bit grayscale: the full range 0..65535 maps to [0, 1].
PIL_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
#: PIL modes of 32-bit integers or floats: scaled as non-8-bit rasters are (:func:`scale_bands`).
PIL_32BIT_MODES = ("I", "F")


@contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """PIL's errors while decoding ``path`` as :class:`ImageNotFoundError` / :class:`ImageReadError` naming it."""
    from PIL import UnidentifiedImageError

    try:
        yield
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageNotFoundError(f"image file not found: {path}") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a readable image (PIL cannot identify the format); "
                             "expected JPEG/PNG/TIFF") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated / corrupt data
        raise ImageReadError(f"{path}: corrupt or truncated image ({e})") from None


def _open_8bit_rgb(path: Path, min_size: int | None) -> "Image.Image | None":
    """The file as a loaded RGB PIL image when its mode is an 8-bit one, else None (errors name the file)."""
    from PIL import Image

    with _decoding(path), Image.open(path) as img:
        if img.mode not in PIL_8BIT_MODES:
            return None
        if min_size and img.format == "JPEG":
            img.draft("RGB", (2 * min_size, 2 * min_size))  # DCT downscaling of big JPEGs only
        rgb = img.convert("RGB")
        rgb.load()
    if rgb.width == 0 or rgb.height == 0:
        raise ImageReadError(f"{path}: decoded to an empty image of size {rgb.size}")
    return rgb


def _decode_pil(path: Path, min_size: int | None, raster_scaling: str | float) -> np.ndarray:
    """Decode an image file with PIL into float32 ``[3, H, W]`` in [0, 1] (errors name the file).

    8-bit modes are converted to RGB by PIL and divided by 255; 16-bit grayscale (and 32-bit integer
    PNGs, which hold 16-bit data) is divided by 65535; other 32-bit integer or float images are
    scaled by ``raster_scaling``; grayscale is repeated on the three channels. Any other mode is
    refused by name.
    """
    from PIL import Image

    rgb = _open_8bit_rgb(path, min_size)
    if rgb is not None:
        return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / 255.0
    with _decoding(path), Image.open(path) as img:
        mode, fmt = img.mode, img.format
        if mode in PIL_16BIT_MODES or (mode == "I" and fmt == "PNG"):
            gray = np.asarray(img).astype(np.float32) / 65535.0
            arr = np.repeat(np.clip(gray, 0.0, 1.0)[None], 3, axis=0)
        elif mode in PIL_32BIT_MODES:
            gray = np.asarray(img).astype(np.float32)[None]
            if not np.isfinite(gray).all():
                raise ImageReadError(f"{path}: {mode!r} image holds NaN or infinite pixels")
            arr = np.repeat(scale_bands(gray, raster_scaling), 3, axis=0)
        else:
            raise ImageReadError(f"{path}: PIL image mode {mode!r} is not supported; save it as RGB or "
                                 f"8/16-bit grayscale (supported: {', '.join(PIL_8BIT_MODES + PIL_16BIT_MODES)})")
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ImageReadError(f"{path}: decoded to an empty image of size {arr.shape[2]} x {arr.shape[1]}")
    return np.ascontiguousarray(arr)


def _read_raster(tile: RasterTile, default_scaling: str | float, raw: bool = False) -> np.ndarray:
    import rasterio
    from rasterio.enums import MaskFlags
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    from rasterio.windows import Window

    path = Path(tile.path)
    if not path.is_file():
        raise ImageNotFoundError(f"raster file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                count = src.count
                bands = list(tile.bands) if tile.bands is not None else list(range(1, count + 1))
                bad = [b for b in bands if not 1 <= int(b) <= count]
                if bad:
                    raise ImageReadError(f"{tile.describe()}: band(s) {bad} do not exist; the file has bands "
                                         f"1..{count}")
                window = None
                if tile.window is not None:
                    r, c, h, w = (int(v) for v in tile.window)
                    if r < 0 or c < 0 or h <= 0 or w <= 0 or r + h > src.height or c + w > src.width:
                        raise ImageReadError(
                            f"{tile.describe()}: window outside the raster of {src.height} x {src.width} pixels"
                        )
                    window = Window(c, r, w, h)
                data = src.read(bands, window=window)
                flags = [src.mask_flag_enums[b - 1] for b in bands]
                has_mask = any(MaskFlags.all_valid not in f for f in flags)
                masks = src.read_masks(bands, window=window) if has_mask else None
                dtype = np.dtype(src.dtypes[bands[0] - 1])
    except ImageReadError:
        raise
    except RasterioIOError as e:
        raise ImageReadError(f"{path}: not a readable raster ({e}); expected a GeoTIFF or another GDAL "
                             "format") from None
    except Exception as e:  # noqa: BLE001 - GDAL raises many kinds of errors for corrupt data
        raise ImageReadError(f"{path}: cannot read raster data ({type(e).__name__}: {e})") from None
    valid = None
    if masks is not None:
        valid = (masks > 0).all(axis=0)
    scaling = tile.scaling
    if scaling is None:
        scaling = "none" if raw else (255.0 if dtype == np.uint8 else default_scaling)
    return scale_bands(data, scaling, valid)


def load_image(item: "str | os.PathLike | RasterTile", raster_scaling: str | float = "percentile",
               min_size: int | None = None, raw: bool = False) -> np.ndarray:
    """Read one image item into float32 ``[C, H, W]`` (see the module docstring for the scaling).

    Args:
        item: an image file path, or a :class:`RasterTile`.
        raster_scaling: scaling of non-8-bit rasters when the tile does not set its own.
        min_size: the size the image will be resized to; lets PIL decode big JPEGs at a reduced
            resolution (never below twice ``min_size``).
        raw: keep raw pixel values (8-bit images in 0..255, rasters unscaled unless the tile sets
            ``scaling``), as torchgeo weights expect.

    Raises:
        ImageNotFoundError: the file does not exist.
        ImageReadError: the file is corrupt, not an image, or the window/bands are invalid.
    """
    if isinstance(item, RasterTile):
        return _read_raster(item, raster_scaling, raw)
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if path.suffix.lower() in RASTER_EXTENSIONS:
            return _read_raster(RasterTile(str(path)), raster_scaling, raw)
        if not path.is_file():
            raise ImageNotFoundError(f"image file not found: {path}")
        arr = _decode_pil(path, min_size, raster_scaling)
        return arr * 255.0 if raw else arr
    raise TypeError(f"image item: expected a file path or a RasterTile, got {type(item).__name__}: {item!r}")


def verify_image(item: "str | os.PathLike | RasterTile") -> None:
    """Fully decode one image item; raise :class:`ImageReadError` naming the file when that fails."""
    load_image(item)


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------
def item_key(item: "str | os.PathLike | RasterTile") -> str:
    """Location-independent key of an item: last two path components (+ window and bands)."""
    if isinstance(item, RasterTile):
        p = Path(item.path)
        return f"{p.parent.name}/{p.name}|{item.window}|{item.bands}"
    p = Path(item)
    return f"{p.parent.name}/{p.name}"


def _seed(view: int, key: str) -> list[int]:
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return [int(view), int.from_bytes(digest, "little")]


@dataclass(frozen=True)
class ViewParams:
    """The augmentation of one view: crop box ``(top, left, height, width)`` in input pixels,
    ``rot90`` quarter-turns (counter-clockwise) and ``flip`` (left-right, after the rotation)."""

    crop: tuple[int, int, int, int]
    rot90: int
    flip: bool


def view_params(view: int, key: str, height: int, width: int) -> ViewParams | None:
    """Deterministic augmentation parameters of ``view`` for the item ``key`` (None for view 0)."""
    if view < 0:
        raise ValueError(f"view must be >= 0, got {view}")
    if view == 0:
        return None
    rng = np.random.default_rng(_seed(view, key))
    area = height * width
    crop = (0, 0, height, width)
    log_lo, log_hi = np.log(CROP_RATIO[0]), np.log(CROP_RATIO[1])
    for _ in range(10):  # torchvision RandomResizedCrop's rejection sampling
        target = area * rng.uniform(*CROP_SCALE)
        ratio = float(np.exp(rng.uniform(log_lo, log_hi)))
        w = int(round(np.sqrt(target * ratio)))
        h = int(round(np.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            crop = (top, left, h, w)
            break
    else:  # fallback: central crop of the largest square-ish box
        side = min(height, width)
        crop = ((height - side) // 2, (width - side) // 2, side, side)
    rot = int(rng.integers(0, 4))
    flip = bool(rng.integers(0, 2))
    if crop == (0, 0, height, width) and rot == 0 and not flip:
        rot = 1  # never hand back the clean image as an augmented view
    return ViewParams(crop, rot, flip)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]


def apply_view(x: torch.Tensor, params: ViewParams | None, size: int) -> torch.Tensor:
    """Crop ``x [C, H, W]`` to ``params.crop``, resize to ``size x size``, rotate and flip."""
    if params is None:
        return _resize(x, size)
    top, left, h, w = params.crop
    x = _resize(x[:, top : top + h, left : left + w].contiguous(), size)
    if params.rot90:
        x = torch.rot90(x, params.rot90, dims=(-2, -1))
    if params.flip:
        x = torch.flip(x, dims=(-1,))
    return x


def _is_pil_item(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike)) and Path(item).suffix.lower() not in RASTER_EXTENSIONS


def prepare_image(
    item: Any, view: int = 0, size: int = 224, raster_scaling: str | float = "percentile", raw: bool = False
) -> torch.Tensor:
    """Load ``item`` and return view ``view`` as a float32 tensor ``[C, size, size]`` (unnormalised).

    8-bit images read by PIL are cropped and resized by PIL (antialiased bilinear, one pass);
    rasters and 16/32-bit PIL images by :func:`apply_view` (antialiased bilinear in torch). Values are in [0, 1], or raw
    (0..255 / unscaled rasters) with ``raw=True``.
    """
    img = None
    if _is_pil_item(item):
        path = Path(item)
        if not path.is_file():
            raise ImageNotFoundError(f"image file not found: {path}")
        img = _open_8bit_rgb(path, size)  # None: a 16/32-bit image, decoded below with its own scaling
    if img is not None:
        from PIL import Image

        params = view_params(view, item_key(item), img.height, img.width)
        top, left, h, w = params.crop if params is not None else (0, 0, img.height, img.width)
        if (h, w) != (size, size) or params is not None:
            img = img.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))
        arr = np.asarray(img, dtype=np.uint8)  # [H, W, 3]
        if params is not None:
            if params.rot90:
                arr = np.rot90(arr, params.rot90, axes=(0, 1))
            if params.flip:
                arr = arr[:, ::-1]
        # numpy, not torch, for the conversion: tiny per-image ops pay torch's thread start-up
        chw = arr.transpose(2, 0, 1).astype(np.float32)
        if not raw:
            chw *= np.float32(1.0 / 255.0)
        return torch.from_numpy(chw)
    arr = load_image(item, raster_scaling=raster_scaling, min_size=size, raw=raw)
    x = torch.from_numpy(np.ascontiguousarray(arr))
    params = view_params(view, item_key(item), x.shape[-2], x.shape[-1])
    return apply_view(x, params, size).contiguous()


def prepare_batch(
    items: Sequence[Any], view: int, size: int, raster_scaling: str | float = "percentile", raw: bool = False
) -> torch.Tensor:
    """:func:`prepare_image` of each item, stacked ``[n, C, size, size]``; all must have the same C."""
    xs = [prepare_image(it, view, size, raster_scaling, raw) for it in items]
    chans = {x.shape[0] for x in xs}
    if len(chans) > 1:
        detail = ", ".join(f"{_describe(it)}: {x.shape[0]}" for it, x in list(zip(items, xs))[:5])
        raise ImageReadError(f"images of one batch have different band counts ({detail}); select bands with "
                             "RasterTile.bands")
    return torch.stack(xs)


def _describe(item: Any) -> str:
    return item.describe() if isinstance(item, RasterTile) else str(item)
