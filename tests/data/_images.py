"""Small deterministic images for the fake datasets (shared by the generators)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int, size: int = 48, colour: tuple[int, int, int] | None = None) -> Path:
    """A small deterministic JPEG/PNG: a class colour plus a seeded pattern."""
    rng = np.random.default_rng(seed)
    base = np.array(colour if colour is not None else rng.integers(0, 255, 3), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    pattern = 40 * np.sin(xx / (3 + seed % 5)) * np.cos(yy / (4 + seed % 3))
    arr = base[None, None, :] + pattern[..., None] + rng.normal(0, 10, (size, size, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path)
    return path


def coco_captions(ids: list[int]) -> dict:
    """A COCO caption file: images ``<id>.tif`` with 5 captions each."""
    imgs = [{"id": k, "file_name": f"{k}.tif"} for k in ids]
    anns = [{"image_id": k, "id": 10 * k + c, "caption": f"caption {c} of image {k} ."} for k in ids for c in range(5)]
    return {"info": {}, "images": imgs, "licenses": [], "annotations": anns}
