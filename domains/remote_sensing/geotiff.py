"""The user's own GeoTIFF scenes: band selection, per-band scaling, tiling, and a captions table.

A scene is cut into square tiles with rasterio windows (:func:`raster_tiles`): tiles of
``tile_size`` pixels every ``stride`` pixels, row-major, the last row/column shifted back to end
at the raster's edge so that the whole scene is covered (edge tiles may overlap their
neighbours). Each tile is a :class:`~domains.remote_sensing.records.RasterTile` that the image
encoder reads lazily (``bands`` selected and scaled per band, see
:func:`~domains.remote_sensing.images.scale_bands`). Pixel windows per file are used rather than
torchgeo's ``RasterDataset`` + ``GridGeoSampler`` because captions are attached to a file (and a
tile of it), not to a map bounding box: torchgeo merges files into one spatial index in CRS
coordinates, which loses the file identity the captions table refers to.

Captions table (CSV, UTF-8, with a header row), one caption per row::

    file,tile,caption[,split][,label]
    scene_a.tif,,an agricultural area crossed by a river      <- the whole scene
    scene_a.tif,0,a field next to a road                      <- tile 0 of scene_a.tif
    scene_b.tif,3,houses along a street

``file`` is relative to ``image_dir`` (default: the table's folder); ``tile`` (optional column,
may be empty) is the row-major tile index of :func:`raster_tiles` (requires ``tile_size``);
several rows with the same ``file``/``tile`` give one image with several captions.
"""
from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from domains.problems import Problems, ReadReport

from .images import ImageReadError
from .records import ImageCaptionRecord, RasterTile, RecordSet

__all__ = ["raster_tiles", "raster_shape", "read_geotiff_folder", "read_geotiff_captions"]


def raster_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(bands, height, width)`` of a raster file.

    Raises:
        FileNotFoundError: no such file.
        ImageReadError: rasterio cannot open it (the message names the file).
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"raster file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return int(src.count), int(src.height), int(src.width)
    except Exception as e:  # noqa: BLE001 - GDAL's errors for corrupt files vary
        raise ImageReadError(f"{path}: not a readable raster ({type(e).__name__}: {e}); expected a GeoTIFF") from None


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def raster_tiles(
    path: str | os.PathLike,
    tile_size: int | None = None,
    stride: int | None = None,
    bands: Sequence[int] | None = None,
    scaling: str | float | None = None,
) -> list[RasterTile]:
    """Cut a raster into tiles (row-major), or one item for the whole raster when ``tile_size`` is None.

    Args:
        path: the raster file.
        tile_size: tile side in pixels (a raster smaller than that gives one tile of its full size).
        stride: step between tiles (default ``tile_size``: no overlap).
        bands: 1-based bands to read, in order (default all); checked against the file.
        scaling: per-band scaling stored in the tiles (None = the encoder's default).
    """
    n_bands, height, width = raster_shape(path)
    band_t = tuple(int(b) for b in bands) if bands is not None else None
    if band_t is not None:
        bad = [b for b in band_t if not 1 <= b <= n_bands]
        if bad or not band_t:
            raise ValueError(f"{path}: bands {list(band_t)} invalid; the file has bands 1..{n_bands}")
    p = str(Path(path).resolve())
    if tile_size is None:
        return [RasterTile(p, None, band_t, scaling)]
    if tile_size <= 0 or (stride is not None and stride <= 0):
        raise ValueError(f"tile_size and stride must be positive, got tile_size={tile_size}, stride={stride}")
    stride = stride or tile_size
    th, tw = min(tile_size, height), min(tile_size, width)
    return [
        RasterTile(p, (r, c, th, tw), band_t, scaling)
        for r in _starts(height, tile_size, stride)
        for c in _starts(width, tile_size, stride)
    ]


