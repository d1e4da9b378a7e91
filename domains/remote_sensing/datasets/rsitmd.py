"""RSITMD (Yuan et al., "Exploring a Fine-Grained Multiscale Method for Cross-Modal Remote Sensing
Image Retrieval", 2022): 4,743 images with 5 captions each. Only the captions are shipped here,
so the set is unpaired extra text (no torchgeo dataset).

Layout under the data folder::

    rsitmd/captions/<split>_caps.txt + <split>_filename.txt   one caption per line, 5 per image name
"""
from __future__ import annotations

import os
from pathlib import Path

from ..formats import read_caption_lines
from ..records import RecordSet

__all__ = ["CAPTIONS", "read_rsitmd_captions"]

CAPTIONS = "rsitmd/captions"


def read_rsitmd_captions(rsitmd_dir: str | os.PathLike) -> RecordSet:
    """RSITMD captions (``captions/<split>_caps.txt`` + ``captions/<split>_filename.txt``), caption-only.

    The train files hold 5 consecutive captions per name; the test files one name per caption
    line; both are handled by :func:`read_caption_lines`.
    """
    cap_dir = Path(rsitmd_dir) / "captions"
    pairs = sorted(cap_dir.glob("*_caps.txt")) if cap_dir.is_dir() else []
    if not pairs:
        raise FileNotFoundError(
            f"{cap_dir}: no RSITMD caption files found; expected {cap_dir}/<split>_caps.txt with <split>_filename.txt"
        )
    out: RecordSet | None = None
    for caps in pairs:
        split = caps.name[: -len("_caps.txt")]
        names = caps.with_name(f"{split}_filename.txt")
        rs = read_caption_lines(caps, names, dataset="rsitmd", split=split)
        out = rs if out is None else out + rs
    assert out is not None
    out.name = "rsitmd"
    return out
