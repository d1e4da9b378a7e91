"""RSICD (Lu et al., "Exploring Models and Data for Remote Sensing Image Caption Generation", 2017):
10,921 aerial images with 5 captions each and 31 scene-class lists.

Layout under the data folder::

    rsicd/dataset_rsicd.json   captions (Karpathy layout: images[].filename, split, sentences[].raw)
    rsicd/images/<file>.jpg    the images
    rsicd/classes/<Class>.txt  scene class lists (one image file name per line)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from domains.problems import Problems, ReadReport

from ..formats import read_karpathy_captions
from ..records import RecordSet
from ._nongeo import CaptionDataset

__all__ = ["CAPTIONS", "IMAGES", "CLASSES", "read_rsicd", "read_rsicd_class_lists", "RSICD"]

CAPTIONS = "rsicd/dataset_rsicd.json"
IMAGES = "rsicd/images"
CLASSES = "rsicd/classes"


def read_rsicd_class_lists(classes_dir: str | os.PathLike, on_error: str = "raise") -> dict[str, str]:
    """RSICD scene classes from ``classes/<Class>.txt`` files (one image file name per line).

    The 31 lists (30 scene classes plus ``playfields``) hold each of the 10,921 RSICD images
    exactly once; 921 images have numeric names and get their class only from these lists.

    Returns:
        ``{image file name: class}`` where the class is the list's file stem (``"BaseballField"``).

    Raises:
        FileNotFoundError: no ``*.txt`` list in the folder.
        ValueError: an image listed in two classes (naming both lists and the line), unless
            ``on_error="skip"`` (the image then keeps its first class and the conflict is warned).
    """
    classes_dir = Path(classes_dir)
    lists = sorted(classes_dir.glob("*.txt")) if classes_dir.is_dir() else []
    if not lists:
        raise FileNotFoundError(f"{classes_dir}: no class lists found; expected <Class>.txt files listing image names")
    report = ReadReport()
    problems = Problems(on_error, report)
    out: dict[str, str] = {}
    where: dict[str, str] = {}
    for path in lists:
        cls = path.stem
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            name = line.strip()
            if not name:
                continue
            if name in out and out[name] != cls:
                problems.bad(path, f"line {n} ({name})", f"already listed in class {out[name]!r} ({where[name]})")
                continue
            out[name] = cls
            where[name] = f"{path.name} line {n}"
    RecordSet([], "rsicd classes", report).warn_if_skipped()
    return out


def read_rsicd(root: str | os.PathLike, labels: dict[str, str] | None = None, require_images: bool = True,
               verify: bool = False, on_error: str = "raise") -> RecordSet:
    """RSICD's records under ``root`` (the folder holding ``rsicd/``): image, 5 captions, split and,
    with ``labels`` (:func:`read_rsicd_class_lists`), the scene class."""
    root = Path(root)
    return read_karpathy_captions(root / CAPTIONS, root / IMAGES, dataset="rsicd", labels=labels,
                                  require_images=require_images, verify=verify, on_error=on_error)


class RSICD(CaptionDataset):
    """RSICD as a torchgeo dataset: ``{"image", "caption"}`` per caption (see :class:`CaptionDataset`)."""

    def read(self, root: Any, on_error: str) -> RecordSet:
        """The records of ``root/rsicd``, with scene classes when ``rsicd/classes`` exists."""
        classes = Path(root) / CLASSES
        labels = read_rsicd_class_lists(classes, on_error=on_error) if classes.is_dir() else None
        return read_rsicd(root, labels=labels, on_error=on_error)
