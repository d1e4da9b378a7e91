"""Fake UC Merced scenes (``ucm/images/<class>/``) and UCM-captions (``ucm/captions/data_<split>_UCM.json``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _images import coco_captions, write_image  # noqa: E402

CLASSES = ("airplane", "beach", "harbor")
COLOURS = {"airplane": (210, 210, 215), "beach": (235, 215, 160), "harbor": (30, 80, 160)}


def generate(root: Path, image_size: int = 56) -> Path:
    """3 of the 21 classes x 4 images; UCM-captions for ids of airplane (class 1 -> ids 101..) and of
    chaparral (class 5 -> ids 501.., whose images are absent, as in the real copy). Returns ``root/ucm``."""
    out = Path(root) / "ucm"
    for cls in CLASSES:
        for j in range(4):
            write_image(out / "images" / cls / f"{cls}{j:02d}.jpg", seed=1000 + j, size=image_size,
                        colour=COLOURS[cls])
    (out / "captions").mkdir(parents=True, exist_ok=True)
    for split, ids in (("train", [101, 102, 501]), ("val", [103]), ("test", [104, 502])):
        (out / "captions" / f"data_{split}_UCM.json").write_text(json.dumps(coco_captions(ids)))
    return out


if __name__ == "__main__":
    print(generate(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
