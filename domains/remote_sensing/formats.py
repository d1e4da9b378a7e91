"""The published file formats of image-caption datasets; each dataset module (:mod:`.datasets`) reads its layout with
them.

* Karpathy-style JSON (RSICD ``dataset_rsicd.json``; the UCM/Sydney-captions releases in the
  same layout): ``{"images": [{"filename", "split", "sentences": [{"raw", "tokens"}...]}...]}``
  -> :func:`read_karpathy_captions`.
* COCO caption JSON (``{"images": [{"id", "file_name"}...], "annotations": [{"image_id",
  "caption"}...]}``) -> :func:`read_coco_captions` (UCM-captions, Sydney-captions).
* Caption lines (RSITMD ``*_caps.txt`` + ``*_filename.txt``) -> :func:`read_caption_lines`.

Every reader returns a :class:`~domains.remote_sensing.records.RecordSet`. Malformed records
(missing file name, no captions, duplicate image, image file absent when images are required)
raise ``ValueError`` naming the file and the record (``on_error="raise"``, the default) or are
skipped and listed in ``RecordSet.report`` with one warning (``on_error="skip"``). A file that is
not valid JSON always raises, naming the file, line and column. Captions whose image is absent
where images are optional (UCM-captions for the 5 classes not shipped) are kept as caption-only
records (``image=None``) and listed in ``report.missing_images``.
"""
from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from domains.problems import Problems, ReadReport, SkippedRecord

from .records import ImageCaptionRecord, RecordSet

