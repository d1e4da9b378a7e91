"""Protein encoders: KmerEncoder and ESMEncoder (tiny randomly initialised fair-esm ESM-2 models)."""
from __future__ import annotations

import argparse
import urllib.error

import numpy as np
import pytest
import torch

esm = pytest.importorskip("esm")

from domains.protein import (  # noqa: E402
    ESMEncoder,
    ESMWeightsUnavailableError,
    InvalidSequenceError,
    KmerEncoder,
    load_esm_checkpoint,
    save_esm2_checkpoint,
    sequence_windows,
    view_plan,
)
from gentleclip.cache import FeatureCache, FeatureEncoder  # noqa: E402

AA = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


def random_seqs(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(AA, size=n)) for n in lengths]


@pytest.fixture(scope="module")
def tiny_esm():
    torch.manual_seed(0)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    model = esm.model.esm2.ESM2(num_layers=2, embed_dim=32, attention_heads=4, alphabet=alphabet)
    return model.eval(), alphabet


# ---------------------------------------------------------------------------- views
def test_view_plan_is_deterministic_and_per_sequence():
    s = random_seqs([200])[0]
    assert view_plan(s, 0).masked.size == 0
    a, b = view_plan(s, 1), view_plan(s, 1)
    assert np.array_equal(a.masked, b.masked) and len(a.masked) == 30
    assert not np.array_equal(view_plan(s, 2).masked, a.masked)
    c = view_plan(s, 1, mode="crop", crop_fraction=0.5)
    assert c.stop - c.start == 100 and c.masked.size == 0
    with pytest.raises(ValueError, match="augment"):
        KmerEncoder(augment="shuffle")


# ---------------------------------------------------------------------------- k-mers
def test_kmer_counts_normalisation_and_protocol():
    enc = KmerEncoder(k=2, normalization="frequency")
    assert isinstance(enc, FeatureEncoder) and enc.dim == 420
    (x,) = enc.encode(["AACA"])
    a, c = 0, 1  # indices of A, C in the standard order
    np.testing.assert_allclose(x[a], 3 / 4)  # frequency blocks are not rescaled
    np.testing.assert_allclose(x[c], 1 / 4)
    np.testing.assert_allclose(x[20 + a * 20 + a], 1 / 3)  # "AA" once among 3 dimers
    np.testing.assert_allclose(x[20 + a * 20 + c], 1 / 3)
    np.testing.assert_allclose(x[20 + c * 20 + a], 1 / 3)
    hel = KmerEncoder(k=3)
    assert hel.dim == 20 + 400 + 8000
    feats = hel.encode(random_seqs([50, 300, 7]) + ["MXXK"])
    np.testing.assert_allclose(np.linalg.norm(feats[:3], axis=1), 1.0, rtol=1e-5)  # unit norm (per-k Hellinger)
    # X is not a standard residue: "MXXK" only has monomers M, K and no dimer/trimer -> 2 zero blocks
    assert np.count_nonzero(feats[3, 20:]) == 0
    np.testing.assert_allclose(np.linalg.norm(feats[3]), 1 / np.sqrt(3), rtol=1e-5)
    hashed = KmerEncoder(k=3, hash_dim=256)
    assert hashed.dim == 20 + 256 + 256 and hashed.name == "kmer3-h256"
    np.testing.assert_allclose(np.linalg.norm(hashed.encode(random_seqs([80])), axis=1), 1.0, rtol=1e-5)
    assert hashed.identity != hel.identity


def test_kmer_batching_order_views_and_errors():
    enc = KmerEncoder(k=2, batch_size=3)
    seqs = random_seqs([30, 500, 12, 80, 1, 64, 200])
    full = enc.encode(seqs)
    single = np.stack([enc.encode([s])[0] for s in seqs])
    np.testing.assert_allclose(full, single, atol=1e-6)  # no k-mer spans two sequences of a batch
    v1 = enc.encode(seqs, view=1)
    np.testing.assert_array_equal(v1, enc.encode(seqs, view=1))
    assert not np.allclose(v1, full) and not np.allclose(v1, enc.encode(seqs, view=2))
    np.testing.assert_array_equal(enc.encode(seqs[::-1], view=1)[::-1], v1)  # view depends on the sequence only
    with pytest.raises(InvalidSequenceError, match=r"item 1.*'J' at position 3"):
        enc.encode(["MKT", "MKJ"])
    with pytest.raises(InvalidSequenceError, match="item 0.*empty"):
        enc.encode([""])


