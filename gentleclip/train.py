"""The training loop: :class:`TrainConfig` and :class:`Trainer`.

``Trainer(model, objective, data, config, out_dir).fit(resume=...)`` trains an
:class:`~gentleclip.model.AlignmentModel` against an objective (normally
:class:`gentleclip.losses.Objective`) on the semi-paired batches of a
:class:`~gentleclip.data.SemiPairedData`:

* AdamW with parameter groups: heads (+ objective parameters such as a learnable temperature) at
  ``lr``, fine-tuned encoders at ``encoder_lr``; no weight decay on biases, norms and scalars;
* linear warm-up then cosine decay (or a constant rate), gradient clipping, optional autocast
  (bf16 on CPU, fp16 + GradScaler on CUDA);
* per-term loss logging to ``out_dir/log.csv`` (and TensorBoard when it is installed), a progress bar;
* atomic checkpoints (``checkpoint.pt``: model, objective, optimiser, scheduler, scaler, step, RNG
  states of every rank, loader position) every ``checkpoint_every`` steps and at the end;
  ``fit(resume=True)`` continues a killed run to the same final weights as an uninterrupted run;
* a NaN/inf loss (or gradient) stops the run with :class:`NonFiniteLossError` naming the term,
  after writing the last good state to ``last_good.pt``;
* under ``torchrun`` (``WORLD_SIZE > 1``) or an initialised process group: the model is wrapped in
  DDP, each rank takes its shard of the global batch (the objective gathers features across
  ranks), and only rank 0 writes files.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from gentleclip.data import Batch, SemiPairedData, SemiPairedLoader
from gentleclip.io import atomic_path, atomic_write_json, remove_stale_temporaries
from gentleclip.progress import progress

__all__ = ["TrainConfig", "Trainer", "TrainResult", "NonFiniteLossError", "CHECKPOINT_NAME", "LAST_GOOD_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
LAST_GOOD_NAME = "last_good.pt"
LOG_NAME = "log.csv"
CHECKPOINT_FORMAT = 1


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss term or the gradient becomes NaN/inf; names the term(s) and the step."""

    def __init__(self, message: str, step: int, terms: dict[str, float], last_good: Path | None) -> None:
        super().__init__(message)
        self.step = step
        self.terms = terms
        self.last_good = last_good


