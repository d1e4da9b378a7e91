"""Fake RSICD: ``rsicd/dataset_rsicd.json`` (Karpathy layout), ``rsicd/images/``, ``rsicd/classes/``."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _images import write_image  # noqa: E402

CLASSES = ("Airport", "BareLand", "Beach", "playfields")
COLOURS = {"Airport": (200, 200, 200), "BareLand": (180, 140, 90), "Beach": (240, 220, 150),
           "playfields": (40, 160, 60)}
SPLITS = ("train", "train", "test", "train", "val", "test")


def generate(root: Path, per_class: int = 6, image_size: int = 48) -> Path:
    """``len(CLASSES) x per_class`` images, splits cycling :data:`SPLITS` (every class has train and
    test images), 5 captions each, and class lists (``playfields`` images have numeric names, like
    the real 921). Returns ``root/rsicd``."""
    out = Path(root) / "rsicd"
    images, lists = [], {c: [] for c in CLASSES}
    n = 0
    for cls in CLASSES:
        for j in range(per_class):
            n += 1
            fname = f"{n:05d}.jpg" if cls == "playfields" else f"{cls.lower()}_{j + 1}.jpg"
            write_image(out / "images" / fname, seed=n, size=image_size, colour=COLOURS[cls])
            word = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", cls).lower()
            sentences = [{"raw": f"a {word} number {j} seen from above view {k} .", "tokens": []} for k in range(5)]
            images.append({"filename": fname, "imgid": n - 1, "split": SPLITS[j % len(SPLITS)], "sentences": sentences})
            lists[cls].append(fname)
    (out / "dataset_rsicd.json").write_text(json.dumps({"dataset": "rsicd", "images": images}))
    (out / "classes").mkdir(parents=True, exist_ok=True)
    for cls, names in lists.items():
        (out / "classes" / f"{cls}.txt").write_text("\n".join(names) + "\n")
    return out


if __name__ == "__main__":
    print(generate(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
