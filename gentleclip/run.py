"""One training run, the one run path of the benchmarks' grid and of ``gentleclip train``: split the
pairs, build the heads and the pools, train with early stopping on validation (:func:`fit_run`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from gentleclip.task import AlignmentTask, EmbedFn

if TYPE_CHECKING:
    import torch

    from gentleclip.data import SemiPairedData
    from gentleclip.finetune import EndToEnd, FinetuneConfig
    from gentleclip.losses import ObjectiveConfig
    from gentleclip.methods import Method
    from gentleclip.model import AlignmentModel
    from gentleclip.pairing import PairingSplit
    from gentleclip.train import TrainConfig
    from gentleclip.validation import ValidationSet

class NotApplicable(ValueError):
    """A method cannot run on a split (e.g. SUE with too few pairs for its CCA): the grid records the run
    as not applicable, with this message, instead of a score."""


@dataclass
class HeadConfig:
    """Projection-head shape shared by both modalities in a grid run."""

    out_dim: int = 256
    hidden_dim: int = 512
    n_blocks: int = 1
    dropout: float = 0.1


@dataclass
class PreparedRun:
    """The untrained model and the training pools of one (method, split, seed) run.

    ``data`` is None when the method has nothing to learn from (no pairs, and not both unpaired pools:
    the zero-pair baseline keeps the untrained heads). ``counts`` holds the pool sizes (and
    what a method's own pipeline fitted, under ``"pipeline"``).
    """

    model: "AlignmentModel"
    data: "SemiPairedData | None"
    counts: dict[str, Any]

    @property
    def trained(self) -> bool:
        """True when the run has data to learn from (else the untrained heads are kept)."""
        return self.data is not None


def prepare_run(task: AlignmentTask, method: "Method", split: "PairingSplit", head: HeadConfig,
                seed: int, end_to_end: "EndToEnd | None" = None) -> PreparedRun:
    """Seeded projection heads for ``task`` and the pools ``method`` may see under ``split``.

    Unpaired pools the method does not use are left out; the task's B-only items join the
    unpaired-B pool (appended virtually, never copied) when the method uses unpaired B.

    End-to-end (``end_to_end``, :class:`gentleclip.finetune.EndToEnd`): ``task`` holds raw items
    (:mod:`gentleclip.items`); each run trains its own copy of the encoder towers (a fresh start from
    the pretrained weights), on pools of raw items.
    """
    import torch

    from gentleclip.data import SemiPairedData
    from gentleclip.model import AlignmentModel, ProjectionHead

    torch.manual_seed(seed)
    pipeline_info = None
    raw = end_to_end is not None
    if raw:
        _check_raw(task, method)
        towers, finetune = end_to_end.towers, end_to_end.config
    if method.pipeline is not None:  # the method fits its own heads from the training rows it may see
        model, pipeline_info = _pipeline_model(task, method, split, seed)
    else:
        in_a, in_b = (towers[0].dim, towers[1].dim) if raw else (task.train_a.shape[-1], task.train_b.shape[-1])
        model = AlignmentModel(
            ProjectionHead(in_a, head.out_dim, head.hidden_dim, head.n_blocks, head.dropout),
            ProjectionHead(in_b, head.out_dim, head.hidden_dim, head.n_blocks, head.dropout),
            *(_fresh_towers(towers) if raw else ()),
        )
        if raw:
            _set_trainable(model, finetune)
    empty = np.zeros(0, dtype=np.int64)
    unpaired_a = split.unpaired_a if method.uses_unpaired_a else empty
    unpaired_b = split.unpaired_b if method.uses_unpaired_b else empty
    extra = task.extra_unpaired_b if method.uses_unpaired_b else None
    n_extra = 0 if extra is None else len(extra)
    counts = {"n_paired": int(len(split.paired)), "n_unpaired_a": int(len(unpaired_a)),
              "n_unpaired_b": int(len(unpaired_b)) + int(n_extra)}
    if pipeline_info is not None:
        counts["pipeline"] = pipeline_info
    if counts["n_paired"] == 0 and (counts["n_unpaired_a"] == 0 or counts["n_unpaired_b"] == 0):
        # no pairs and at most one modality's rows (e.g. S-CLIP, which reads unpaired A only): nothing
        # can align the two sides, so the run keeps the untrained heads, as CLIP at 0 pairs does
        return PreparedRun(model, None, counts)
    features_b, unpaired_b_rows = [task.train_b], unpaired_b
    if n_extra:
        features_b = [task.train_b, extra]
        unpaired_b_rows = np.concatenate([unpaired_b, len(task.train_a) + np.arange(n_extra)])
    features_a: Any = task.train_a
    if raw:  # the items, collated by this run's towers
        from gentleclip.data import RawRows

        features_a = RawRows(task.train_a, model.encoder_a.collate, f"{task.name} A items")
        k = min(part.shape[1] for part in features_b)  # stored views (RSICD: the captions of an image)
        features_b = RawRows(np.concatenate([part[:, :k] for part in features_b]), model.encoder_b.collate,
                             f"{task.name} B items")
    data = SemiPairedData(features_a, features_b, split.paired, split.paired, unpaired_a, unpaired_b_rows)
    return PreparedRun(model, data, counts)


def _check_raw(task: AlignmentTask, method: "Method") -> None:
    """Raise ``ValueError`` unless ``task`` holds raw items and ``method`` can train end-to-end."""
    from gentleclip.items import is_item_array

    if not (is_item_array(task.train_a) and is_item_array(task.train_b)):
        raise ValueError(f"task {task.name!r} holds cached features; end-to-end training needs its raw items (build "
                         "it with the domain's raw-item mode)")
    check_end_to_end(method)


def check_end_to_end(method: "Method") -> None:
    """Raise ``ValueError`` when ``method`` has no end-to-end mode (a pipeline over frozen features, a term
    that reads the frozen features, keywords embedded by the frozen text encoder)."""
    if method.pipeline is not None:
        raise ValueError(f"method {method.name!r} is its own pipeline over frozen features; it has no end-to-end mode")
    reads = method.objective.reads()
    if "features_a" in reads or "features_b" in reads:
        raise ValueError(f"method {method.name!r} compares the frozen features with the embeddings (STRUCTURE); it has "
                         "no end-to-end mode")
    if method.uses_keywords:
        raise ValueError(f"method {method.name!r} embeds keyword strings with the frozen text encoder; use "
                         "'s-clip-caption' end-to-end")


def _fresh_towers(towers: Any) -> tuple[Any, Any]:
    """Copies of the towers: each run starts from the pretrained weights."""
    import copy

    return copy.deepcopy(towers[0]), copy.deepcopy(towers[1])


def _set_trainable(model: "AlignmentModel", finetune: "FinetuneConfig") -> None:
    """Unfreeze the layers of each tower that ``finetune`` trains (AlignmentModel froze them all)."""
    from gentleclip.finetune import parse_trainable

    for side in ("a", "b"):
        trainable = parse_trainable(getattr(finetune, side), side)
        if trainable is not False:
            model.set_encoder_trainable(side, last_k=trainable)
            if finetune.gradient_checkpointing:
                getattr(model, f"encoder_{side}").enable_gradient_checkpointing()


def _pipeline_model(task: AlignmentTask, method: "Method", split: "PairingSplit", seed: int
                    ) -> tuple["AlignmentModel", dict[str, Any]]:
    """The heads that ``method.pipeline`` fits from view 0 of the rows ``split`` lets ``method`` see
    (pairs, plus the unpaired pools and B-only items it reads); ``pairs`` index into those rows."""
    from gentleclip.model import AlignmentModel

    empty = np.zeros(0, dtype=np.int64)
    paired = np.asarray(split.paired, dtype=np.int64)
    rows_a = np.sort(np.concatenate([paired, split.unpaired_a if method.uses_unpaired_a else empty]))
    rows_b = np.sort(np.concatenate([paired, split.unpaired_b if method.uses_unpaired_b else empty]))
    feats_a = np.asarray(task.train_a[rows_a, 0], dtype=np.float32)
    feats_b = np.asarray(task.train_b[rows_b, 0], dtype=np.float32)
    if method.uses_unpaired_b and task.extra_unpaired_b is not None and len(task.extra_unpaired_b):
        feats_b = np.concatenate([feats_b, np.asarray(task.extra_unpaired_b[:, 0], dtype=np.float32)])
    pairs = np.stack([np.searchsorted(rows_a, paired), np.searchsorted(rows_b, paired)], axis=1)
    head_a, head_b, info = method.pipeline.build_heads(feats_a, feats_b, pairs, seed)
    return AlignmentModel(head_a, head_b), info


def embed_fn(head: "torch.nn.Module", batch_size: int = 4096, encoder: Any = None) -> EmbedFn:
    """A function mapping feature arrays ``[n, D]`` to joint-space arrays ``[n, d]`` through ``head``
    (eval mode, no gradients, ``batch_size`` rows at a time, on the head's device); with an encoder
    tower, raw-item arrays (:mod:`gentleclip.items`) go through the tower first."""
    import torch

    from gentleclip.items import is_item_array, items_of
    from gentleclip.model import module_device

    def embed(features: np.ndarray) -> np.ndarray:
        if is_item_array(features):
            if encoder is None or not hasattr(encoder, "collate"):
                raise ValueError("embed: raw items need the encoder tower that was trained with the head")
            from gentleclip.finetune import embed_items

            return embed_items(encoder, head, items_of(features))
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"embed expects features [n, D], got shape {x.shape}")
        device = module_device(head)
        out = []
        head.eval()
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                # np.require copies read-only (memmap) or strided slices: torch wants writable, contiguous memory
                chunk = torch.from_numpy(np.require(x[start:start + batch_size], requirements=["C", "W"])).to(device)
                out.append(head(chunk).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, head_out_dim(head)), np.float32)

    return embed


def head_out_dim(head: "torch.nn.Module") -> int:
    """The joint-space dimension a projection head maps to."""
    return int(getattr(head, "out_dim"))


def _objective_key(config: "ObjectiveConfig") -> dict:
    """The weights and options of ``config`` that differ from their defaults: terms and options added
    later stay out of a run's key while they hold their default, so finished runs keep their folder."""
    from gentleclip.losses import ObjectiveConfig

    defaults = ObjectiveConfig().to_dict()
    return {k: v for k, v in config.to_dict().items() if v != defaults[k]}


def _config_key(task: AlignmentTask, method: "Method", train_config: "TrainConfig", head: HeadConfig,
                selection: str = "val", end_to_end: "EndToEnd | None" = None) -> str:
    """Short hash of everything (but the seed) that decides a run's result, so that a rerun with other
    settings never reuses a finished run of different settings."""
    import hashlib
    import json
    from dataclasses import asdict

    from gentleclip.train import TrainConfig

    defaults = TrainConfig().to_dict()  # settings added later stay out of the key while at their default
    train = {k: v for k, v in train_config.to_dict().items()
             if k not in ("seed", "device") and (k not in defaults or v != defaults[k])}
    payload = {
        "task": [task.name, task.dataset, task.encoders, list(task.train_a.shape), list(task.train_b.shape),
                 None if task.extra_unpaired_b is None else list(task.extra_unpaired_b.shape)],
        "objective": _objective_key(method.objective), "pools": [method.uses_unpaired_a, method.uses_unpaired_b],
        **({} if method.pipeline is None else {"pipeline": [type(method.pipeline).__name__,
                                                            method.pipeline.options()]}),
        "train": train, "head": asdict(head), "selection": selection, "protocol": PROTOCOL_VERSION,
        **({} if end_to_end is None else {"finetune": end_to_end.config.to_dict()}),
    }
    if method.uses_keywords:  # the captions and the keyword settings decide the keyword pseudo-labels
        from gentleclip.cache import fingerprint

        texts = [[t] if isinstance(t, str) else list(t) for t in (task.b_texts or [])]
        payload["keywords"] = {"texts": fingerprint(texts), "stop_words": sorted(task.keyword_stop_words),
                               "options": dict(sorted(task.keyword_options.items()))}
    return "cfg-" + hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def check_keyword_task(task: AlignmentTask, method: "Method") -> None:
    """Raise ``ValueError`` when ``method`` needs keyword pseudo-labels that ``task`` cannot give."""
    if method.uses_keywords and not task.has_keyword_texts:
        missing = [n for n in ("b_texts", "encode_b_texts") if getattr(task, n) is None]
        raise ValueError(
            f"method {method.name!r} needs keyword pseudo-labels from the captions of the paired items, but task "
            f"{task.name!r} (dataset {task.dataset!r}) has no {' / '.join(missing)}; give the task b_texts (the "
            f"caption(s) of each training item) and encode_b_texts (strings -> B-encoder features), or use a "
            f"method without keywords such as 's-clip-caption'"
        )


def _keyword_inputs(task: AlignmentTask, paired: np.ndarray, n_rows_b: int, run_dir: "Path") -> dict[str, np.ndarray]:
    """S-CLIP keyword inputs of one run (see :class:`~gentleclip.train.Trainer`).

    The vocabulary comes from the captions of the *paired* items only and is saved as
    ``run_dir/keywords.json``; the multi-hot matrix ``[n_rows_b, K]`` marks the keywords of the paired
    rows (every other row stays empty, so no caption of an unpaired item is ever read), and the
    keyword strings are embedded by ``task.encode_b_texts`` (``[K, Db]``).
    """
    from gentleclip.keywords import extract_keywords

    assert task.b_texts is not None and task.encode_b_texts is not None
    rows = [int(i) for i in paired]
    docs = [task.b_texts[i] for i in rows]
    vocab = extract_keywords(docs, stop_words=task.keyword_stop_words, **task.keyword_options)
    hot = np.zeros((n_rows_b, len(vocab)), dtype=bool)
    if rows and len(vocab):
        hot[rows] = vocab.multi_hot(docs)
    dim_b = int(task.train_b.shape[-1])
    if len(vocab):
        feats = np.asarray(task.encode_b_texts(list(vocab.keywords)), dtype=np.float32)
        if feats.shape != (len(vocab), dim_b) or not np.isfinite(feats).all():
            raise ValueError(f"task {task.name!r}: encode_b_texts must return finite features [n strings, Db] = "
                             f"{(len(vocab), dim_b)} for {len(vocab)} keywords, got shape {feats.shape}")
    else:
        feats = np.zeros((0, dim_b), np.float32)
    vocab.save(run_dir / "keywords.json")
    return {"keyword_multi_hot": hot, "keyword_features": feats}


#: Bumped when the run protocol changes (batch composition, validation), so old runs are not reused.
PROTOCOL_VERSION = 2
#: Share of the given pairs held out for validation under ``selection="budget"``.
BUDGET_VAL_FRACTION = 0.2


def default_train_config(steps: int = 300, batch_size: int = 256, lr: float = 1e-3, device: str = "auto",
                         eval_every: int = 25, patience: int = 4) -> "TrainConfig":
    """The training settings of every benchmark run and of ``gentleclip train`` (one set of defaults).

    ``steps`` is the budget of every method; validation every ``eval_every`` steps picks the
    checkpoint and stops a run after ``patience`` evaluations without improvement.
    """
    from gentleclip.train import TrainConfig

    return TrainConfig(max_steps=steps, batch_size=batch_size, lr=lr, device=device,
                       warmup_steps=min(20, steps // 10), checkpoint_every=max(50, steps // 4),
                       eval_every=eval_every, patience=patience)


@dataclass
class FittedRun:
    """What :func:`fit_run` returns: the (trained or untrained) model and the run's bookkeeping."""

    model: "AlignmentModel"
    split: "PairingSplit"
    validation: "ValidationSet | None"
    info: dict[str, Any]
    result: Any = None


def validation_for(task: AlignmentTask, split: "PairingSplit", selection: str, seed: int
                   ) -> tuple["PairingSplit", "ValidationSet | None"]:
    """The training split and the validation set of one run under ``selection`` (``"val"``/``"budget"``)."""
    from gentleclip.pairing import hold_out_pairs
    from gentleclip.validation import SELECTION_MODES

    if selection not in SELECTION_MODES:
        raise ValueError(f"selection must be one of {SELECTION_MODES}, got {selection!r}")
    if task.validation is None:
        return split, None
    if selection == "val":
        return split, task.validation
    split, held = hold_out_pairs(split, BUDGET_VAL_FRACTION, seed)
    if task.validation.metric == "zeroshot_top1":
        if task.train_labels is None:
            raise ValueError(f"task {task.name!r}: selection 'budget' with a zero-shot validation metric needs "
                             f"task.train_labels (the class of each training item)")
        usable = held[np.asarray(task.train_labels)[held] >= 0]
    else:
        usable = held
    if len(usable) < 2:
        return split, None  # too few pairs to hold any out: no selection, the last step is scored
    labels = None if task.train_labels is None else np.asarray(task.train_labels)[usable]
    return split, task.validation.like(np.asarray(task.train_a[usable, 0]), np.asarray(task.train_b[usable]), labels,
                                       source=f"{len(usable)} of the given pairs held out (selection 'budget')")


def fit_run(task: AlignmentTask, method: "Method", ratio: float, seed: int, train_config: "TrainConfig",
            head: HeadConfig, run_dir: "Path", selection: str = "val", resume: bool = True,
            write_files: bool = True, end_to_end: "EndToEnd | None" = None) -> FittedRun:
    """Split, build and train one (method, ratio, seed) run in ``run_dir``: the one run path.

    Every method at a given ``ratio`` and ``seed`` gets the same split and the same pairs per step
    (:class:`~gentleclip.data.SemiPairedLoader`); unpaired rows come on top for methods that read
    them. With a validation set (``selection``), checkpoints are scored every
    ``train_config.eval_every`` steps and the run ends with the best weights (early stopping after
    ``train_config.patience`` evaluations without improvement). ``info`` holds what ``run.json``
    records: pools, rows per step, steps, pairs and unpaired rows seen, and the selection.
    ``end_to_end`` trains the encoders end-to-end from the task's raw items (see :func:`prepare_run`).
    """
    from dataclasses import replace as dc_replace

    from gentleclip.losses import Objective
    from gentleclip.pairing import make_pairing_split
    from gentleclip.train import Trainer

    split = make_pairing_split(len(task.train_a), ratio=ratio, seed=seed, groups=task.groups)
    split, validation = validation_for(task, split, selection, seed)
    if write_files:
        split.save(run_dir / "split.json")
    prepared = prepare_run(task, method, split, head, seed, end_to_end)
    model, data = prepared.model, prepared.data
    info: dict[str, Any] = {"method": method.name, "pairing_ratio": ratio, "seed": seed,
                            "trained": prepared.trained, **prepared.counts, "selection": selection,
                            **({} if end_to_end is None else {
                                "finetune": {**end_to_end.config.to_dict(), "trainable_parameters": {
                                    side: sum(p.numel() for p in getattr(model, f"encoder_{side}").parameters()
                                              if p.requires_grad) for side in ("a", "b")}}}),
                            "validation": None if validation is None else
                            {"metric": validation.metric, "n_items": len(validation), "source": validation.source}}
    result = None
    if data is not None:
        kw = _keyword_inputs(task, split.paired, data.rows_b.n, run_dir) if method.uses_keywords else {}
        if kw:
            info["n_keywords"] = int(kw["keyword_features"].shape[0])
        cfg = dc_replace(train_config, seed=seed)
        validator = None
        if validation is not None and cfg.eval_every:
            validator = _validator(validation)
        else:
            cfg = dc_replace(cfg, eval_every=0, patience=0)
        trainer = Trainer(model, Objective(method.objective), data, cfg, run_dir, validator=validator, **kw)
        result = trainer.fit(resume=resume)
        c = trainer.loader.composition
        info.update({
            "pairs_per_step": c.paired, "unpaired_a_per_step": c.unpaired_a, "unpaired_b_per_step": c.unpaired_b,
            "items_per_step": c.total, "max_steps": trainer.total_steps, "steps": int(result.steps),
            "pairs_seen": c.paired * int(result.steps),
            "unpaired_seen": (c.unpaired_a + c.unpaired_b) * int(result.steps),
            "best_step": result.best_step, "best_val": result.best_score, "early_stopped": result.early_stopped,
        })
    else:
        info.update({"pairs_per_step": 0, "unpaired_a_per_step": 0, "unpaired_b_per_step": 0, "items_per_step": 0,
                     "max_steps": 0, "steps": 0, "pairs_seen": 0, "unpaired_seen": 0, "best_step": 0,
                     "early_stopped": False,
                     "best_val": None if validation is None else _validator(validation)(model)})
    return FittedRun(model, split, validation, info, result)


def embed_fns(model: "AlignmentModel") -> tuple[EmbedFn, EmbedFn]:
    """The two embedding functions of a trained model (features, or raw items through its towers)."""
    return (embed_fn(model.head_a, encoder=getattr(model, "encoder_a", None)),
            embed_fn(model.head_b, encoder=getattr(model, "encoder_b", None)))


def _validator(validation: "ValidationSet") -> Callable[["torch.nn.Module"], float]:
    def score(model: "torch.nn.Module") -> float:
        return validation.score(*embed_fns(model))

    return score


def run_dir_of(out_dir: "Path", task: AlignmentTask, method: "Method", ratio: float, seed: int,
               train_config: "TrainConfig", head: HeadConfig, selection: str = "val",
               end_to_end: "EndToEnd | None" = None) -> "Path":
    """``out_dir/runs/<task>/<method>/ratio=<r>/seed=<s>/<config key>``: where a run lives."""
    return (out_dir / "runs" / task.name / method.name / f"ratio={ratio:g}" / f"seed={seed}"
            / _config_key(task, method, train_config, head, selection, end_to_end))

