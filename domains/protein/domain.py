"""The protein domain as the engine sees it: tasks ``scl2205`` and ``uniprot``, registered under ``protein``."""
from __future__ import annotations

from typing import Any

from gentleclip.domain import ConfigError, Domain, check_options

__all__ = ["ProteinDomain", "PROTEIN"]


class ProteinDomain(Domain):
    """Protein sequence (side A) <-> text (side B): the embedded SCL2205 task or the user's UniProt files."""

    name = "protein"
    tasks = ("scl2205", "uniprot")
    modality_names = ("protein", "text")
    default = True  # the offline quick start: gentleclip train with no --domain
    help = {
        "task": "scl2205 (default; offline, no data needed) or uniprot (needs data_dir)",
        "data_dir": "UniProt flat files or a FASTA + description table",
        "encoder": "kmer (default, no weights), kmer3-h1024, an ESM-2 name such as esm2_t6_8M_UR50D, or a local ESM "
                   ".pt",
    }
    user_errors = (
        "domains.text:TextModelUnavailableError",
        "domains.protein._problems:MissingDescriptionError",
        "domains.protein.mmseqs:MMseqsError",
        "domains.protein.esm_encoder:ESMWeightsUnavailableError",
    )
    #: ``domain_options`` that build the encoder rather than the adapter.
    encoder_options = ("esm_kwargs", "layer_a", "layer_b")

    def default_task(self, cfg: Any) -> str:
        """``uniprot`` when the run names a data folder, else the embedded ``scl2205``."""
        return "uniprot" if cfg.data_dir else "scl2205"

    def check(self, cfg: Any) -> None:
        """Task ``uniprot`` needs ``data_dir``."""
        if cfg.resolved_task == "uniprot" and not cfg.data_dir:
            raise ConfigError("data_dir: task 'uniprot' needs data_dir (UniProt flat files, or a FASTA + table)")

    def build_encoders(self, cfg: Any, device: str | None) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
        """The protein encoder of ``cfg.encoder`` (k-mers or ESM-2) and the text encoder."""
        from gentleclip.pipeline import build_encoder, encoder_recipe

        opts = cfg.domain_options
        esm_kwargs = dict(opts.get("esm_kwargs") or {})
        if opts.get("layer_a") is not None:  # an ESM-2 layer (layer selection)
            if str(cfg.encoder or "kmer").startswith("kmer"):
                raise ConfigError(f"domain_options.layer_a: the k-mer encoder {cfg.encoder or 'kmer'!r} has no "
                                  "layers; use an ESM-2 encoder")
            esm_kwargs["layer"] = int(opts["layer_a"])
        text_kwargs = {"model": cfg.text_encoder}
        if opts.get("layer_b") is not None:  # a hidden state of the text encoder
            text_kwargs["layer"] = int(opts["layer_b"])
        enc_a = build_encoder({"factory": "domains.protein.adapter:make_protein_encoder",
                               "kwargs": {"spec": cfg.encoder or "kmer", **esm_kwargs}}, device=device)
        enc_b = build_encoder({"factory": "domains.text:TextEncoder", "kwargs": text_kwargs}, device=device)
        return enc_a, enc_b, encoder_recipe(enc_a), encoder_recipe(enc_b)

    def build_adapter(self, cfg: Any, encoder_a: Any, encoder_b: Any) -> Any:
        """A :class:`~domains.protein.adapter.ProteinAdapter` over the encoders (``domain_options`` passed on)."""
        from domains.protein.adapter import ProteinAdapter

        opts = {k: v for k, v in cfg.domain_options.items() if k not in self.encoder_options}
        check_options(ProteinAdapter.__init__, opts, "ProteinAdapter", "domain_options")
        return ProteinAdapter(encoder=encoder_a, text_encoder=encoder_b, cache_dir=cfg.cache_dir,
                              data_dir=cfg.data_dir, n_views=cfg.n_views, max_train=cfg.max_train,
                              max_test=cfg.max_test, **opts)

    def build_task(self, cfg: Any, adapter: Any) -> Any:
        """The SCL2205 or UniProt task (``task_options`` passed on)."""
        method = adapter.scl2205_task if cfg.resolved_task == "scl2205" else adapter.uniprot_task
        opts = dict(cfg.task_options)
        check_options(method, opts, f"ProteinAdapter.{method.__name__}", "task_options")
        return method(**opts)

    def encoders_of(self, adapter: Any) -> tuple[Any, Any]:
        """The adapter's protein and text encoders."""
        return adapter.protein_encoder, adapter.text_encoder


PROTEIN = ProteinDomain()
