"""Scene-classification data in class folders (``<root>/<class>/<image>``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from domains.problems import Problems, ReadReport

from .records import ImageCaptionRecord, RecordSet

__all__ = ["IMAGE_EXTENSIONS", "read_scene_folder"]

#: File endings treated as images in scene folders (case-insensitive).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def read_scene_folder(
    root: str | os.PathLike,
    classes: Iterable[str] | None = None,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    dataset: str | None = None,
    verify: bool = False,
    on_error: str = "raise",
) -> RecordSet:
    """Read a scene-classification folder: one sub-folder per class, images inside.

    Args:
        root: the folder (e.g. ``ucm/images``).
        classes: class folders to read, in this order; default every sub-folder, sorted. A named
            class without a folder is an error.
        extensions: file endings counted as images; other files are ignored (hidden files too).
        dataset: name stored in the records (default: ``root``'s folder name).
        verify: open every image header with PIL (slower); an unreadable file is a bad record.
        on_error: ``"raise"`` (default) or ``"skip"`` bad records (empty class folder,
            unreadable image with ``verify``).

    Returns:
        Records sorted by class then file name; ``label`` = folder name, ``captions`` empty,
        ``image_id`` = ``"<class>/<file>"``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: scene folder not found; expected <root>/<class>/<image files>")
    exts = tuple(e.lower() for e in extensions)
    if classes is None:
        class_list = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_list:
            raise ValueError(f"{root}: no class sub-folders; expected <root>/<class>/<image files>")
    else:
        class_list = list(classes)
        missing = [c for c in class_list if not (root / c).is_dir()]
        if missing:
            raise FileNotFoundError(f"{root}: class folder(s) {missing} not found")
    report = ReadReport()
    problems = Problems(on_error, report)
    records: list[ImageCaptionRecord] = []
    for cls in class_list:
        files = sorted(
            p for p in (root / cls).iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
        )  # fmt: skip
        if not files:
            problems.bad(root, f"class {cls!r}", f"folder {root / cls} holds no image files ({', '.join(exts)})")
            continue
        for f in files:
            if verify:
                from .images import ImageReadError, verify_image

                try:
                    verify_image(f)
                except ImageReadError as e:
                    problems.bad(root, f"{cls}/{f.name}", str(e), ImageReadError)
                    continue
            records.append(
                ImageCaptionRecord(image=str(f), label=cls, image_id=f"{cls}/{f.name}", dataset=dataset or root.name)
            )
    rs = RecordSet(records, dataset or root.name, report)
    rs.warn_if_skipped()
    return rs
