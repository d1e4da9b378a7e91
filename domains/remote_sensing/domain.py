"""The remote-sensing domain as the engine sees it: task ``rsicd``, registered under ``remote_sensing``."""
from __future__ import annotations

import inspect
from typing import Any

from gentleclip.domain import ConfigError, Domain, check_options

__all__ = ["RemoteSensingDomain", "REMOTE_SENSING"]


class RemoteSensingDomain(Domain):
    """Satellite image (side A) <-> caption (side B): RSICD retrieval, scored also on UC Merced scenes."""

    name = "remote_sensing"
    tasks = ("rsicd",)
    modality_names = ("image", "text")
    help = {
        "task": "rsicd",
        "data_dir": "the folder holding rsicd/ (and ucm/, sydney/, rsitmd/)",
        "encoder": "efficientnet_lite0 (default, offline), a timm name (set domain_options.image_weights) or a "
                   "torchgeo weight enum name",
    }
    user_errors = (
        "domains.text:TextModelUnavailableError",
        "domains.remote_sensing.encoders:OfflineWeightsError",
        "domains.remote_sensing.images:ImageNotFoundError",
        "domains.remote_sensing.images:ImageReadError",
    )
    #: ``domain_options`` that build the image encoder rather than the adapter.
    encoder_options = ("image_weights", "image_batch_size", "image_threads", "device", "layer_a", "layer_b")

    def check(self, cfg: Any) -> None:
        """The domain needs ``data_dir`` (the folder holding ``rsicd/``)."""
        if not cfg.data_dir:
            raise ConfigError("data_dir: the remote_sensing domain needs data_dir (the folder holding rsicd/); "
                             "see domains/remote_sensing/README.md for the layout and where to get the data")

    def build_encoders(self, cfg: Any, device: str | None) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
        """The image encoder of ``cfg.encoder`` and the text encoder."""
        from gentleclip.pipeline import build_encoder, encoder_recipe

        opts = cfg.domain_options
        weights = opts.get("image_weights")
        image_kwargs = {"model": cfg.encoder or "efficientnet_lite0", "weights": weights,
                        "batch_size": opts.get("image_batch_size"), "num_threads": opts.get("image_threads")}
        if opts.get("layer_a") is not None:  # a backbone stage (layer selection)
            image_kwargs["stage"] = int(opts["layer_a"])
        text_kwargs = {"model": cfg.text_encoder}
        if opts.get("layer_b") is not None:  # a hidden state of the text encoder
            text_kwargs["layer"] = int(opts["layer_b"])
        enc_a = build_encoder({"factory": "domains.remote_sensing.encoders:ImageEncoder", "kwargs": image_kwargs},
                              device=device)
        enc_b = build_encoder({"factory": "domains.text:TextEncoder", "kwargs": text_kwargs}, device=device)
        overrides = {"weights": weights} if weights is not None else {}
        return enc_a, enc_b, encoder_recipe(enc_a, **overrides), encoder_recipe(enc_b)

    def build_adapter(self, cfg: Any, encoder_a: Any, encoder_b: Any) -> Any:
        """A :class:`~domains.remote_sensing.adapter.RemoteSensingAdapter` (``domain_options`` passed on)."""
        from domains.remote_sensing.adapter import RemoteSensingAdapter

        opts = {k: v for k, v in cfg.domain_options.items() if k not in self.encoder_options}
        check_options(RemoteSensingAdapter.__init__, opts, "RemoteSensingAdapter", "domain_options")
        return RemoteSensingAdapter(cfg.data_dir, image_encoder=encoder_a, text_encoder=encoder_b,
                                    cache_dir=cfg.cache_dir, n_views=cfg.n_views, **opts)

    def build_task(self, cfg: Any, adapter: Any) -> Any:
        """The RSICD task (``task_options`` passed on; ``max_test`` where the task takes it)."""
        opts = dict(cfg.task_options)
        check_options(adapter.build_task, opts, "RemoteSensingAdapter.build_task", "task_options")
        if cfg.max_test is not None:
            if "max_test" not in inspect.signature(adapter.build_task).parameters:
                raise ConfigError("max_test: the remote_sensing task scores the whole RSICD test split; remove "
                                  "max_test")
            opts.setdefault("max_test", cfg.max_test)
        return adapter.build_task(max_train=cfg.max_train, **opts)

    def encoders_of(self, adapter: Any) -> tuple[Any, Any]:
        """The adapter's image and text encoders."""
        return adapter.image_encoder, adapter.text_encoder


REMOTE_SENSING = RemoteSensingDomain()
