"""Shared test fixtures.

Real-data tests use the datasets in ``../shared/data`` beside the checkout (or the folder named by
``GENTLECLIP_SHARED_DATA``) and are skipped cleanly when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GENTLECLIP_QUIET", "1")  # no progress bars in tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("GENTLECLIP_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; skips the test when the folder is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set GENTLECLIP_SHARED_DATA)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    """One intra-op thread: the tests use small matrices, for which one thread is several times faster
    than two on a 2-core machine (no spin-waiting), and it keeps timings stable when cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ESM-2's vocabulary, in its order
ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N",
         "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>"]


@pytest.fixture(scope="session")
def tiny_hf_esm(tmp_path_factory):
    """A small randomly initialised transformers ESM-2 saved as a local folder (config, weights, vocab)."""
    import torch
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    folder = tmp_path_factory.mktemp("esm2-tiny")
    (folder / "vocab.txt").write_text("\n".join(ESM_VOCAB) + "\n")
    tokenizer = EsmTokenizer(str(folder / "vocab.txt"))
    config = EsmConfig(vocab_size=len(ESM_VOCAB), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=128, position_embedding_type="rotary",
                       pad_token_id=1, mask_token_id=32, token_dropout=True, emb_layer_norm_before=False)
    torch.manual_seed(0)
    EsmModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
