"""Tiny generated copies of the remote-sensing datasets (same formats as the real ones) + a fake text encoder.

Imported by the ``tests/test_rs_*.py`` modules; holds no tests itself except a check that the
generated copy is well formed.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
from fake_data import generator

RSICD_FAKE_CLASSES = generator("rsicd").CLASSES
UCM_FAKE_CLASSES = generator("ucm").CLASSES
write_image = generator("rsicd").write_image


def make_fake_remote_sensing(root: Path, per_class: int = 6, image_size: int = 48) -> Path:
    """Write a miniature ``remote_sensing/`` folder in the real layouts and return it: each dataset
    from its own generator under ``tests/data/`` (RSICD, UC Merced + UCM-captions, Sydney, RSITMD)."""
    rs = root / "remote_sensing"
    generator("rsicd").generate(rs, per_class=per_class, image_size=image_size)
    generator("ucm").generate(rs, image_size=image_size + 8)
    generator("sydney").generate(rs)
    generator("rsitmd").generate(rs)
    return rs


class HashTextEncoder:
    """Deterministic bag-of-words text encoder (hashed word counts, L2-normalised); counts its calls."""

    name = "hash-bow"
    identity = "hash-bow|dim=32|v1"
    dim = 32

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, items, view: int = 0) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for i, text in enumerate(items):
            for w in re.findall(r"[a-z]+", text.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        out += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_fake_dataset_is_well_formed(tmp_path):
    rs = make_fake_remote_sensing(tmp_path)
    data = json.loads((rs / "rsicd" / "dataset_rsicd.json").read_text())
    assert len(data["images"]) == 4 * 6
    assert {i["split"] for i in data["images"]} == {"train", "val", "test"}
    assert len(list((rs / "ucm" / "images").rglob("*.jpg"))) == 12
