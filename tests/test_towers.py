"""The encoders' trainable towers: at view 0 they give the frozen encoders' features, gradients reach only
the blocks that train, and frozen blocks stay in eval mode."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gentleclip.model import set_trainable

SEQS = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "MSDNELKQLL", "ACDEFGHIKLMNPQRSTVWY" * 2]


def _check_tower(encoder, items, atol: float = 1e-5):
    tower = encoder.tower()
    with torch.no_grad():
        got = tower(tower.collate(items, np.zeros(len(items), dtype=np.int64))).numpy()
    np.testing.assert_allclose(got, encoder.encode(items, view=0), atol=atol)
    assert tower.dim == encoder.dim
    return tower


def _only_last_block_learns(tower, inputs) -> None:
    from gentleclip.model import layer_stack

    set_trainable(tower, last_k=1)
    tower.train()
    last = set(id(p) for p in layer_stack(tower)[-1].parameters())
    frozen_modules = [m for m in tower.modules() if m is not tower and not any(p.requires_grad for p in m.parameters())]
    assert frozen_modules and not any(m.training for m in frozen_modules)  # frozen blocks: eval mode
    tower(inputs).sum().backward()
    for p in tower.parameters():
        assert (p.grad is not None) == (id(p) in last and p.requires_grad)


def test_text_tower() -> None:
    from domains.text import TextEncoder

    texts = ["a forest near a river", "dense residential buildings", "an airport"]
    tower = _check_tower(TextEncoder(device="cpu"), texts)
    _only_last_block_learns(tower, tower.collate(texts, np.ones(3, dtype=np.int64)))


def test_fair_esm_tower_and_its_length_sorted_micro_batches() -> None:
    esm = pytest.importorskip("esm")
    from domains.protein import ESMEncoder

    torch.manual_seed(0)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    model = esm.model.esm2.ESM2(num_layers=2, embed_dim=32, attention_heads=4, alphabet=alphabet)
    enc = ESMEncoder(model, alphabet, device="cpu", tokens_per_batch=64, max_residues=40, window_overlap=8)
    tower = _check_tower(enc, SEQS[:2])  # within max_residues: one window, as encode
    inputs = tower.collate(SEQS, np.array([0, 3, 5]))
    assert int(inputs["lengths"].max()) <= 40  # the long one cropped to a window
    _only_last_block_learns(tower, inputs)


def test_transformers_esm_tower(tiny_hf_esm) -> None:
    from domains.protein import HFESMEncoder

    _check_tower(HFESMEncoder(tiny_hf_esm, device="cpu"), SEQS)


def test_image_tower(tmp_path) -> None:
    from PIL import Image

    from domains.remote_sensing.encoders import ImageEncoder

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    enc = ImageEncoder(weights="random", image_size=64, show_progress=False)
    tower = _check_tower(enc, paths)
    jitter = enc.tower(color_jitter=0.3)
    views = np.array([4, 4, 9])
    assert torch.equal(jitter.collate(paths, views), jitter.collate(paths, views))  # seeded by the view
    assert not torch.equal(jitter.collate(paths, views), tower.collate(paths, views))
    _only_last_block_learns(tower, tower.collate(paths, np.array([1, 2, 3])))


def test_kmer_tower_has_no_weights() -> None:
    from domains.protein.kmer import KmerEncoder

    tower = _check_tower(KmerEncoder(k=2), SEQS)
    assert not list(tower.parameters())