def test_kmer_through_feature_cache(tmp_path):
    enc = KmerEncoder(k=2)
    seqs = random_seqs([40, 60, 80, 100, 120])
    cache = FeatureCache(tmp_path)
    feats = cache.get(enc, seqs, n_views=2, chunk_size=2)
    assert feats.shape == (5, 2, 420)
    np.testing.assert_allclose(feats[:, 0], enc.encode(seqs))
    np.testing.assert_allclose(feats[:, 1], enc.encode(seqs, view=1))
    again = cache.get(KmerEncoder(k=2), seqs, n_views=2)
    np.testing.assert_array_equal(again, feats)
    assert len(cache.entries()) == 1


# ---------------------------------------------------------------------------- ESM
def test_sequence_windows():
    assert sequence_windows(1022) == [(0, 1022)]
    w = sequence_windows(2500, 1022, 256)
    assert w == [(0, 1022), (766, 1788), (1532, 2500)]
    assert all(b - a <= 1022 for a, b in w) and w[-1][1] == 2500
    assert sequence_windows(1030, 1022, 256) == [(0, 1022), (766, 1030)]


def test_esm_long_sequence_is_length_weighted_mean_of_windows(tiny_esm):
    model, alphabet = tiny_esm
    enc = ESMEncoder(model, alphabet)
    (long_seq,) = random_seqs([2500], seed=1)
    (emb,) = enc.encode([long_seq])
    windows = sequence_windows(2500, 1022, 256)
    parts = enc.encode([long_seq[a:b] for a, b in windows])
    lengths = np.array([b - a for a, b in windows], dtype=np.float64)
    expected = (parts * lengths[:, None]).sum(0) / lengths.sum()
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    assert not np.allclose(emb, parts.mean(0), atol=1e-7) or np.allclose(lengths, lengths[0])


def test_esm_order_restored_under_length_sorted_batching(tiny_esm):
    model, alphabet = tiny_esm
    seqs = random_seqs([30, 150, 8, 90, 150, 5, 60, 120], seed=2)
    small_batches = ESMEncoder(model, alphabet, tokens_per_batch=200, max_residues=150, window_overlap=20)
    out = small_batches.encode(seqs)
    one_by_one = np.stack([small_batches.encode([s])[0] for s in seqs])
    np.testing.assert_allclose(out, one_by_one, atol=1e-5)
    assert len(small_batches._batches([len(s) for s in seqs])) > 2  # really several batches
    # cross-check the pooling against fair-esm directly
    batch_converter = alphabet.get_batch_converter()
    _, _, toks = batch_converter([("s", seqs[1])])
    with torch.inference_mode():
        rep = model(toks, repr_layers=[2])["representations"][2][0, 1:151].mean(0).numpy()
    np.testing.assert_allclose(out[1], rep, atol=1e-5)


def test_esm_layer_pooling_views_and_identity(tiny_esm):
    model, alphabet = tiny_esm
    seqs = random_seqs([40, 70], seed=3)
    last = ESMEncoder(model, alphabet)
    first = ESMEncoder(model, alphabet, layer=1)
    cls = ESMEncoder(model, alphabet, pooling="cls")
    assert last.layer == 2 and last.dim == 32
    assert len({last.identity, first.identity, cls.identity}) == 3
    assert not np.allclose(last.encode(seqs), first.encode(seqs))
    assert not np.allclose(last.encode(seqs), cls.encode(seqs))
    v1 = last.encode(seqs, view=1)
    np.testing.assert_array_equal(v1, last.encode(seqs, view=1))
    assert not np.allclose(v1, last.encode(seqs))
    crop = ESMEncoder(model, alphabet, augment="crop")
    assert crop.identity != last.identity and not np.allclose(crop.encode(seqs, view=1), v1)
    with pytest.raises(ValueError, match="layer 5 out of range"):
        ESMEncoder(model, alphabet, layer=5)


