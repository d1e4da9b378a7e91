"""Fake RSITMD: ``rsitmd/captions/<split>_caps.txt`` + ``<split>_filename.txt`` (no images)."""
from __future__ import annotations

import sys
from pathlib import Path


def generate(root: Path) -> Path:
    """Train: 2 images x 5 caption lines; test: one image named twice with one caption each (the
    real test files repeat a name per caption). Returns ``root/rsitmd``."""
    out = Path(root) / "rsitmd" / "captions"
    out.mkdir(parents=True, exist_ok=True)
    names = ["boat_1.tif", "beach_2.tif"]
    (out / "train_filename.txt").write_text("\n".join(names) + "\n")
    lines = [f"{n.split('_')[0]} caption {k}" for n in names for k in range(5)]
    (out / "train_caps.txt").write_text("\n".join(lines) + "\n")
    (out / "test_filename.txt").write_text("port_3.tif\nport_3.tif\n")
    (out / "test_caps.txt").write_text("a port .\nships in a port .\n")
    return out.parent


if __name__ == "__main__":
    print(generate(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
