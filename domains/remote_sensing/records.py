"""Records of the remote-sensing domain and the report of what a reader skipped.

* :class:`RasterTile` names a window of bands of a (Geo)TIFF; it is a ``NamedTuple`` so that
  :func:`gentleclip.cache.fingerprint` can hash it like any tuple.
* :class:`ImageCaptionRecord` is one image (a file path or a :class:`RasterTile`; ``None`` for a
  caption-only record whose image is not available) with its captions, split and scene class.
* :class:`RecordSet` is the list of records a reader returns, with the :class:`ReadReport` of the
  records it skipped (``on_error="skip"``) and of the captions whose image is absent.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence, Union, overload

from domains.problems import OnError, Problems, ReadReport, SkippedRecord

__all__ = [
    "ImageItem",
    "RasterTile",
    "ImageCaptionRecord",
    "SkippedRecord",
    "ReadReport",
    "RecordSet",
    "RemoteSensingDataWarning",
    "OnError",
]

class RemoteSensingDataWarning(UserWarning):
    """Records were skipped or captions have no image (the message says which and why)."""


class RasterTile(NamedTuple):
    """A window of selected bands of a raster file (GeoTIFF or any format rasterio reads).

    Attributes:
        path: the raster file (absolute path string).
        window: ``(row_off, col_off, height, width)`` in pixels; ``None`` = the whole raster.
        bands: 1-based band indexes to read, in this order (e.g. ``(4, 3, 2)`` for Sentinel-2
            true colour); ``None`` = every band of the file.
        scaling: per-band normalisation to apply after reading (see
            :func:`domains.remote_sensing.images.scale_bands`): ``"percentile"``, ``"minmax"``,
            ``"none"``, a positive float divisor (e.g. ``10000.0`` for Sentinel-2 L2A
            reflectance), or ``None`` = the image encoder's default.
    """

    path: str
    window: tuple[int, int, int, int] | None = None
    bands: tuple[int, ...] | None = None
    scaling: str | float | None = None

    def describe(self) -> str:
        """Human-readable name used in error messages: ``file.tif[rows r0:r1, cols c0:c1, bands ...]``."""
        parts = []
        if self.window is not None:
            r, c, h, w = self.window
            parts.append(f"rows {r}:{r + h}, cols {c}:{c + w}")
        if self.bands is not None:
            parts.append("bands " + ",".join(str(b) for b in self.bands))
        return self.path + (f"[{'; '.join(parts)}]" if parts else "")


#: An image item as the image encoder takes it: a file path or a raster window.
ImageItem = Union[str, Path, RasterTile]


@dataclass
class ImageCaptionRecord:
    """One image and its captions.

    Attributes:
        image: path of the image file (str), a :class:`RasterTile`, or ``None`` when the image is
            not available (caption-only record, usable as unpaired text).
        captions: the captions of the image (may be empty for scene-classification images).
        split: ``"train"``, ``"val"``, ``"test"`` (or the dataset's own split name); ``None`` when
            the source has no splits.
        label: scene class as named by the source (e.g. ``"BaseballField"``, ``"airplane"``);
            ``None`` when unknown.
        image_id: identifier of the image in its source (e.g. the file name ``"00001.jpg"`` or
            ``"12.tif"``); unique within one reader's output.
        dataset: name of the source dataset (``"rsicd"``, ``"ucm"``, ``"sydney"`` ...).
        meta: anything else the source records (e.g. the COCO image id).
    """

    image: str | RasterTile | None
    captions: list[str] = field(default_factory=list)
    split: str | None = None
    label: str | None = None
    image_id: str = ""
    dataset: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_image(self) -> bool:
        """True when the record has an image (path or raster tile)."""
        return self.image is not None


class RecordSet(Sequence[ImageCaptionRecord]):
    """The records read from one source (a list) plus the :class:`ReadReport` of what was skipped.

    Indexing, ``len`` and iteration behave like a list. Helpers: :meth:`split`, :meth:`with_images`,
    :meth:`caption_only`, :attr:`labels`, :attr:`images`, :meth:`class_names`.
    """

    def __init__(
        self, records: Iterable[ImageCaptionRecord], name: str = "", report: ReadReport | None = None
    ) -> None:
        self.records: list[ImageCaptionRecord] = list(records)
        self.name = name
        self.report = report if report is not None else ReadReport()

    def __repr__(self) -> str:
        splits = Counter(r.split for r in self.records)
        n_img = sum(r.has_image for r in self.records)
        n_cap = sum(len(r.captions) for r in self.records)
        split_txt = ", ".join(f"{k}={v}" for k, v in splits.items()) if any(splits) else "no splits"
        return (
            f"RecordSet({self.name!r}: {len(self.records)} records, {n_img} with images, {n_cap} captions; "
            f"{split_txt}; {len(self.report.skipped)} skipped)"
        )

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, i: int) -> ImageCaptionRecord: ...

    @overload
    def __getitem__(self, i: slice) -> "RecordSet": ...

    def __getitem__(self, i: int | slice) -> "ImageCaptionRecord | RecordSet":
        if isinstance(i, slice):
            return RecordSet(self.records[i], self.name, self.report)
        return self.records[i]

    def __iter__(self) -> Iterator[ImageCaptionRecord]:
        return iter(self.records)

    def __add__(self, other: "RecordSet") -> "RecordSet":
        report = ReadReport()
        report.extend(self.report)
        report.extend(other.report)
        name = "+".join(n for n in (self.name, other.name) if n)
        return RecordSet(self.records + list(other), name, report)

    def filter(self, keep: Any) -> "RecordSet":
        """Records for which ``keep(record)`` is true (same name and report)."""
        return RecordSet([r for r in self.records if keep(r)], self.name, self.report)

    def split(self, *names: str) -> "RecordSet":
        """Records whose ``split`` is one of ``names`` (e.g. ``rs.split("train")``)."""
        if not names:
            raise ValueError("RecordSet.split: name at least one split, e.g. split('train')")
        known = {r.split for r in self.records}
        unknown = [n for n in names if n not in known]
        if unknown and len(unknown) == len(names):
            raise KeyError(f"{self.name or 'RecordSet'}: no records in split(s) {unknown}; the splits are "
                           f"{sorted(map(str, known))}")
        return self.filter(lambda r: r.split in names)

    def with_images(self) -> "RecordSet":
        """Records that have an image."""
        return self.filter(lambda r: r.image is not None)

    def caption_only(self) -> "RecordSet":
        """Records without an image (their captions are unpaired text)."""
        return self.filter(lambda r: r.image is None)

    @property
    def images(self) -> list[str | RasterTile]:
        """The image items (path strings / raster tiles) of the records that have one."""
        return [r.image for r in self.records if r.image is not None]

    @property
    def labels(self) -> list[str | None]:
        """The scene label of every record."""
        return [r.label for r in self.records]

    @property
    def captions(self) -> list[str]:
        """All captions, record by record."""
        return [c for r in self.records for c in r.captions]

    def class_names(self) -> list[str]:
        """Sorted distinct labels (``None`` left out)."""
        return sorted({r.label for r in self.records if r.label is not None})

    def warn_if_skipped(self, stacklevel: int = 3) -> None:
        """Emit one :class:`RemoteSensingDataWarning` summarising the skipped records, if any."""
        Problems(report=self.report, what=self.name or "reader", warning=RemoteSensingDataWarning).warn(stacklevel + 1)
