"""Sydney-captions (Qu et al., 2016): 613 aerial images of Sydney with 5 captions each, in COCO layout.
Only the captions are shipped here, so the set is unpaired extra text (no torchgeo dataset).

Layout under the data folder::

    sydney/captions/*.json   captions (COCO layout)
"""
from __future__ import annotations

import os
from pathlib import Path

from ..formats import read_coco_captions
from ..records import RecordSet

__all__ = ["CAPTIONS", "read_sydney_captions"]

CAPTIONS = "sydney/captions"


def read_sydney_captions(sydney_dir: str | os.PathLike, on_error: str = "raise") -> RecordSet:
    """Sydney-captions (every ``captions/*.json``, COCO layout) as caption-only records.

    The split is taken from the file name (``...train...`` -> ``train``, ``...val...`` -> ``val``,
    ``...test...`` -> ``test``).
    """
    cap_dir = Path(sydney_dir) / "captions"
    files = sorted(cap_dir.glob("*.json")) if cap_dir.is_dir() else []
    if not files:
        raise FileNotFoundError(f"{cap_dir}: no Sydney-captions JSON files found; expected {cap_dir}/*.json (COCO "
                                "layout)")
    out: RecordSet | None = None
    for path in files:
        split = next((s for s in ("train", "val", "test") if s in path.stem.lower()), None)
        rs = read_coco_captions(path, dataset="sydney", split=split, on_error=on_error)
        out = rs if out is None else out + rs
    assert out is not None
    out.name = "sydney"
    return out
