"""UCM-captions (Qu et al., "Deep semantic understanding of high resolution remote sensing image",
2016): 2,100 UC Merced images (21 classes x 100) with 5 captions each, in COCO layout.

Layout under the data folder::

    ucm/captions/data_{train,val,test}_UCM.json   captions (COCO layout; image k.tif = UCM image k)
    ucm/images/<class>/<class>NN.jpg              the UC Merced images (16 of the 21 classes here)
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

from ..classes import UCM_CLASSES
from ..formats import read_coco_captions
from ..records import RecordSet
from ._nongeo import CaptionDataset

__all__ = ["CAPTIONS", "IMAGES", "read_ucm_captions", "ucm_caption_image_path", "UCMCaptions"]

CAPTIONS = "ucm/captions"
IMAGES = "ucm/images"


def _ucm_index(file_name: str) -> int | None:
    """``k`` of ``"k.tif"`` (1-based UCM-captions image number), or None."""
    m = re.fullmatch(r"(\d+)\.(?:tif|tiff|jpg|jpeg|png)", file_name.strip(), flags=re.IGNORECASE)
    return int(m.group(1)) if m else None


def ucm_caption_image_path(file_name: str, ucm_images_dir: str | os.PathLike) -> tuple[str, Path] | None:
    """UC Merced class and image file of a UCM-captions ``file_name`` ``"k.tif"``.

    Image ``k`` (1..2100) is class ``sorted(all 21 UCM class names)[(k-1)//100]``, number
    ``(k-1)%100``: ``<ucm_images_dir>/<class>/<class>NN.jpg`` (``.tif``/``.tiff``/``.png`` are
    tried when the ``.jpg`` is absent, for users who kept the original TIFFs).

    Returns:
        ``(class, path)`` (the path may not exist), or None when ``file_name`` is not ``k.tif``
        with ``1 <= k <= 2100``.
    """
    k = _ucm_index(file_name)
    if k is None or not 1 <= k <= 100 * len(UCM_CLASSES):
        return None
    cls = UCM_CLASSES[(k - 1) // 100]
    stem = f"{cls}{(k - 1) % 100:02d}"
    folder = Path(ucm_images_dir) / cls
    for ext in (".jpg", ".tif", ".tiff", ".png", ".jpeg"):
        if (folder / (stem + ext)).is_file():
            return cls, folder / (stem + ext)
    return cls, folder / (stem + ".jpg")


def read_ucm_captions(
    ucm_dir: str | os.PathLike,
    splits: Iterable[str] = ("train", "val", "test"),
    on_error: str = "raise",
) -> RecordSet:
    """Read UCM-captions (``captions/data_{split}_UCM.json``, COCO layout) with its images.

    Image files are found with :func:`ucm_caption_image_path` under ``<ucm_dir>/images``;
    captions of absent images (the 5 classes not shipped: chaparral, denseresidential, forest,
    freeway, golfcourse) are kept as caption-only records and listed in ``report.missing_images``.
    Every record's ``label`` is its UCM class, whether or not the image is present.
    """
    ucm_dir = Path(ucm_dir)
    cap_dir = ucm_dir / "captions"
    img_dir = ucm_dir / "images"
    if not cap_dir.is_dir():
        raise FileNotFoundError(
            f"{cap_dir}: UCM-captions folder not found; expected {cap_dir}/data_{{train,val,test}}_UCM.json"
        )
    out: RecordSet | None = None
    for split in splits:
        path = cap_dir / f"data_{split}_UCM.json"

        def where(entry: dict) -> Path | None:
            got = ucm_caption_image_path(entry["file_name"], img_dir)
            return got[1] if got else None

        def label(entry: dict) -> str | None:
            got = ucm_caption_image_path(entry["file_name"], img_dir)
            return got[0] if got else None

        rs = read_coco_captions(path, image_path=where, dataset="ucm", split=split, label=label, on_error=on_error)
        out = rs if out is None else out + rs
    assert out is not None, "splits must name at least one split"
    out.name = "ucm"
    return out


class UCMCaptions(CaptionDataset):
    """UCM-captions as a torchgeo dataset: ``{"image", "caption"}`` per caption of a present image."""

    def read(self, root: Any, on_error: str) -> RecordSet:
        """The records of ``root/ucm``."""
        return read_ucm_captions(Path(root) / "ucm", on_error=on_error)
