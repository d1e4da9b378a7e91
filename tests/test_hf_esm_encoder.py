"""ESM-2 through transformers (HFESMEncoder), tested with a small randomly initialised EsmModel."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from domains.protein.adapter import make_protein_encoder
from domains.protein.esm_encoder import ESMWeightsUnavailableError
from domains.protein.hf_esm_encoder import HFESMEncoder

SEQS = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "MSDNELKQLL", "ACDEFGHIKLMNPQRSTVWY" * 3]


def _reference(folder, seqs, layer: int) -> np.ndarray:
    """Mean over the residues of hidden_states[layer], one sequence at a time (no padding, no batching)."""
    from transformers import AutoTokenizer, EsmModel

    model, tok = EsmModel.from_pretrained(folder, add_pooling_layer=False).eval(), AutoTokenizer.from_pretrained(folder)
    out = []
    with torch.no_grad():
        for s in seqs:
            ids = tok(s, return_tensors="pt")
            hidden = model(**ids, output_hidden_states=True).hidden_states[layer][0]
            out.append(hidden[1:-1].mean(0).numpy())  # without <cls> and <eos>
    return np.stack(out)


@pytest.mark.parametrize("layer", [-1, 1])
def test_embeddings_equal_a_plain_transformers_forward(tiny_hf_esm, layer) -> None:
    enc = HFESMEncoder(tiny_hf_esm, layer=layer, device="cpu", tokens_per_batch=80, max_residues=70,
                       window_overlap=16)
    assert enc.dim == 32 and enc.layer == (3 if layer == -1 else 1)
    got = enc.encode(SEQS)  # length-sorted, padded batches: the order and padding must not matter
    np.testing.assert_allclose(got, _reference(tiny_hf_esm, SEQS, enc.layer), atol=1e-5)
    assert enc.identity.startswith("esm-hf|EsmModel(L=3,D=32,H=4)|weights=") and f"layer={enc.layer}" in enc.identity
    assert enc.recipe()["model"] == str(tiny_hf_esm)


def test_views_mask_residues_and_the_factory_picks_transformers(tiny_hf_esm) -> None:
    enc = make_protein_encoder(str(tiny_hf_esm), device="cpu")
    assert isinstance(enc, HFESMEncoder)
    view0, view1 = enc.encode(SEQS[:1], view=0), enc.encode(SEQS[:1], view=1)
    assert not np.allclose(view0, view1) and np.array_equal(view1, enc.encode(SEQS[:1], view=1))
    with pytest.raises(ValueError, match="residue 'J'"):
        enc.encode(["MKJ"])


def test_a_missing_checkpoint_says_how_to_get_it(tmp_path) -> None:
    with pytest.raises(ESMWeightsUnavailableError, match="allow_download=True"):
        HFESMEncoder("facebook/esm2_t6_8M_UR50D", device="cpu")
    with pytest.raises(ESMWeightsUnavailableError, match="KmerEncoder"):
        make_protein_encoder("nobody/no-such-esm", device="cpu")