def test_esm_invalid_and_empty_sequences(tiny_esm):
    enc = ESMEncoder(*tiny_esm)
    with pytest.raises(InvalidSequenceError, match=r"item 1.*'\*' at position 2"):
        enc.encode(["MKT", "M*K"])
    with pytest.raises(InvalidSequenceError, match="item 0.*empty"):
        enc.encode([""])


def test_esm_checkpoint_round_trip_through_fair_esm(tiny_esm, tmp_path):
    model, alphabet = tiny_esm
    path = save_esm2_checkpoint(model, tmp_path / "esm2_tiny.pt")
    assert (tmp_path / "esm2_tiny-contact-regression.pt").is_file()
    seqs = random_seqs([25, 300], seed=4)
    ref = ESMEncoder(model, alphabet).encode(seqs)
    # fair-esm's own local loader reads the file (safe_globals needed with recent torch)
    with torch.serialization.safe_globals([argparse.Namespace]):
        m2, a2 = esm.pretrained.load_model_and_alphabet_local(str(path))
    np.testing.assert_allclose(ESMEncoder(m2, a2).encode(seqs), ref, atol=1e-6)
    from_path = ESMEncoder(str(path))
    np.testing.assert_allclose(from_path.encode(seqs), ref, atol=1e-6)
    assert from_path.name == "esm2_tiny"
    assert from_path.identity == ESMEncoder(model, alphabet).identity  # same weights, same settings
    # without the regression file our loader still works (contacts are not used)
    (tmp_path / "esm2_tiny-contact-regression.pt").unlink()
    m3, _ = load_esm_checkpoint(path)
    np.testing.assert_allclose(ESMEncoder(m3, alphabet).encode(seqs), ref, atol=1e-6)
    torch.save({"weights": 1}, tmp_path / "esm2_bad.pt")
    with pytest.raises(ValueError, match=r"esm2_bad\.pt: expected a dict with 'model' and 'cfg'"):
        ESMEncoder(str(tmp_path / "esm2_bad.pt"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ESMEncoder(str(tmp_path / "missing.pt"))


def test_esm_offline_error_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(ESMWeightsUnavailableError) as err:
        ESMEncoder("esm2_t6_8M_UR50D")
    msg = str(err.value)
    assert "esm2_t6_8M_UR50D" in msg and "download failed" in msg
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints" / "esm2_t6_8M_UR50D.pt") in msg
    assert "KmerEncoder" in msg and "https://dl.fbaipublicfiles.com/fair-esm/models/esm2_t6_8M_UR50D.pt" in msg
    with pytest.raises(ESMWeightsUnavailableError, match="allow_download=False"):
        ESMEncoder("esm2_t12_35M_UR50D", allow_download=False)
    with pytest.raises(ValueError, match="neither an existing checkpoint file nor a known ESM hub name"):
        ESMEncoder("esm3_big")


def test_esm_hub_name_served_from_torch_hub_cache(tiny_esm, tmp_path, monkeypatch):
    """A hub checkpoint already in $TORCH_HOME/hub/checkpoints is used without any download."""
    model, alphabet = tiny_esm
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    save_esm2_checkpoint(model, tmp_path / "hub" / "checkpoints" / "esm2_t6_8M_UR50D.pt", with_regression=False)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("tried to download"))
    enc = ESMEncoder("esm2_t6_8M_UR50D")
    assert enc.name == "esm2_t6_8M_UR50D" and enc.dim == 32
    seqs = random_seqs([33], seed=5)
    np.testing.assert_allclose(enc.encode(seqs), ESMEncoder(model, alphabet).encode(seqs), atol=1e-6)


def test_esm_through_feature_cache(tiny_esm, tmp_path):
    enc = ESMEncoder(*tiny_esm)
    seqs = random_seqs([20, 40, 60], seed=6)
    feats = FeatureCache(tmp_path).get(enc, seqs, n_views=2, chunk_size=2)
    assert feats.shape == (3, 2, 32)
    np.testing.assert_allclose(feats[:, 1], enc.encode(seqs, view=1), atol=1e-6)
