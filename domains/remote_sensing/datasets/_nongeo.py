"""The torchgeo view of an image-caption dataset (private base class of the dataset modules)."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torchgeo.datasets import NonGeoDataset

from ..images import load_image
from ..records import RecordSet

__all__ = ["CaptionDataset"]


class CaptionDataset(NonGeoDataset):
    """Image-caption pairs as a :class:`torchgeo.datasets.NonGeoDataset`: one sample per caption.

    ``dataset[i]`` is ``{"image": float32 tensor [C, H, W] in [0, 1], "caption": str}`` (the
    sample layout of torchgeo's ``SkyScript``), passed through ``transforms`` when given. Records
    without an image (captions whose image is absent) are left out. Subclasses read their records
    in :meth:`read`.

    Args:
        root: the folder holding the dataset's own folder (``<root>/rsicd``, ``<root>/ucm``).
        split: ``"train"``, ``"val"``, ``"test"`` or None for all.
        transforms: a function of the sample dict, e.g. torchvision or kornia augmentations.
        on_error: ``"raise"`` or ``"skip"`` malformed records (see :mod:`domains.problems`).
    """

    def __init__(self, root: Any, split: str | None = None, transforms: Callable[[dict], dict] | None = None,
                 on_error: str = "raise") -> None:
        records = self.read(root, on_error=on_error)
        if split is not None:
            records = records.split(split)
        self.records: RecordSet = records.with_images()
        self.transforms = transforms
        self._index = [(i, j) for i, r in enumerate(self.records) for j in range(len(r.captions))]

    def read(self, root: Any, on_error: str) -> RecordSet:
        """The dataset's records under ``root`` (each subclass reads its own layout)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {len(self)} samples")
        i, j = self._index[index]
        record = self.records[i]
        sample = {"image": torch.from_numpy(load_image(record.image)), "caption": record.captions[j]}
        return self.transforms(sample) if self.transforms is not None else sample
