"""Fake Sydney-captions: ``sydney/captions/captions_train2014.json`` (COCO layout, ids from 0, no images)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _images import coco_captions  # noqa: E402


def generate(root: Path) -> Path:
    """Captions of 3 images. Returns ``root/sydney``."""
    out = Path(root) / "sydney"
    (out / "captions").mkdir(parents=True, exist_ok=True)
    (out / "captions" / "captions_train2014.json").write_text(json.dumps(coco_captions([0, 1, 2])))
    return out


if __name__ == "__main__":
    print(generate(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