__all__ = ["load_json", "read_karpathy_captions", "read_coco_captions", "read_caption_lines"]

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def load_json(path: str | os.PathLike, expected: str) -> Any:
    """Parse a JSON file; errors name the file, the position and what was ``expected``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid JSON (line/column given) or not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found; expected {expected}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); expected {expected}"
        ) from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e}); expected {expected}") from None


def _clean_caption(text: str) -> str:
    """Strip and collapse whitespace (captions keep their words and punctuation)."""
    return re.sub(r"\s+", " ", text).strip()


def _sentence_text(sentence: Any) -> str | None:
    """The caption of one Karpathy ``sentences`` entry (``raw``, else the joined ``tokens``)."""
    if isinstance(sentence, str):
        return _clean_caption(sentence) or None
    if isinstance(sentence, dict):
        raw = sentence.get("raw")
        if isinstance(raw, str) and raw.strip():
            return _clean_caption(raw)
        tokens = sentence.get("tokens")
        if isinstance(tokens, list) and tokens and all(isinstance(t, str) for t in tokens):
            return _clean_caption(" ".join(tokens))
    return None


def _check_dir(path: Path | None, what: str) -> None:
    if path is not None and not path.is_dir():
        raise FileNotFoundError(f"{path}: image folder not found; expected the folder holding the {what} images")


# --------------------------------------------------------------------------------------------
# Karpathy layout
# --------------------------------------------------------------------------------------------
def read_karpathy_captions(
    json_path: str | os.PathLike,
    image_dir: str | os.PathLike | None = "auto",
    dataset: str | None = None,
    labels: dict[str, str] | None = None,
    require_images: bool = True,
    verify: bool = False,
    on_error: str = "raise",
) -> RecordSet:
    """Read a Karpathy-style caption file (RSICD, UCM/Sydney-captions in the same layout).

    Args:
        json_path: the JSON file, ``{"images": [{"filename", "split", "sentences": [...]}]}``;
            an entry may also have ``"filepath"`` (a sub-folder, as in COCO Karpathy splits).
        image_dir: folder of the images. ``"auto"`` = ``images/`` beside the JSON file when it
            exists, else caption-only records. ``None`` = caption-only records (no image check).
        dataset: name stored in every record (default: the JSON's ``"dataset"`` field, else the
            file stem).
        labels: optional ``{filename: scene class}`` (e.g. from
            :func:`~domains.remote_sensing.datasets.rsicd.read_rsicd_class_lists`).
        require_images: a record whose image file is absent is a bad record (True) or is kept
            caption-only and listed in ``report.missing_images`` (False).
        verify: decode every image (slower: about 1 ms per 224 px JPEG); an unreadable image is a
            bad record (:class:`~domains.remote_sensing.images.ImageReadError`).
        on_error: ``"raise"`` (default) or ``"skip"`` bad records (see the module docstring).

    Returns:
        One record per image, in file order, with ``captions`` = the ``raw`` sentences.
    """
    json_path = Path(json_path)
    expected = 'a Karpathy-style caption file {"images": [{"filename", "split", "sentences": [{"raw"}...]}...]}'
    data = load_json(json_path, expected)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        got = type(data).__name__ if not isinstance(data, dict) else f"keys {sorted(data)[:8]}"
        raise ValueError(f"{json_path}: expected a JSON object with an 'images' list ({expected}); got {got}")
    if isinstance(image_dir, str) and image_dir == "auto":
        guess = json_path.parent / "images"
        img_dir: Path | None = guess if guess.is_dir() else None
    else:
        img_dir = Path(image_dir) if image_dir is not None else None
        _check_dir(img_dir, json_path.name)
    name = dataset or (data.get("dataset") if isinstance(data.get("dataset"), str) else None) or json_path.stem
    report = ReadReport()
    problems = Problems(on_error, report)
    records: list[ImageCaptionRecord] = []
    seen: set[str] = set()
    for i, entry in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(entry, dict):
            problems.bad(json_path, where, "expected an object with 'filename' and 'sentences', got "
                                           f"{type(entry).__name__}")
            continue
        filename = entry.get("filename")
        if not isinstance(filename, str) or not filename.strip():
            problems.bad(json_path, where, f"missing or empty 'filename' (got {filename!r})")
            continue
        where = f"images[{i}] ({filename})"
        sub = entry.get("filepath")
        rel = f"{sub}/{filename}" if isinstance(sub, str) and sub else filename
        if rel in seen:
            problems.bad(json_path, where, "the same image is listed twice")
            continue
        sentences = entry.get("sentences")
        if not isinstance(sentences, list):
            problems.bad(json_path, where, f"'sentences' must be a list of {{'raw': ...}} objects, got "
                                           f"{type(sentences).__name__}")
            continue
        captions = [t for t in (_sentence_text(s) for s in sentences) if t]
        if len(captions) != len(sentences) or not captions:
            problems.bad(
                json_path, where,
                f"expected at least one sentence and a non-empty 'raw' (or 'tokens') in each; "
                f"{len(sentences) - len(captions)} of {len(sentences)} unusable",
            )  # fmt: skip
            continue
        split = entry.get("split")
        if split is not None and not isinstance(split, str):
            problems.bad(json_path, where, f"'split' must be a string, got {split!r}")
            continue
        image: str | None = None
        if img_dir is not None:
            path = img_dir / rel
            if path.is_file():
                image = str(path)
                if verify:
                    from .images import ImageReadError, verify_image

                    try:
                        verify_image(path)
                    except ImageReadError as e:
                        problems.bad(json_path, where, str(e), ImageReadError)
                        continue
            elif require_images:
                problems.bad(json_path, where, f"image file {path} not found", FileNotFoundError)
                continue
            else:
                report.missing_images.append((str(json_path), rel, str(path)))
        seen.add(rel)
        meta = {k: entry[k] for k in ("imgid", "cocoid", "id") if k in entry}
        records.append(
            ImageCaptionRecord(
                image=image, captions=captions, split=split, label=(labels or {}).get(filename),
                image_id=rel, dataset=name, meta=meta,
            )  # fmt: skip
        )
    rs = RecordSet(records, name, report)
    rs.warn_if_skipped()
    return rs


# --------------------------------------------------------------------------------------------
# COCO layout
# --------------------------------------------------------------------------------------------
def read_coco_captions(
    json_path: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    image_path: Callable[[dict], str | os.PathLike | None] | None = None,
    dataset: str | None = None,
    split: str | None = None,
    label: Callable[[dict], str | None] | None = None,
    require_images: bool = False,
    on_error: str = "raise",
) -> RecordSet:
    """Read a COCO caption file: ``images[]`` (``id``, ``file_name``) + ``annotations[]`` (``image_id``, ``caption``).

    Args:
        json_path: the JSON file.
        image_dir: folder holding ``file_name`` of each image; ``None`` (and no ``image_path``)
            = caption-only records, nothing reported missing.
        image_path: maps an ``images[]`` entry to the expected image file (overrides
            ``image_dir``); return ``None`` when the image cannot exist.
        dataset: name stored in the records (default: the file stem).
        split: split stored in every record (COCO files hold one split each).
        label: maps an ``images[]`` entry to its scene class.
        require_images: absent image = bad record (True) or caption-only record listed in
            ``report.missing_images`` (False, default).
        on_error: ``"raise"`` or ``"skip"`` bad records.

    Returns:
        One record per image that has at least one caption, in ``images[]`` order.
    """
    json_path = Path(json_path)
    expected = 'a COCO caption file {"images": [{"id", "file_name"}...], "annotations": [{"image_id", "caption"}...]}'
    data = load_json(json_path, expected)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        got = type(data).__name__ if not isinstance(data, dict) else f"keys {sorted(data)[:8]}"
        raise ValueError(f"{json_path}: expected {expected}; got {got}")
    img_dir = Path(image_dir) if image_dir is not None else None
    _check_dir(img_dir, json_path.name)
    name = dataset or json_path.stem
    report = ReadReport()
    problems = Problems(on_error, report)

    images: dict[Any, dict] = {}
    order: list[Any] = []
    names_seen: set[str] = set()
    for i, entry in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(entry, dict) or "id" not in entry:
            problems.bad(json_path, where, "expected an object with 'id' and 'file_name'")
            continue
        fname = entry.get("file_name")
        if not isinstance(fname, str) or not fname.strip():
            problems.bad(json_path, f"{where} (id {entry['id']!r})", f"missing or empty 'file_name' (got {fname!r})")
            continue
        if entry["id"] in images or fname in names_seen:
            problems.bad(json_path, f"{where} ({fname})", f"image id {entry['id']!r} / file name listed twice")
            continue
        images[entry["id"]] = entry
        names_seen.add(fname)
        order.append(entry["id"])

    caps: dict[Any, list[str]] = defaultdict(list)
    for j, ann in enumerate(data["annotations"]):
        where = f"annotations[{j}]"
        if not isinstance(ann, dict):
            problems.bad(json_path, where, "expected an object with 'image_id' and 'caption', got "
                                           f"{type(ann).__name__}")
            continue
        text = ann.get("caption")
        if not isinstance(text, str) or not text.strip():
            problems.bad(json_path, f"{where} (image_id {ann.get('image_id')!r})", "missing or empty 'caption' (got "
                                                                                   f"{text!r})")
            continue
        if ann.get("image_id") not in images:
            problems.bad(json_path, f"{where} (image_id {ann.get('image_id')!r})", "refers to no entry of 'images'")
            continue
        caps[ann["image_id"]].append(_clean_caption(text))

    records: list[ImageCaptionRecord] = []
    for image_id in order:
        entry = images[image_id]
        fname = entry["file_name"]
        where = f"image id {image_id!r} ({fname})"
        if not caps.get(image_id):
            problems.bad(json_path, where, "has no caption in 'annotations'")
            continue
        expected_path: Path | None = None
        if image_path is not None:
            got = image_path(entry)
            expected_path = Path(got) if got is not None else None
        elif img_dir is not None:
            expected_path = img_dir / fname
        image: str | None = None
        if expected_path is not None:
            if expected_path.is_file():
                image = str(expected_path)
            elif require_images:
                problems.bad(json_path, where, f"image file {expected_path} not found", FileNotFoundError)
                continue
            else:
                report.missing_images.append((str(json_path), fname, str(expected_path)))
        records.append(
            ImageCaptionRecord(
                image=image, captions=caps[image_id], split=split,
                label=label(entry) if label is not None else None,
                image_id=fname, dataset=name, meta={"coco_id": image_id},
            )  # fmt: skip
        )
    rs = RecordSet(records, name, report)
    rs.warn_if_skipped()
    return rs


def read_caption_lines(
    captions_path: str | os.PathLike,
    names_path: str | os.PathLike,
    dataset: str = "",
    split: str | None = None,
    label_from_name: bool = True,
) -> RecordSet:
    """Captions in a text file (one per line) with the image file names in a second file.

    Either both files have one line per caption, or the captions file has ``k`` lines per name
    (consecutive). Captions are grouped by image name, in order of first appearance. Records are
    caption-only (``image=None``); ``label`` is the part of the name before the last ``_``
    (``baseballfield_452.tif`` -> ``baseballfield``) when ``label_from_name``.

    Empty caption lines (the RSITMD release has 20, five for each of 4 images) are gaps in the
    release rather than format errors: they are left out and listed in ``report.skipped`` with
    one warning; a name left with no caption at all is dropped the same way.

    Raises:
        ValueError: the line counts fit neither layout (both counts are given), or an empty name.
    """
    captions_path, names_path = Path(captions_path), Path(names_path)
    for p in (captions_path, names_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: file not found")
    caps = captions_path.read_text(encoding="utf-8").splitlines()
    names = names_path.read_text(encoding="utf-8").splitlines()
    while caps and not caps[-1].strip():
        caps.pop()
    while names and not names[-1].strip():
        names.pop()
    if not names:
        raise ValueError(f"{names_path}: no image names")
    if len(caps) % len(names) != 0:
        raise ValueError(
            f"{captions_path}: {len(caps)} caption lines do not fit {len(names)} names in {names_path}; "
            "expected one caption per name line, or the same number k of consecutive captions per name"
        )
    per = len(caps) // len(names)
    report = ReadReport()
    groups: dict[str, list[str]] = {}
    for i, raw in enumerate(caps):
        name = names[i // per].strip()
        if not name:
            raise ValueError(f"{names_path}: line {i // per + 1} is empty; expected an image file name")
        groups.setdefault(name, [])
        text = _clean_caption(raw)
        if not text:
            report.skipped.append(SkippedRecord(str(captions_path), f"line {i + 1} ({name})", "empty caption line"))
            continue
        groups[name].append(text)
    for n in [n for n, c in groups.items() if not c]:
        report.skipped.append(SkippedRecord(str(names_path), n, "no non-empty caption; image left out"))
        del groups[n]
    records = [
        ImageCaptionRecord(
            image=None, captions=c, split=split,
            label=(n.rsplit("_", 1)[0] if label_from_name and "_" in n else None),
            image_id=n, dataset=dataset,
        )  # fmt: skip
        for n, c in groups.items()
    ]
    rs = RecordSet(records, dataset, report)
    rs.warn_if_skipped()
    return rs
