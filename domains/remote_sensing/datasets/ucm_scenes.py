"""UC Merced Land Use (Yang and Newsam, 2010): 21 scene classes x 100 aerial images (16 classes here).

Layout under the data folder::

    ucm/images/<class>/<class>NN.<ext>   one folder per scene class
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..records import RecordSet
from ..scenes import read_scene_folder

__all__ = ["IMAGES", "read_ucm_scenes"]

IMAGES = "ucm/images"


def read_ucm_scenes(ucm_dir: str | os.PathLike, classes: Iterable[str] | None = None,
                    on_error: str = "raise") -> RecordSet:
    """UC Merced Land Use scenes from ``<ucm_dir>/images/<class>/<class>NN.<ext>`` (dataset ``"ucm"``)."""
    return read_scene_folder(Path(ucm_dir) / "images", classes=classes, dataset="ucm", on_error=on_error)
