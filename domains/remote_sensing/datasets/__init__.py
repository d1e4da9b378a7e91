"""The published remote-sensing datasets, one module each: its layout under the data folder and its reader.

=====================  =====================================  =========================================
module                 reader                                 torchgeo dataset (``{"image", "caption"}``)
=====================  =====================================  =========================================
:mod:`.rsicd`          :func:`read_rsicd`                     :class:`RSICD`
:mod:`.ucm_captions`   :func:`read_ucm_captions`              :class:`UCMCaptions`
:mod:`.sydney_captions` :func:`read_sydney_captions`          (captions only here)
:mod:`.rsitmd`         :func:`read_rsitmd_captions`           (captions only here)
:mod:`.ucm_scenes`     :func:`read_ucm_scenes`                (scene classes; torchgeo has ``UCMerced``)
=====================  =====================================  =========================================

A new caption set is one module here (layout constants, a reader over :mod:`..formats`, and a
:class:`~._nongeo.CaptionDataset` subclass when its images are available) and one generator of
tiny fake data under ``tests/data/<name>/``.
"""
from __future__ import annotations

from ._nongeo import CaptionDataset
from .rsicd import RSICD, read_rsicd, read_rsicd_class_lists
from .rsitmd import read_rsitmd_captions
from .sydney_captions import read_sydney_captions
from .ucm_captions import UCMCaptions, read_ucm_captions, ucm_caption_image_path
from .ucm_scenes import read_ucm_scenes

__all__ = ["CaptionDataset", "RSICD", "UCMCaptions", "read_rsicd", "read_rsicd_class_lists", "read_rsitmd_captions",
           "read_sydney_captions", "read_ucm_captions", "ucm_caption_image_path", "read_ucm_scenes"]