def read_geotiff_folder(
    folder: str | os.PathLike,
    tile_size: int | None = None,
    stride: int | None = None,
    bands: Sequence[int] | None = None,
    scaling: str | float | None = None,
    pattern: Iterable[str] = ("*.tif", "*.tiff", "*.TIF", "*.TIFF"),
    on_error: str = "raise",
) -> RecordSet:
    """Image-only records for every tile of every GeoTIFF in ``folder`` (recursively), sorted by file.

    Unreadable rasters are bad records (``on_error``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found; expected a folder of GeoTIFF files")
    files = sorted({f for pat in pattern for f in folder.rglob(pat) if f.is_file()})
    if not files:
        raise FileNotFoundError(f"{folder}: no GeoTIFF files ({', '.join(pattern)})")
    report = ReadReport()
    problems = Problems(on_error, report)
    records: list[ImageCaptionRecord] = []
    for f in files:
        rel = f.relative_to(folder).as_posix()
        try:
            tiles = raster_tiles(f, tile_size, stride, bands, scaling)
        except (ImageReadError, ValueError) as e:
            problems.bad(folder, rel, str(e), type(e))
            continue
        for i, t in enumerate(tiles):
            records.append(ImageCaptionRecord(image=t, image_id=rel if tile_size is None else f"{rel}#{i}",
                                              dataset=folder.name,
                                              meta={"file": rel, "tile": None if tile_size is None else i}))
    rs = RecordSet(records, folder.name, report)
    rs.warn_if_skipped()
    return rs


def read_geotiff_captions(
    table: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    tile_size: int | None = None,
    stride: int | None = None,
    bands: Sequence[int] | None = None,
    scaling: str | float | None = None,
    include_uncaptioned_tiles: bool = False,
    dataset: str | None = None,
    on_error: str = "raise",
) -> RecordSet:
    """Read a captions table for GeoTIFF scenes (format in the module docstring).

    Args:
        table: the CSV file (columns ``file``, ``caption``; optional ``tile``, ``split``, ``label``).
        image_dir: folder the ``file`` column is relative to (default: the table's folder).
        tile_size, stride, bands, scaling: as in :func:`raster_tiles`.
        include_uncaptioned_tiles: also return the tiles of the listed files that have no caption
            (with ``captions=[]``).
        dataset: name stored in the records (default: the table's file stem).
        on_error: ``"raise"`` (default) or ``"skip"`` bad rows (missing or unreadable file, empty
            caption, tile index not an integer or out of range, tile given without ``tile_size``).

    Returns:
        One record per captioned (file, tile) in table order (then the uncaptioned tiles);
        ``image_id`` is ``"file"`` or ``"file#tile"``; ``meta`` holds ``file`` and ``tile``.
    """
    table = Path(table)
    if not table.is_file():
        raise FileNotFoundError(f"{table}: captions table not found; expected a CSV with columns file[,tile],caption")
    base = Path(image_dir) if image_dir is not None else table.parent
    name = dataset or table.stem
    report = ReadReport()
    problems = Problems(on_error, report)
    try:
        with open(table, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip().lower() for c in (reader.fieldnames or [])]
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{table}: not a readable UTF-8 CSV file ({e}); expected columns "
                         "file[,tile],caption") from None
    if "file" not in fields or "caption" not in fields:
        raise ValueError(
            f"{table}: header has columns {fields}; expected 'file' and 'caption' (optional 'tile', 'split', 'label')"
        )

    tiles_of: dict[str, list[RasterTile]] = {}
    whole_of: dict[str, RasterTile] = {}
    records: dict[tuple[str, int | None], ImageCaptionRecord] = {}
    for n, raw in enumerate(rows, start=2):  # line 1 is the header
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        where = f"line {n}"
        rel = row.get("file", "")
        caption = " ".join(row.get("caption", "").split())
        if not rel:
            problems.bad(table, where, "empty 'file'")
            continue
        where = f"line {n} ({rel})"
        if not caption:
            problems.bad(table, where, "empty 'caption'")
            continue
        path = base / rel
        if not path.is_file():
            problems.bad(table, where, f"image file {path} not found", FileNotFoundError)
            continue
        tile_txt = row.get("tile", "")
        tile_idx: int | None = None
        if tile_txt:
            if tile_size is None:
                problems.bad(table, where, f"tile {tile_txt!r} given but no tile_size; pass tile_size= to tile the "
                                           "scenes")
                continue
            try:
                tile_idx = int(tile_txt)
            except ValueError:
                problems.bad(table, where, f"tile {tile_txt!r} is not an integer tile index")
                continue
        try:
            if rel not in tiles_of:
                whole_of[rel] = raster_tiles(path, None, None, bands, scaling)[0]
                tiles_of[rel] = raster_tiles(path, tile_size, stride, bands, scaling) if tile_size else []
        except (ImageReadError, ValueError) as e:
            problems.bad(table, where, str(e), type(e))
            continue
        if tile_idx is not None and not 0 <= tile_idx < len(tiles_of[rel]):
            problems.bad(table, where, f"tile {tile_idx} out of range; {path.name} has {len(tiles_of[rel])} tiles of "
                                       f"{tile_size} px")
            continue
        key = (rel, tile_idx)
        rec = records.get(key)
        if rec is None:
            image = whole_of[rel] if tile_idx is None else tiles_of[rel][tile_idx]
            rec = ImageCaptionRecord(
                image=image, split=row.get("split") or None, label=row.get("label") or None,
                image_id=rel if tile_idx is None else f"{rel}#{tile_idx}", dataset=name,
                meta={"file": rel, "tile": tile_idx},
            )  # fmt: skip
            records[key] = rec
        rec.captions.append(caption)
    out = list(records.values())
    if include_uncaptioned_tiles:
        for rel, tiles in tiles_of.items():
            for i, t in enumerate(tiles):
                if (rel, i) not in records:
                    out.append(ImageCaptionRecord(image=t, image_id=f"{rel}#{i}", dataset=name,
                                                  meta={"file": rel, "tile": i}))
    rs = RecordSet(out, name, report)
    rs.warn_if_skipped()
    return rs