@dataclass
class TrainConfig:
    """Everything that determines a training run (written to ``out_dir/train_config.json``).

    ``max_steps`` (when set) takes precedence over ``epochs``; an epoch is one pass over the largest
    pool (see :class:`~gentleclip.data.SemiPairedLoader`). ``batch_size`` is the global batch (items
    over all ranks). ``encoder_lr=None`` means ``lr * encoder_lr_ratio`` (default 1/100, as the official Set-CLIP code)
    for fine-tuned encoders. ``n_views=None``
    loads a second view only when the objective has self-supervised terms. ``checkpoint_every=0``
    writes a checkpoint only at the end. ``device="auto"`` picks CUDA when available.
    ``deterministic`` switches on ``torch.use_deterministic_algorithms`` (warn-only) during ``fit``.
    ``num_workers > 0`` computes the batches in that many ``DataLoader`` worker processes (for raw
    items: image decoding, tokenising); the batches are the same as in-process.

    Pairs and unpaired rows per step: ``paired_per_batch`` (default ``batch_size``) pairs, plus
    ``unpaired_per_batch`` (default ``batch_size``) unpaired rows for objectives that read them (see
    :class:`~gentleclip.data.SemiPairedLoader`). Validation (when the trainer has a ``validator``):
    every ``eval_every`` steps (and before the first step) the validation score is computed, the
    best weights are kept, and the model ends with them; ``patience > 0`` stops the run after that
    many evaluations without improvement (early stopping).
    """

    lr: float = 1e-3
    weight_decay: float = 0.01
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 256
    paired_per_batch: int | None = None
    unpaired_per_batch: int | None = None
    n_views: int | None = None
    views: str = "random"
    warmup_steps: int = 0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    amp: bool = False
    seed: int = 0
    checkpoint_every: int = 0
    log_every: int = 10
    encoder_lr: float | None = None
    encoder_lr_ratio: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    device: str = "auto"
    deterministic: bool = True
    tensorboard: bool = True
    save_model: bool = True
    eval_every: int = 0
    patience: int = 0
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"TrainConfig: lr must be > 0, got {self.lr}")
        if self.max_steps is None and self.epochs < 1:
            raise ValueError(f"TrainConfig: need epochs >= 1 or max_steps, got epochs={self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"TrainConfig: max_steps must be >= 1, got {self.max_steps}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"TrainConfig: schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.batch_size < 1:
            raise ValueError(f"TrainConfig: batch_size must be >= 1, got {self.batch_size}")
        for name in ("warmup_steps", "checkpoint_every", "log_every", "eval_every", "patience", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig: {name} must be >= 0, got {getattr(self, name)}")
        if not self.encoder_lr_ratio > 0:
            raise ValueError(f"TrainConfig: encoder_lr_ratio must be > 0, got {self.encoder_lr_ratio}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"TrainConfig: grad_clip must be > 0 or None, got {self.grad_clip}")
        self.betas = tuple(self.betas)  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise a ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TrainConfig.from_dict: unknown keys {unknown}")
        return cls(**d)


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    steps: int
    epochs: float
    final_terms: dict[str, float]
    history: list[dict[str, float]]
    out_dir: Path
    checkpoint: Path | None
    model_dir: Path | None
    wall_time_s: float
    resumed_from: int | None = None
    stopped_early: bool = False
    best_step: int | None = None
    best_score: float | None = None
    validation: list[dict[str, float]] = field(default_factory=list)
    early_stopped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- helpers
def _setup_distributed(device: str) -> tuple[int, int, int]:
    """Return (rank, world_size, local_rank); initialise the process group under torchrun."""
    from gentleclip.distributed import init_from_env

    return init_from_env(device)


def _resolve_device(device: str, world: int, local_rank: int) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and world > 1:
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return torch.device(device)


def _rng_state() -> dict[str, Any]:
    """Torch, CUDA, numpy and python RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(py_state[0]), "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _lr_lambda(warmup: int, total: int, schedule: str, min_ratio: float) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        span = max(1, total - warmup)
        progress_ = min(1.0, (step - warmup) / span)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress_))

    return f


def _no_decay(name: str, p: torch.Tensor) -> bool:
    return p.ndim <= 1 or name.endswith(".bias")


# ---------------------------------------------------------------------------- trainer

def _terms_to_floats(terms_t: dict[str, Any], loss: torch.Tensor) -> dict[str, float]:
    """``{name: float(value)}`` plus ``"total"`` (``loss`` when absent), read with one device sync.

    The 0-dim tensors are stacked in float64 (exact for float32 / half values) and read with a single
    ``tolist()``; anything else (Python numbers, tensors on several devices) falls back to ``float()``.
    """
    items = dict(terms_t)
    items.setdefault("total", loss.detach())
    values = list(items.values())
    if values and all(isinstance(v, torch.Tensor) and v.numel() == 1 for v in values) \
            and len({v.device for v in values}) == 1:
        floats = torch.stack([v.detach().reshape(()).to(torch.float64) for v in values]).tolist()
        return dict(zip(items, floats))
    return {k: float(v) for k, v in items.items()}

class Trainer:
    """Train ``model`` against ``objective`` on ``data`` (see the module docstring).

    ``objective(za, zb, n_paired, za2=None, zb2=None)`` must return ``(total, terms)`` where
    ``terms`` maps term names (and ``"total"``) to 0-dim tensors. ``callbacks`` are called as
    ``cb(trainer, step, terms)`` after every optimiser step (``step`` = steps done so far).

    Keyword pseudo-labels (S-CLIP): when the objective has a keyword term
    (``objective.needs_keywords``), pass ``keyword_multi_hot`` (bool ``[rows of features_b, K]``:
    the keywords of the caption(s) of each B row; only the rows of paired items are read, so leave
    the others empty) and ``keyword_features`` (``[K, Db]``: the frozen B-encoder features of the K
    keyword strings). Each step the keyword features go through the B head in the same forward
    pass as the batch, and the objective receives ``paired_keywords`` (the multi-hot rows of the
    batch's paired B items) and ``z_keywords``. Without a keyword term both are ignored.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: nn.Module,
        data: SemiPairedData,
        config: TrainConfig | None = None,
        out_dir: str | Path = "runs/train",
        callbacks: Iterable[Callable[["Trainer", int, dict[str, float]], None]] = (),
        keyword_multi_hot: np.ndarray | None = None,
        keyword_features: np.ndarray | None = None,
        validator: Callable[[nn.Module], float] | None = None,
    ) -> None:
        self.config = config = config if config is not None else TrainConfig()
        self.validator = validator
        if validator is not None and not config.eval_every:
            raise ValueError("Trainer: a validator needs config.eval_every > 0 (steps between validations)")
        self.model = model
        self.objective = objective
        self.data = data
        self.out_dir = Path(out_dir)
        self.callbacks = list(callbacks)
        self.rank, self.world_size, self.local_rank = _setup_distributed(config.device)
        self.is_main = self.rank == 0
        self.device = _resolve_device(config.device, self.world_size, self.local_rank)
        self.model.to(self.device)
        self.objective.to(self.device)
        self.keyword_multi_hot: torch.Tensor | None = None
        self.keyword_features: torch.Tensor | None = None
        if getattr(objective, "needs_keywords", False):
            self.keyword_multi_hot, self.keyword_features = self._keyword_inputs(
                data, keyword_multi_hot, keyword_features)

        from gentleclip.data import RawRows

        for side, rows in (("A", data.rows_a), ("B", data.rows_b)):
            if isinstance(rows, RawRows) and getattr(objective, "needs_features", False):
                raise ValueError(f"Trainer: a term reads the frozen features of the rows (STRUCTURE), but the {side} "
                                 "rows are raw items for a fine-tuned encoder; train it on cached features")
        if isinstance(data.rows_b, RawRows) and getattr(objective, "needs_keywords", False):
            raise ValueError("Trainer: the S-CLIP keyword term embeds keyword strings with a frozen B encoder, but the "
                             "B rows are raw items for a fine-tuned encoder; use s-clip-caption or cached features")
        n_views = config.n_views
        if n_views is None:  # two views when a term reads the second views (self-supervision)
            n_views = 2 if getattr(objective, "needs_views", False) else 1
        self.loader = SemiPairedLoader(
            data, batch_size=config.batch_size, paired_per_batch=config.paired_per_batch, seed=config.seed,
            rank=self.rank, world_size=self.world_size, n_views=n_views, views=config.views,  # type: ignore[arg-type]
            unpaired_per_batch=config.unpaired_per_batch,
        )
        self.total_steps = config.max_steps if config.max_steps is not None else config.epochs * len(self.loader)

        self.ddp_model: nn.Module = self.model
        if self.world_size > 1 and any(p.requires_grad for p in self.model.parameters()):
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.ddp_model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.world_size > 1:
            for t in list(self.objective.parameters()) + list(self.objective.buffers()):
                dist.broadcast(t.data, src=0)

        self.optimizer = self._build_optimizer()
        warmup = config.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(warmup, self.total_steps, config.schedule, config.min_lr_ratio)
        )
        self.amp_dtype: torch.dtype | None = None
        if config.amp:
            self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=bool(config.amp and self.device.type == "cuda"))
        self.step = 0
        self.history: list[dict[str, float]] = []
        self._tb: Any = None
        self._reset_validation()

    def _reset_validation(self) -> None:
        self.finished = False
        self.val: dict[str, Any] = {"best_score": None, "best_step": None, "bad_evals": 0, "history": [],
                                    "best_model": None, "early_stopped": False}

    # ------------------------------------------------------------ construction
    def _keyword_inputs(
        self, data: SemiPairedData, multi_hot: np.ndarray | None, features: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Check the keyword inputs of a keyword term and move them to the device."""
        if multi_hot is None or features is None:
            raise ValueError("Trainer: the objective has a keyword term ('sclip_keyword'); pass keyword_multi_hot "
                             "[rows of features_b, K] and keyword_features [K, Db] (see gentleclip.keywords)")
        hot = np.asarray(multi_hot)
        feats = np.asarray(features, dtype=np.float32)
        n_rows, dim_b = data.rows_b.n, data.dim_b
        if hot.ndim != 2 or hot.shape[0] != n_rows:
            raise ValueError(f"Trainer: keyword_multi_hot must be [rows of features_b = {n_rows}, K], got {hot.shape}")
        if hot.dtype != bool and not np.isin(hot, (0, 1)).all():
            raise ValueError("Trainer: keyword_multi_hot must be boolean (or 0/1)")
        if feats.ndim != 2 or feats.shape != (hot.shape[1], dim_b):
            raise ValueError(f"Trainer: keyword_features must be [K = {hot.shape[1]}, Db = {dim_b}] (the B-encoder "
                             f"features of the keyword strings), got {feats.shape}")
        if not np.isfinite(feats).all():
            raise ValueError("Trainer: keyword_features contain NaN or inf")
        return (torch.from_numpy(hot.astype(bool)).to(self.device),
                torch.from_numpy(np.array(feats, dtype=np.float32)).to(self.device))  # a writable copy

    def _trainable(self) -> list[nn.Parameter]:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        return params

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        head_named: list[tuple[str, nn.Parameter]]
        enc_named: list[tuple[str, nn.Parameter]]
        if hasattr(self.model, "head_parameters") and hasattr(self.model, "encoder_parameters"):
            head_named = list(self.model.head_parameters())
            enc_named = list(self.model.encoder_parameters())
        else:
            head_named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
            enc_named = []
        obj_named = [(f"objective.{n}", p) for n, p in self.objective.named_parameters() if p.requires_grad]
        enc_lr = cfg.encoder_lr if cfg.encoder_lr is not None else cfg.lr * cfg.encoder_lr_ratio
        groups: list[dict[str, Any]] = []
        for name, named, lr in (("heads", head_named + obj_named, cfg.lr), ("encoders", enc_named, enc_lr)):
            decay = [p for n, p in named if not _no_decay(n, p)]
            no_decay = [p for n, p in named if _no_decay(n, p)]
            if decay:
                groups.append({"params": decay, "lr": lr, "weight_decay": cfg.weight_decay, "name": f"{name}"})
            if no_decay:
                groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{name}_no_decay"})
        if not groups:
            raise ValueError("Trainer: the model and the objective have no trainable parameters")
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run (RNG states of this rank only)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "total_steps": self.total_steps,
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": [_rng_state()],
            "loader": {**self.loader.state_dict(), "position": self.step},
            "config": self.config.to_dict(),
            "world_size": self.world_size,
            "finished": self.finished,
            "validation": self.val,
        }

    def _gathered_state(self) -> dict[str, Any] | None:
        """:meth:`state_dict` with every rank's RNG state, on rank 0 (None elsewhere). Collective."""
        state = self.state_dict() if self.is_main else None
        if self.world_size > 1:
            rngs: list[Any] = [None] * self.world_size
            dist.all_gather_object(rngs, _rng_state())
            if state is not None:
                state["rng"] = rngs
        return state

    def save_checkpoint(self, path: Path | None = None) -> Path:
        """Write the training state atomically (rank 0 writes; a collective under DDP)."""
        path = Path(path) if path is not None else self.out_dir / CHECKPOINT_NAME
        state = self._gathered_state()
        if state is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_torch_save(state, path)
        if self.world_size > 1:
            dist.barrier()
        return path

    def load_checkpoint(self, path: Path) -> int:
        """Restore a state written by :meth:`save_checkpoint`; returns the step it was taken at."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: unknown checkpoint format {state.get('format')!r}")
        if state["total_steps"] != self.total_steps:
            raise ValueError(
                f"{path}: checkpoint was written for a {state['total_steps']}-step run, this run has "
                f"{self.total_steps} steps; resume with the same epochs/max_steps (the LR schedule depends on it)"
            )
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.loader.load_state_dict(state["loader"])
        rngs = state["rng"]
        _set_rng_state(rngs[self.rank] if len(rngs) == self.world_size else rngs[0])
        self.step = int(state["step"])
        self.finished = bool(state.get("finished", False))
        if "validation" in state:
            self.val = state["validation"]
        return self.step

    # ------------------------------------------------------------ validation
    def _validate(self) -> bool:
        """Score the current weights; keep them when best. Returns True when patience has run out."""
        assert self.validator is not None
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            score = float(self.validator(self.model))
        self.model.train(was_training)
        if not math.isfinite(score):
            raise ValueError(f"Trainer: the validation score at step {self.step} is {score}; the validator must "
                             f"return a finite number (higher is better)")
        v = self.val
        v["history"].append({"step": self.step, "score": score})
        if v["best_score"] is None or score > v["best_score"]:
            v["best_score"], v["best_step"], v["bad_evals"] = score, self.step, 0
            v["best_model"] = {k: t.detach().cpu().clone() for k, t in self.model.state_dict().items()}
        else:
            v["bad_evals"] += 1
        if self.is_main:
            atomic_write_json(self.out_dir / "validation.json",
                              {k: v[k] for k in ("best_score", "best_step", "history")})
        return bool(self.config.patience and v["bad_evals"] >= self.config.patience)

    # ------------------------------------------------------------ logging
    def _log_path(self) -> Path:
        return self.out_dir / LOG_NAME

    def _truncate_log(self, step: int) -> None:
        """Drop log rows written after ``step`` by a run that was killed before its next checkpoint."""
        path = self._log_path()
        if not path.is_file():
            return
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            rows = [r for r in reader if r.get("step") and int(float(r["step"])) <= step]
        with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        self.history = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in rows]

    def _write_log(self, row: dict[str, float]) -> None:
        self.history.append(row)
        if not self.is_main:
            return
        path = self._log_path()
        new = not path.is_file() or path.stat().st_size == 0
        header: list[str]
        if new:
            header = list(row)
        else:
            with path.open(newline="") as fh:
                header = next(csv.reader(fh), list(row))
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore", restval="")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch"):
                    self._tb.add_scalar(k if k.startswith(("lr", "grad")) else f"loss/{k}", v, int(row["step"]))

    def _open_tensorboard(self) -> None:
        if not (self.config.tensorboard and self.is_main):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed: optional
            return
        self._tb = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))

    # ------------------------------------------------------------ one step
    def _forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = batch.to(self.device, non_blocking=True)
        two = (batch.a2 is not None and batch.b2 is not None) or batch.stacked_views
        a = torch.cat([batch.a, batch.a2]) if two and not batch.stacked_views else batch.a
        b = torch.cat([batch.b, batch.b2]) if two and not batch.stacked_views else batch.b
        kw: dict[str, torch.Tensor] = {}
        n_b = len(batch.idx_b) * (2 if two else 1)
        if self.keyword_features is not None:  # embed the keyword strings with the B head in the same forward
            assert self.keyword_multi_hot is not None
            b = torch.cat([b, self.keyword_features.to(b.dtype)])
            idx = torch.as_tensor(np.asarray(batch.idx_b[: batch.n_paired]), dtype=torch.long, device=self.device)
            kw["paired_keywords"] = self.keyword_multi_hot[idx]
        amp = self.amp_dtype is not None
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=amp):
            za_all, zb_all = self.ddp_model(a, b)
        za_all, zb_all = za_all.float(), zb_all.float()
        if self.keyword_features is not None:
            zb_all, kw["z_keywords"] = zb_all[:n_b], zb_all[n_b:]
        if getattr(self.objective, "needs_features", False):  # the heads' inputs of the rows (STRUCTURE)
            kw["xa"], kw["xb"] = batch.a, batch.b
        if two:
            za, za2 = za_all[: len(batch.idx_a)], za_all[len(batch.idx_a):]
            zb, zb2 = zb_all[: len(batch.idx_b)], zb_all[len(batch.idx_b):]
            return self.objective(za, zb, batch.n_paired, za2, zb2, **kw)
        return self.objective(za_all, zb_all, batch.n_paired, **kw)

    def _batches(self, start: int) -> Iterable[Batch]:
        """The batches of steps ``start, start+1, ...``: in this process, or computed ahead by
        ``config.num_workers`` ``DataLoader`` workers (the same batches: each is a function of its step)."""
        if not self.config.num_workers:
            return (self.loader.batch_at(t) for t in range(start, self.total_steps))
        from torch.utils.data import DataLoader

        from gentleclip.data import StepBatches

        # its own generator: the workers' seeds must not consume the global RNG (dropout, views of the run)
        return iter(DataLoader(StepBatches(self.loader), batch_size=None, sampler=range(start, self.total_steps),
                               num_workers=self.config.num_workers, persistent_workers=False,
                               pin_memory=self.device.type == "cuda", prefetch_factor=2,
                               generator=torch.Generator().manual_seed(self.config.seed)))

    def _non_finite(self, step: int, terms: dict[str, float], what: str, batch: Batch | None = None) -> None:
        path = self.out_dir / LAST_GOOD_NAME
        self.save_checkpoint(path)
        shown = ", ".join(f"{k}={v:.6g}" for k, v in terms.items())
        rows = _non_finite_rows(batch) if batch is not None else ""
        raise NonFiniteLossError(
            f"training stopped at step {step}: {what} is not finite ({shown}){rows}; "
            f"the last good state (before this step) was saved to {path}",
            step, terms, path,
        )

    # ------------------------------------------------------------ loop
    def fit(self, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to ``total_steps``; returns a :class:`TrainResult`.

        ``resume=True`` continues from ``out_dir/checkpoint.pt`` when it exists (a finished run
        returns at once). ``stop_after=k`` stops after step ``k`` with a checkpoint, as a
        pre-empted job would; a later ``fit(resume=True)`` finishes the run.
        """
        cfg = self.config
        start_time = time.perf_counter()
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        resumed_from: int | None = None
        ckpt = self.out_dir / CHECKPOINT_NAME
        if self.is_main:  # temporaries of a write that a kill interrupted
            remove_stale_temporaries(self.out_dir)
        if resume and ckpt.is_file():
            resumed_from = self.load_checkpoint(ckpt)
            if self.is_main:
                self._truncate_log(resumed_from)
        else:
            self.step = 0
            self.history = []
            self._reset_validation()
            self.loader.position = 0
            torch.manual_seed(cfg.seed)
            np.random.seed(cfg.seed % 2**32)
            random.seed(cfg.seed)
            if self.is_main:
                log = self._log_path()
                if log.exists():
                    log.unlink()
        if self.is_main:
            (self.out_dir / "train_config.json").write_text(json.dumps(
                {"train": cfg.to_dict(), "objective": _objective_config(self.objective),
                 "world_size": self.world_size, "data": repr(self.data),
                 "composition": self.loader.state_dict()["composition"]}, indent=2, default=str))
        self._open_tensorboard()

        prev_det = torch.are_deterministic_algorithms_enabled()
        prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        if cfg.deterministic:
            if self.device.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        stopped_early = False
        params = self._trainable()
        clip = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        obj_params = [p for p in self.objective.parameters() if p.requires_grad]
        sums: dict[str, float] = {}
        n_sum = 0
        bar_kw: dict[str, Any] = {} if self.is_main else {"disable": True}  # quiet() still applies on rank 0
        bar = progress(total=self.total_steps, initial=self.step, desc="train", unit="step", **bar_kw)
        last_terms: dict[str, float] = {}
        try:
            self.model.train()
            self.objective.train()
            if self.validator is not None and not self.finished and not self.val["history"]:
                self._validate()  # step 0: the untrained heads are a candidate too (patience cannot run out yet)
            batches = self._batches(self.step)
            while self.step < self.total_steps and not self.finished:
                step = self.step
                batch = next(batches)
                if batch.step != step:  # pragma: no cover - a bug in the batch source
                    raise RuntimeError(f"Trainer: got the batch of step {batch.step} at step {step}")
                self.loader.position = step + 1
                loss, terms_t = self._forward(batch)
                terms = _terms_to_floats(terms_t, loss)
                if not math.isfinite(terms["total"]) or not all(math.isfinite(v) for v in terms.values()):
                    bad = {k: v for k, v in terms.items() if not math.isfinite(v)} or {"total": float(loss)}
                    names = ", ".join(k for k in bad if k != "total") or "total"
                    self._non_finite(step, terms, f"loss term(s) {names}", batch)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if self.world_size > 1:
                    for p in obj_params:
                        if p.grad is not None:
                            dist.all_reduce(p.grad)
                            p.grad /= self.world_size
                self.scaler.unscale_(self.optimizer)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
                if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
                    self._non_finite(step, {**terms, "grad_norm": grad_norm}, "the gradient norm", batch)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                lrs = [g["lr"] for g in self.optimizer.param_groups]
                self.scheduler.step()
                self.step = step + 1
                last_terms = terms

                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + grad_norm
                n_sum += 1
                if (cfg.log_every and self.step % cfg.log_every == 0) or self.step == self.total_steps:
                    row: dict[str, float] = {"step": self.step, "epoch": self.step / len(self.loader), "lr": lrs[0]}
                    enc = [g["lr"] for g in self.optimizer.param_groups if g.get("name", "").startswith("encoders")]
                    if enc:
                        row["lr_encoder"] = enc[0]
                    row.update({k: v / n_sum for k, v in sums.items()})
                    self._write_log(row)
                    sums, n_sum = {}, 0
                bar.update(1)
                if not bar.disable:
                    bar.set_postfix(loss=f"{terms['total']:.4f}", refresh=False)
                for cb in self.callbacks:
                    cb(self, self.step, terms)
                if self.validator is not None and (self.step % cfg.eval_every == 0 or self.step == self.total_steps):
                    if self._validate():
                        self.val["early_stopped"] = True
                        self.finished = True
                        break
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < self.total_steps:
                    self.save_checkpoint()
                if stop_after is not None and self.step >= stop_after and self.step < self.total_steps:
                    stopped_early = True
                    break
            if not stopped_early:
                self.finished = True
                if self.val["best_model"] is not None:  # the run ends with the weights validation selected
                    self.model.load_state_dict(self.val["best_model"])
            checkpoint = self.save_checkpoint()
            model_dir = None
            if not stopped_early and cfg.save_model and hasattr(self.model, "save_pretrained"):
                model_dir = self.out_dir / "model"
                if self.is_main:
                    self.model.save_pretrained(model_dir, extra_config={
                        "train": cfg.to_dict(), "objective": _objective_config(self.objective)})
                if self.world_size > 1:
                    dist.barrier()
        finally:
            bar.close()
            if self._tb is not None:
                self._tb.close()
                self._tb = None
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        return TrainResult(
            steps=self.step,
            epochs=self.step / len(self.loader),
            final_terms=last_terms,
            history=list(self.history),
            out_dir=self.out_dir,
            checkpoint=checkpoint,
            model_dir=model_dir,
            wall_time_s=time.perf_counter() - start_time,
            resumed_from=resumed_from,
            stopped_early=stopped_early,
            best_step=self.val["best_step"],
            best_score=self.val["best_score"],
            validation=list(self.val["history"]),
            early_stopped=bool(self.val["early_stopped"]),
        )


def _non_finite_rows(batch: Batch) -> str:
    """``"; non-finite input features in A feature rows [3, 17] (2 item(s))"``: the feature rows (item indices of the
    training
    features) of ``batch`` that hold NaN or inf, or ``""`` when the features are all finite."""
    parts = []
    for side, tensors, idx in (("A", (batch.a, batch.a2), batch.idx_a), ("B", (batch.b, batch.b2), batch.idx_b)):
        bad = np.zeros(len(idx), dtype=bool)
        for t in tensors:
            if t is not None and t.is_floating_point():
                bad |= ~torch.isfinite(t.detach()).all(dim=1).cpu().numpy()[: len(idx)]
        if bad.any():
            rows = [int(i) for i in np.asarray(idx)[bad]]
            shown = ", ".join(map(str, rows[:10])) + (" ..." if len(rows) > 10 else "")
            parts.append(f"{side} feature rows [{shown}] ({len(rows)} item(s))")
    return ("; non-finite input features in " + " and ".join(parts)) if parts else ""


def _objective_config(objective: nn.Module) -> dict[str, Any] | None:
    cfg = getattr(objective, "config", None)
    if cfg is None:
        return None
    if hasattr(cfg, "to_dict"):
        return cfg.to_dict()
    try:
        return asdict(cfg)
    except TypeError:
        return {"repr": repr(cfg)}
