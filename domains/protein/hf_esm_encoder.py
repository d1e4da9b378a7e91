"""ESM-2 through Hugging Face transformers (``EsmModel``), for checkpoints such as ``facebook/esm2_t6_8M_UR50D``.

fair-esm is no longer developed; the same ESM-2 weights are published for transformers. This
encoder loads them as transformers does (``EsmModel.from_pretrained`` and ``AutoTokenizer`` on a
hub name or a local folder; offline unless ``allow_download=True``) and embeds exactly as
:class:`~domains.protein.esm_encoder.ESMEncoder` does: the same residue windows, length-sorted
batches under a token budget, pooling (mean over residues or the CLS token) and views. Layer ``k``
is ``hidden_states[k]`` (0 = the embeddings, the last has the final layer norm, as fair-esm's
``repr_layers``). A missing checkpoint raises :class:`~domains.protein.esm_encoder.ESMWeightsUnavailableError`
naming where to put it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .esm_encoder import ESMEncoder, ESMWeightsUnavailableError

__all__ = ["HFESMEncoder", "TokenizerAlphabet"]


class TokenizerAlphabet:
    """The fields of fair-esm's ``Alphabet`` that :class:`ESMEncoder` reads, from a transformers ESM tokenizer."""

    prepend_bos = True
    append_eos = True

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.cls_idx, self.eos_idx = tokenizer.cls_token_id, tokenizer.eos_token_id
        self.padding_idx, self.mask_idx, self.unk_idx = (tokenizer.pad_token_id, tokenizer.mask_token_id,
                                                         tokenizer.unk_token_id)
        if None in (self.cls_idx, self.eos_idx, self.padding_idx, self.mask_idx, self.unk_idx):
            raise ValueError(f"HFESMEncoder: the tokenizer {type(tokenizer).__name__} lacks one of the cls, eos, pad, "
                             "mask and unk tokens of an ESM vocabulary")

    def get_idx(self, token: str) -> int:
        """The id of ``token`` (the unknown token's id when it is not in the vocabulary)."""
        idx = self.tokenizer.convert_tokens_to_ids(token)
        return self.unk_idx if idx is None else int(idx)


class HFESMEncoder(ESMEncoder):
    """Frozen ESM-2 embeddings from a transformers ``EsmModel``.

    Args:
        model: a Hugging Face name (``"facebook/esm2_t6_8M_UR50D"``), a local folder written by
            ``save_pretrained`` (config, weights and tokenizer files), or a built ``EsmModel``
            (then pass ``tokenizer``).
        tokenizer: the tokenizer of a built model (default: loaded from the name / folder).
        allow_download: let transformers download a name that is not in the local Hugging Face cache.
        Others: as :class:`~domains.protein.esm_encoder.ESMEncoder`.
    """

    _IDENTITY_TAG = "esm-hf"

    def __init__(self, model: Any = "facebook/esm2_t6_8M_UR50D", tokenizer: Any = None, *,
                 allow_download: bool = False, **kwargs: Any) -> None:
        self._tokenizer = tokenizer
        super().__init__(model, alphabet=None, allow_download=allow_download, **kwargs)

    @staticmethod
    def _model_shape(model: torch.nn.Module) -> tuple[int | None, int, Any]:
        cfg = model.config
        return int(cfg.num_hidden_layers), int(cfg.hidden_size), int(cfg.num_attention_heads)

    def _load_model(self, model: Any, alphabet: Any, allow_download: bool, weights_only: bool
                    ) -> tuple[torch.nn.Module, Any, str, str]:
        from transformers import AutoTokenizer, EsmModel

        if isinstance(model, torch.nn.Module):
            if self._tokenizer is None:
                raise ValueError("HFESMEncoder: a built model needs its tokenizer (HFESMEncoder(model, tokenizer))")
            cfg = model.config
            name = f"esm-hf_L{cfg.num_hidden_layers}_D{cfg.hidden_size}"
            return model, TokenizerAlphabet(self._tokenizer), f"{type(model).__name__} object", name
        spec = os.fspath(model)
        local = Path(spec).expanduser()
        source = str(local) if local.is_dir() else spec
        try:
            net = EsmModel.from_pretrained(source, add_pooling_layer=False, local_files_only=not allow_download)
            tokenizer = self._tokenizer or AutoTokenizer.from_pretrained(source, local_files_only=not allow_download)
        except OSError as exc:
            raise ESMWeightsUnavailableError(
                f"HFESMEncoder: cannot load {spec!r} ({str(exc).splitlines()[0]}). Put the checkpoint folder "
                f"(config.json, model weights, vocab.txt) at a local path and pass it, let transformers fetch it "
                f"with allow_download=True where there is internet, or use the offline KmerEncoder ('kmer3-h1024')"
            ) from None
        return net, TokenizerAlphabet(tokenizer), source, local.name if local.is_dir() else spec.split("/")[-1]

    def _representations(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=tokens, attention_mask=tokens != self.alphabet.padding_idx,
                         output_hidden_states=True)
        return out.hidden_states[self.layer]
