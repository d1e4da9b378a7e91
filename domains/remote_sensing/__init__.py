"""Remote-sensing domain: satellite/aerial images and their captions.

Readers (RSICD, UC Merced, UCM/Sydney-captions, RSITMD, scene folders, the user's GeoTIFF scenes
with a captions table), the frozen :class:`ImageEncoder` (timm / torchgeo backbones; ImageNet
EfficientNet-Lite0 as the offline default), deterministic image views for the self-supervised
term, and :class:`RemoteSensingAdapter`, which builds the RSICD
:class:`gentleclip.task.AlignmentTask` and scores a joint space (retrieval, zero-shot scene
classification, linear probe, clustering, modality gap).
"""
from __future__ import annotations

from domains.problems import ReadReport, SkippedRecord

from .adapter import DATA_INSTRUCTIONS, EvalData, RemoteSensingAdapter, caption_groups, image_fingerprint
from .classes import (
    DEFAULT_TEMPLATES,
    READABLE_CLASS_NAMES,
    RSICD_CLASSES,
    UCM_CLASSES,
    class_prompts,
    readable_class_name,
    readable_class_names,
)
from .datasets import (
    RSICD,
    CaptionDataset,
    UCMCaptions,
    read_rsicd,
    read_rsicd_class_lists,
    read_rsitmd_captions,
    read_sydney_captions,
    read_ucm_captions,
    read_ucm_scenes,
    ucm_caption_image_path,
)
from .encoders import (
    DEFAULT_IMAGE_ENCODER,
    ImageEncoder,
    OfflineWeightsError,
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0,
)
from .formats import load_json, read_caption_lines, read_coco_captions, read_karpathy_captions
from .geotiff import raster_shape, raster_tiles, read_geotiff_captions, read_geotiff_folder
from .images import (
    ImageNotFoundError,
    ImageReadError,
    ViewParams,
    apply_view,
    item_key,
    load_image,
    scale_bands,
    verify_image,
    view_params,
)
from .records import ImageCaptionRecord, RasterTile, RecordSet, RemoteSensingDataWarning
from .scenes import read_scene_folder

__all__ = [
    "RSICD",
    "UCMCaptions",
    "CaptionDataset",
    "read_rsicd",
    "DATA_INSTRUCTIONS",
    "DEFAULT_IMAGE_ENCODER",
    "DEFAULT_TEMPLATES",
    "READABLE_CLASS_NAMES",
    "RSICD_CLASSES",
    "UCM_CLASSES",
    "EvalData",
    "ImageCaptionRecord",
    "ImageEncoder",
    "ImageNotFoundError",
    "ImageReadError",
    "OfflineWeightsError",
    "RasterTile",
    "RemoteSensingAdapter",
    "ReadReport",
    "RecordSet",
    "RemoteSensingDataWarning",
    "SkippedRecord",
    "ViewParams",
    "apply_view",
    "caption_groups",
    "class_prompts",
    "efficientnet_lite0_weights_path",
    "image_fingerprint",
    "item_key",
    "load_efficientnet_lite0",
    "load_image",
    "load_json",
    "raster_shape",
    "raster_tiles",
    "read_caption_lines",
    "read_coco_captions",
    "read_geotiff_captions",
    "read_geotiff_folder",
    "read_karpathy_captions",
    "read_rsicd_class_lists",
    "read_rsitmd_captions",
    "read_scene_folder",
    "read_sydney_captions",
    "read_ucm_captions",
    "read_ucm_scenes",
    "readable_class_name",
    "readable_class_names",
    "scale_bands",
    "ucm_caption_image_path",
    "verify_image",
    "view_params",
]
