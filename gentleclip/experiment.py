"""Grid runner shared by the benchmark scripts: methods x pairing ratios x seeds on one task."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

EmbedFn = Callable[[np.ndarray], np.ndarray]

#: Options of :func:`gentleclip.keywords.extract_keywords` an :class:`AlignmentTask` may set
#: through ``keyword_options`` (stop words go in ``keyword_stop_words``).
KEYWORD_OPTIONS = ("min_df", "max_keywords", "bigrams", "min_length", "drop_numeric")


@dataclass
class AlignmentTask:
    """Everything the core needs from a domain to train and score one alignment problem.

    ``train_a[i]`` and ``train_b[i]`` are the cached features ``[N, V, D]`` of the two halves of
    training item ``i`` (the true pair). ``groups`` (optional, length N) keeps similar items on
    one side of every split. ``extra_unpaired_b`` holds B-only items (e.g. captions without
    images) that only ever enter the unpaired-B pool. ``evaluate(embed_a, embed_b)`` scores the
    joint space: ``embed_*`` map feature arrays ``[n, D]`` to joint-space arrays ``[n, d]``, and
    it returns rows ``{"task", "dataset", "metric", "value"}``. ``joint_space`` (optional) holds
    held-out features ``(a [n, Da], b [n, Db], labels or None)`` of true pairs, drawn after training
    as a 2-D projection of the joint space (first seed of each method and ratio).

    Keyword pseudo-labels (methods with ``uses_keywords``, e.g. ``s-clip``) need the texts of the
    B side: ``b_texts[i]`` is the caption of item ``i`` (a str) or its captions (a list of str);
    ``encode_b_texts(list[str]) -> [n, Db]`` gives the view-0 features of the frozen B encoder for
    any strings (it embeds the keywords). Keywords are extracted from the captions of the *paired*
    items of each split only (:func:`gentleclip.keywords.extract_keywords` with the built-in English
    stop words plus ``keyword_stop_words``, the dataset's own uninformative words such as "image"
    or "protein", and ``keyword_options``: ``min_df`` (default 2), ``max_keywords`` (default 1000),
    ``bigrams``, ``min_length``, ``drop_numeric``).
    """

    name: str
    dataset: str
    train_a: np.ndarray
    train_b: np.ndarray
    evaluate: Callable[[EmbedFn, EmbedFn], list[dict]]
    encoders: dict[str, str] = field(default_factory=dict)
    groups: np.ndarray | None = None
    extra_unpaired_b: np.ndarray | None = None
    modality_names: tuple[str, str] = ("a", "b")
    joint_space: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
    b_texts: Sequence[str | Sequence[str]] | None = None
    encode_b_texts: Callable[[list[str]], np.ndarray] | None = None
    keyword_stop_words: tuple[str, ...] = ()
    keyword_options: dict[str, Any] = field(default_factory=lambda: {"min_df": 2, "max_keywords": 1000})
    validation: "ValidationSet | None" = None
    train_labels: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for label, arr in (("train_a", self.train_a), ("train_b", self.train_b)):
            if arr.ndim != 3:
                raise ValueError(f"AlignmentTask {self.name!r}: {label} must be [N, V, D], got shape {arr.shape}")
        if len(self.train_a) != len(self.train_b):
            raise ValueError(
                f"AlignmentTask {self.name!r}: train_a has {len(self.train_a)} items but train_b has "
                f"{len(self.train_b)}; row i of each must be the same item"
            )
        if self.train_labels is not None and len(self.train_labels) != len(self.train_a):
            raise ValueError(f"AlignmentTask {self.name!r}: train_labels has {len(self.train_labels)} entries for "
                             f"{len(self.train_a)} items")
        if self.groups is not None and len(self.groups) != len(self.train_a):
            raise ValueError(
                f"AlignmentTask {self.name!r}: groups has {len(self.groups)} entries for {len(self.train_a)} items"
            )
        if self.b_texts is not None:
            if isinstance(self.b_texts, str) or not hasattr(self.b_texts, "__len__"):
                raise ValueError(f"AlignmentTask {self.name!r}: b_texts must be a list with one caption (str) or "
                                 f"list of captions per training item, got {type(self.b_texts).__name__}")
            if len(self.b_texts) != len(self.train_b):
                raise ValueError(f"AlignmentTask {self.name!r}: b_texts has {len(self.b_texts)} entries for "
                                 f"{len(self.train_b)} training items (row i of train_b)")
            for i, doc in enumerate(self.b_texts):
                if not (isinstance(doc, str) or (isinstance(doc, (list, tuple))
                                                 and all(isinstance(c, str) for c in doc))):
                    raise ValueError(f"AlignmentTask {self.name!r}: b_texts[{i}] must be a str or a list of str, "
                                     f"got {type(doc).__name__}")
        if self.encode_b_texts is not None and not callable(self.encode_b_texts):
            raise ValueError(f"AlignmentTask {self.name!r}: encode_b_texts must be callable (list[str] -> [n, Db])")
        if isinstance(self.keyword_stop_words, str):
            raise ValueError(f"AlignmentTask {self.name!r}: keyword_stop_words must be a sequence of words, "
                             f"not one string")
        self.keyword_stop_words = tuple(self.keyword_stop_words)
        for w in self.keyword_stop_words:
            if not isinstance(w, str):
                raise ValueError(f"AlignmentTask {self.name!r}: keyword_stop_words must be str, got {w!r}")
        unknown = sorted(set(self.keyword_options) - set(KEYWORD_OPTIONS))
        if unknown:
            raise ValueError(f"AlignmentTask {self.name!r}: unknown keyword_options {unknown}; allowed: "
                             f"{list(KEYWORD_OPTIONS)} (stop words go in keyword_stop_words)")

    @property
    def has_keyword_texts(self) -> bool:
        """True when the task can give keyword pseudo-labels (``b_texts`` and ``encode_b_texts`` set)."""
        return self.b_texts is not None and self.encode_b_texts is not None


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

    ``data`` is None when the method has nothing to learn from (no pairs and no unpaired pool it
    uses: the zero-pair baseline keeps the untrained heads). ``counts`` holds the pool sizes.
    """

    model: "AlignmentModel"
    data: "SemiPairedData | None"
    counts: dict[str, int]

    @property
    def trained(self) -> bool:
        return self.data is not None


def prepare_run(task: AlignmentTask, method: "Method", split: "PairingSplit", head: HeadConfig,
                seed: int) -> PreparedRun:
    """Seeded projection heads for ``task`` and the pools ``method`` may see under ``split``.

    Unpaired pools the method does not use are left out; the task's B-only items join the
    unpaired-B pool (appended virtually, never copied) when the method uses unpaired B.
    """
    import torch

    from gentleclip.data import SemiPairedData
    from gentleclip.model import AlignmentModel, ProjectionHead

    torch.manual_seed(seed)
    model = AlignmentModel(
        ProjectionHead(task.train_a.shape[-1], head.out_dim, head.hidden_dim, head.n_blocks, head.dropout),
        ProjectionHead(task.train_b.shape[-1], head.out_dim, head.hidden_dim, head.n_blocks, head.dropout),
    )
    empty = np.zeros(0, dtype=np.int64)
    unpaired_a = split.unpaired_a if method.uses_unpaired_a else empty
    unpaired_b = split.unpaired_b if method.uses_unpaired_b else empty
    extra = task.extra_unpaired_b if method.uses_unpaired_b else None
    n_extra = 0 if extra is None else len(extra)
    counts = {"n_paired": int(len(split.paired)), "n_unpaired_a": int(len(unpaired_a)),
              "n_unpaired_b": int(len(unpaired_b)) + int(n_extra)}
    if len(split.paired) == 0 and len(unpaired_a) == 0 and len(unpaired_b) == 0:
        return PreparedRun(model, None, counts)
    features_b, unpaired_b_rows = [task.train_b], unpaired_b
    if n_extra:
        features_b = [task.train_b, extra]
        unpaired_b_rows = np.concatenate([unpaired_b, len(task.train_a) + np.arange(n_extra)])
    data = SemiPairedData(task.train_a, features_b, split.paired, split.paired, unpaired_a, unpaired_b_rows)
    return PreparedRun(model, data, counts)


def _embed_fn(head: "torch.nn.Module", batch_size: int = 4096) -> EmbedFn:
    import torch

    def embed(features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"embed expects features [n, D], got shape {x.shape}")
        device = next(head.parameters()).device
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
    return int(getattr(head, "out_dim"))


#: ObjectiveConfig fields added after run keys were first written: left out of the key while they
#: hold their default (the behaviour of older runs), so that finished runs keep their key.
_LATER_OBJECTIVE_FIELDS = ("sclip_caption", "sclip_keyword", "pseudo_nn", "clip_unpaired_negatives",
                           "sclip_ot_epsilon", "sclip_ot_iter", "sclip_support", "pseudo_threshold", "pseudo_mutual")


def _objective_key(config: "ObjectiveConfig") -> dict:
    from dataclasses import fields as dc_fields

    defaults = {f.name: f.default for f in dc_fields(config)}
    out = config.to_dict()
    for name in _LATER_OBJECTIVE_FIELDS:
        if name in out and out[name] == defaults[name]:
            del out[name]
    return out


def _config_key(task: AlignmentTask, method: "Method", train_config: "TrainConfig", head: HeadConfig,
                selection: str = "val") -> str:
    """Short hash of everything (but the seed) that decides a run's result, so that a rerun with other
    settings never reuses a finished run of different settings."""
    import hashlib
    import json
    from dataclasses import asdict

    train = {k: v for k, v in train_config.to_dict().items() if k not in ("seed", "device")}
    payload = {
        "task": [task.name, task.dataset, task.encoders, list(task.train_a.shape), list(task.train_b.shape),
                 None if task.extra_unpaired_b is None else list(task.extra_unpaired_b.shape)],
        "objective": _objective_key(method.objective), "pools": [method.uses_unpaired_a, method.uses_unpaired_b],
        "train": train, "head": asdict(head), "selection": selection, "protocol": PROTOCOL_VERSION,
    }
    if method.uses_keywords:  # the captions and the keyword settings decide the keyword pseudo-labels
        from gentleclip.cache import fingerprint

        texts = [[t] if isinstance(t, str) else list(t) for t in (task.b_texts or [])]
        payload["keywords"] = {"texts": fingerprint(texts), "stop_words": sorted(task.keyword_stop_words),
                               "options": dict(sorted(task.keyword_options.items()))}
    return "cfg-" + hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _check_keyword_task(task: AlignmentTask, method: "Method") -> None:
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
            write_files: bool = True) -> FittedRun:
    """Split, build and train one (method, ratio, seed) run in ``run_dir``: the one run path.

    Every method at a given ``ratio`` and ``seed`` gets the same split and the same pairs per step
    (:class:`~gentleclip.data.SemiPairedLoader`); unpaired rows come on top for methods that read
    them. With a validation set (``selection``), checkpoints are scored every
    ``train_config.eval_every`` steps and the run ends with the best weights (early stopping after
    ``train_config.patience`` evaluations without improvement). ``info`` holds what ``run.json``
    records: pools, rows per step, steps, pairs and unpaired rows seen, and the selection.
    """
    from dataclasses import replace as dc_replace

    from gentleclip.losses import Objective
    from gentleclip.pairing import make_pairing_split
    from gentleclip.train import Trainer

    split = make_pairing_split(len(task.train_a), ratio=ratio, seed=seed, groups=task.groups)
    split, validation = validation_for(task, split, selection, seed)
    if write_files:
        split.save(run_dir / "split.json")
    prepared = prepare_run(task, method, split, head, seed)
    model, data = prepared.model, prepared.data
    info: dict[str, Any] = {"method": method.name, "pairing_ratio": ratio, "seed": seed,
                            "trained": prepared.trained, **prepared.counts, "selection": selection,
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


def _validator(validation: "ValidationSet") -> Callable[["torch.nn.Module"], float]:
    def score(model: "torch.nn.Module") -> float:
        return validation.score(_embed_fn(model.head_a), _embed_fn(model.head_b))

    return score


def run_dir_of(out_dir: "Path", task: AlignmentTask, method: "Method", ratio: float, seed: int,
               train_config: "TrainConfig", head: HeadConfig, selection: str = "val") -> "Path":
    """``out_dir/runs/<task>/<method>/ratio=<r>/seed=<s>/<config key>``: where a run lives."""
    return (out_dir / "runs" / task.name / method.name / f"ratio={ratio:g}" / f"seed={seed}"
            / _config_key(task, method, train_config, head, selection))


def run_one(task: AlignmentTask, method: "Method", ratio: float, seed: int, train_config: "TrainConfig",
            head: HeadConfig, out_dir: "Path", selection: str = "val", plot_joint_space: bool = False,
            score_test: bool = True) -> tuple[list[dict], dict[str, Any], "Path"]:
    """Train (or read back) one run of the grid and score it on the task's test data.

    ``score_test=False`` (tuning trials) trains and writes ``run.json`` only: the test split is not
    read, and ``rows`` is empty. A later call with ``score_test=True`` reuses the trained run.

    The run lives in ``out_dir/runs/<task>/<method>/ratio=<r>/seed=<s>/<config key>/`` with its split,
    log, checkpoints, ``run.json`` (budget and selection, see :func:`fit_run`) and ``rows.json``
    (written last). A finished run is read back; an interrupted one resumes from its checkpoint.
    Returns ``(rows, info, run_dir)``.
    """
    import json
    import time
    from pathlib import Path

    from gentleclip.io import atomic_write_json

    run_dir = run_dir_of(Path(out_dir), task, method, ratio, seed, train_config, head, selection)
    rows_path, info_path = run_dir / "rows.json", run_dir / "run.json"
    if rows_path.exists():
        return json.loads(rows_path.read_text()), json.loads(info_path.read_text()), run_dir
    if not score_test and info_path.exists():
        return [], json.loads(info_path.read_text()), run_dir
    t0 = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    fitted = fit_run(task, method, ratio, seed, train_config, head, run_dir, selection)

    def info() -> dict[str, Any]:  # written when the run is done (wall time up to then)
        return {**fitted.info, "objective": method.objective.to_dict(), "lr": train_config.lr,
                "wall_time_s": round(time.perf_counter() - t0, 2)}

    if not score_test:
        done = info()
        atomic_write_json(info_path, done)
        return [], done, run_dir
    embed_a, embed_b = _embed_fn(fitted.model.head_a), _embed_fn(fitted.model.head_b)
    rows = task.evaluate(embed_a, embed_b)
    if plot_joint_space and task.joint_space is not None:
        from gentleclip.report import plot_joint_space as plot

        fa, fb, labels = task.joint_space
        plot(embed_a(fa), embed_b(fb), run_dir / "joint_space.png", labels=labels, names=task.modality_names,
             title=f"{task.name}: {method.name}, pairing ratio {ratio:g}")
    for row in rows:
        row.setdefault("task", task.name)
        row.setdefault("dataset", task.dataset)
    done = info()
    atomic_write_json(info_path, done)
    atomic_write_json(rows_path, rows)
    return rows, done, run_dir


def run_grid(
    task: AlignmentTask,
    methods: "list[str | Method]",
    ratios: list[float],
    seeds: list[int],
    train_config: "TrainConfig",
    out_dir: "str | Path",
    head_config: HeadConfig | None = None,
    meta: dict | None = None,
    selection: str = "val",
    train_overrides: "dict[str, dict[str, Any]] | None" = None,
) -> "Results":
    """Train and score every (method, pairing ratio, seed) on ``task``; return the tidy results.

    Each run goes through :func:`run_one` (finished runs are read back, interrupted ones resume).
    All methods see the same split for a given (ratio, seed), the same pairs per step and the same
    step budget (``train_config``); each sees only the pools it uses
    (:attr:`~gentleclip.methods.Method.uses`). ``methods`` are names or :class:`Method` objects
    (e.g. with a selected objective); ``train_overrides[method name]`` replaces fields of
    ``train_config`` for that method (e.g. its selected learning rate). Methods with keyword
    pseudo-labels (``s-clip``) build their keyword vocabulary from the captions of the paired items
    of each split; they need ``task.b_texts`` and ``task.encode_b_texts`` (a ``ValueError`` naming the
    method and the task otherwise, before any run starts).
    """
    from pathlib import Path

    from gentleclip.methods import get_method
    from gentleclip.progress import progress
    from gentleclip.report import Results

    head_config = head_config or HeadConfig()
    resolved = [m if not isinstance(m, str) else get_method(m) for m in methods]  # fail early on unknown names
    for method in resolved:  # ... and on methods the task cannot feed
        _check_keyword_task(task, method)
    for r in ratios:
        if not 0.0 <= float(r) <= 1.0:
            raise ValueError(f"pairing ratio {r} is outside [0, 1]")
    overrides = train_overrides or {}
    results = Results(meta)
    grid = [(m, float(r), int(s)) for m in resolved for r in ratios for s in seeds]
    for method, ratio, seed in progress(grid, desc=f"{task.name}: runs", unit="run"):
        cfg = replace_train(train_config, overrides.get(method.name, {}))
        rows, _, _ = run_one(task, method, ratio, seed, cfg, head_config, Path(out_dir), selection,
                             plot_joint_space=seed == seeds[0])
        for row in rows:
            results.add(row["task"], row["dataset"], method.name, ratio, seed, row["metric"], float(row["value"]))
    return results


def parse_float_list(text: str) -> list[float]:
    """Parse ``"0,0.01,0.05"`` (percent values such as ``"5%"`` allowed) into floats."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            values.append(float(part[:-1]) / 100.0 if part.endswith("%") else float(part))
        except ValueError:
            raise ValueError(f"cannot read {part!r} as a number (expected e.g. 0,0.01,5%)") from None
    if not values:
        raise ValueError(f"no values in {text!r}")
    return values


def parse_int_list(text: str) -> list[int]:
    """Parse ``"0,1,2"`` into ints."""
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a comma-separated list of integers") from None
    if not values:
        raise ValueError(f"no values in {text!r}")
    return values


def add_grid_arguments(
    parser: "argparse.ArgumentParser",
    *,
    methods: str = "clip,gentle,gentle-reference",
    ratios: str = "0,0.01,0.05,0.1,1",
    seeds: str = "0,1,2",
    steps: int = 300,
    batch_size: int = 256,
    out: str = "benchmarks/out",
) -> None:
    """The options every benchmark grid shares (methods, ratios, seeds, budget, selection, output)."""
    from gentleclip.methods import available_methods

    g = parser.add_argument_group("grid")
    g.add_argument("--methods", default=methods,
                   help=f"comma-separated method names (default: %(default)s); known: {', '.join(available_methods())}")
    g.add_argument("--ratios", default=ratios,
                   help="pairing ratios of the training items, fractions or percentages (default: %(default)s)")
    g.add_argument("--seeds", default=seeds, help="comma-separated seeds (default: %(default)s)")
    g.add_argument("--steps", type=int, default=steps,
                   help="step budget per run, equal for all methods (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=batch_size,
                   help="pairs per step (capped at the pairs given); methods that read unpaired rows get as many "
                        "unpaired rows on top (default: %(default)s)")
    g.add_argument("--lr", type=float, default=1e-3,
                   help="learning rate of the heads for methods without a selected one (default: %(default)s)")
    g.add_argument("--device", default="auto", help="cpu, cuda or auto (default: %(default)s)")
    g.add_argument("--out", default=out, help="output folder (default: %(default)s)")
    g.add_argument("--overwrite", action="store_true",
                   help="write into --out even when it holds files gentleclip did not write (refused otherwise)")
    s = parser.add_argument_group("selection (validation data only; the test split is scored once)")
    s.add_argument("--selection", choices=("val", "budget"), default="val",
                   help="val: the task's validation split, outside the pair budget; budget: 20%% of the given "
                        "pairs are held out for validation (default: %(default)s)")
    s.add_argument("--eval-every", type=int, default=25,
                   help="steps between validation scores; the best checkpoint is the one tested (default: %(default)s)")
    s.add_argument("--patience", type=int, default=4,
                   help="stop a run after this many validations without improvement; 0 = never (default: %(default)s)")
    s.add_argument("--tune", action="store_true",
                   help="re-select every tunable method's configuration on validation data (Optuna, --trials each) "
                        "instead of using the shipped presets")
    s.add_argument("--trials", type=int, default=12, help="trials per method with --tune (default: %(default)s)")
    s.add_argument("--tune-ratios", default="0.01,0.05,0.1",
                   help="ratios whose mean validation score a trial is judged by (default: %(default)s)")
    s.add_argument("--tune-seed", type=int, default=0, help="seed of the tuning runs and sampler (default: %(default)s)")
    s.add_argument("--write-presets", action="store_true",
                   help="with --tune: store the selections as the methods' presets (gentleclip/presets.json)")
    s.add_argument("--no-presets", action="store_true",
                   help="use every method's registered default instead of its preset (still early-stopped)")


@dataclass
class GridSpec:
    """The checked grid options of a benchmark (see :func:`check_grid_arguments`)."""

    methods: list
    ratios: list[float]
    seeds: list[int]
    tune_ratios: list[float]
    train: "TrainConfig"


def check_grid_arguments(args: "argparse.Namespace") -> GridSpec:
    """Check every grid option before any feature is computed; a ``ValueError`` names the bad one."""
    from gentleclip.methods import get_method

    methods = [get_method(m.strip()) for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ValueError("--methods: no method named")
    ratios, tune_ratios = parse_float_list(args.ratios), parse_float_list(args.tune_ratios)
    for flag, values in (("--ratios", ratios), ("--tune-ratios", tune_ratios)):
        bad = [r for r in values if not 0.0 <= r <= 1.0]
        if bad:
            raise ValueError(f"{flag}: pairing ratio {bad[0]:g} is outside [0, 1] (write 5% or 0.05)")
    for flag, value, least in (("--steps", args.steps, 1), ("--batch-size", args.batch_size, 1),
                               ("--eval-every", args.eval_every, 1), ("--patience", args.patience, 0),
                               ("--trials", args.trials, 1)):
        if value < least:
            raise ValueError(f"{flag} must be >= {least}, got {value}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if args.write_presets and not args.tune:
        raise ValueError("--write-presets needs --tune (it stores what --tune selects)")
    from gentleclip.io import check_output_dir

    check_output_dir(args.out, getattr(args, "overwrite", False))
    if args.device not in ("auto", "cpu") and args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: no CUDA GPU is available here; use --device cpu")
    train = default_train_config(args.steps, args.batch_size, args.lr, args.device, args.eval_every, args.patience)
    return GridSpec(methods, ratios, parse_int_list(args.seeds), tune_ratios, train)


def resolve_configs(task: AlignmentTask, spec: GridSpec, args: "argparse.Namespace", head: HeadConfig
                    ) -> tuple[list, dict[str, dict[str, Any]], dict[str, Any]]:
    """Each method's configuration for the grid: re-selected (``--tune``), its preset, or its default.

    Returns ``(methods, train_overrides, record)``; ``record[method]`` says where the configuration
    came from (written to ``config.json``).
    """
    import shlex
    import sys

    from gentleclip.methods import preset, with_config
    from gentleclip.selection import tune_method, write_presets

    methods, overrides, record, tuned = [], {}, {}, []
    for m in spec.methods:
        if not m.tunable:
            methods.append(m)
            record[m.name] = {"source": "fixed recipe (not tuned; early stopping on validation only)"}
            continue
        if args.tune:
            sel = tune_method(task, m, spec.tune_ratios, args.trials, spec.train, head, args.out,
                              seed=args.tune_seed, selection=args.selection)
            tuned.append(sel)
            cfg, source = sel["best"], f"tuned here: {args.trials} trials (selection/{m.name}.json)"
        else:
            cfg = None if args.no_presets else preset(task.name, m.name)
            source = "preset (gentleclip/presets.json)" if cfg else "registered default (no preset for this task)"
        if cfg:
            m = with_config(m, cfg.get("objective"))
            overrides[m.name] = dict(cfg.get("train", {}))
        methods.append(m)
        record[m.name] = {"source": source, **({"selected": cfg} if cfg else {})}
    if tuned and args.write_presets:
        path = write_presets(tuned, command=" ".join(shlex.quote(a) for a in sys.argv))
        print(f"wrote the selected configurations to {path}")
    return methods, overrides, record


def run_benchmark(
    task: AlignmentTask,
    args: "argparse.Namespace",
    *,
    plot_metrics: list[str],
    headline: list[str] | None = None,
    extra_config: dict | None = None,
    head_config: HeadConfig | None = None,
    spec: GridSpec | None = None,
) -> "Results":
    """Run the grid named by ``args`` (see :func:`add_grid_arguments`) and write every output.

    Writes to ``args.out``: ``config.json`` (the fully resolved configuration, the data's leak-filter
    and split counts, where each method's configuration came from), ``runs.json`` (one row per run:
    pairs and unpaired rows per step, steps, selected step and validation score), ``results.json``,
    ``results.csv``, ``table.md``, ``<metric>_vs_ratio.png`` per plotted metric and, per method and
    ratio, ``joint_space/<method>_ratio=<r>.png`` when the task provides held-out pairs. Prints the
    compact table of each ``headline`` metric.
    """
    import json
    import shutil
    import time
    from dataclasses import asdict

    from gentleclip.io import atomic_write_json
    from gentleclip.report import compact_tables, make_meta, plot_metric_vs_ratio

    t0 = time.perf_counter()
    spec = spec or check_grid_arguments(args)
    head_config = head_config or HeadConfig()
    from gentleclip.io import claim_output_dir

    out = claim_output_dir(args.out, getattr(args, "overwrite", False))
    methods, overrides, sources = resolve_configs(task, spec, args, head_config)
    config = {
        "task": task.name, "dataset": task.dataset, "encoders": task.encoders,
        "n_train_items": int(len(task.train_a)), "views": [int(task.train_a.shape[1]), int(task.train_b.shape[1])],
        "n_extra_unpaired_b": 0 if task.extra_unpaired_b is None else int(len(task.extra_unpaired_b)),
        "data": task.info,
        "protocol": {"selection": args.selection, "validation": None if task.validation is None else
                     {"metric": task.validation.metric, "source": task.validation.source},
                     "budget_val_fraction": BUDGET_VAL_FRACTION if args.selection == "budget" else None,
                     "pairs_per_step": f"min(pairs given, {spec.train.batch_size})",
                     "unpaired_per_step": f"{spec.train.batch_size} on top, for methods that read unpaired rows",
                     "steps": spec.train.max_steps, "eval_every": spec.train.eval_every,
                     "patience": spec.train.patience, "tune": bool(args.tune), "trials_per_method": args.trials
                     if args.tune else None, "tune_ratios": spec.tune_ratios if args.tune else None},
        "methods": {m.name: {"description": m.description, "reference": m.reference, "uses": m.uses,
                             "objective": m.objective.to_dict(), "train_overrides": overrides.get(m.name, {}),
                             "configuration": sources[m.name]} for m in methods},
        "ratios": spec.ratios, "seeds": spec.seeds, "train": spec.train.to_dict(), "head": asdict(head_config),
        **(extra_config or {}),
    }
    atomic_write_json(out / "config.json", config, indent=2)
    meta = make_meta(encoders=task.encoders, seeds=spec.seeds, extra={"task": task.name})
    results = run_grid(task, methods, spec.ratios, spec.seeds, spec.train, out, head_config=head_config, meta=meta,
                       selection=args.selection, train_overrides=overrides)
    runs = []
    for m in methods:
        cfg = replace_train(spec.train, overrides.get(m.name, {}))
        for r in spec.ratios:
            for seed in spec.seeds:
                run_dir = run_dir_of(out, task, m, r, seed, cfg, head_config, args.selection)
                info = json.loads((run_dir / "run.json").read_text())
                runs.append({k: info.get(k) for k in RUN_SUMMARY_FIELDS})
                if seed == spec.seeds[0] and (run_dir / "joint_space.png").exists():
                    (out / "joint_space").mkdir(exist_ok=True)
                    shutil.copyfile(run_dir / "joint_space.png", out / "joint_space" / f"{m.name}_ratio={r:g}.png")
    atomic_write_json(out / "runs.json", runs)
    results.meta["wall_time_s"] = round(time.perf_counter() - t0, 1)
    results.write(out)
    for metric in plot_metrics:
        blocks = sorted({(r["task"], r["dataset"]) for r in results.rows if r["metric"] == metric})
        for row_task, dataset in blocks:
            suffix = "" if len(blocks) == 1 else f"_{row_task}_{dataset}"
            plot_metric_vs_ratio(results, metric, out / f"{metric}_vs_ratio{suffix}.png", task=row_task,
                                 dataset=dataset)
    if headline:
        print(compact_tables(results, headline, skip_missing=True))
    return results


#: Fields of ``run.json`` collected into a benchmark's ``runs.json``.
RUN_SUMMARY_FIELDS = ("method", "pairing_ratio", "seed", "trained", "n_paired", "n_unpaired_a", "n_unpaired_b",
                      "pairs_per_step", "unpaired_a_per_step", "unpaired_b_per_step", "items_per_step",
                      "max_steps", "steps", "pairs_seen", "unpaired_seen", "best_step", "best_val",
                      "early_stopped", "lr", "selection", "wall_time_s")


def replace_train(config: "TrainConfig", overrides: dict[str, Any]) -> "TrainConfig":
    """``config`` with the given fields replaced (a method's selected learning rate, say)."""
    from dataclasses import replace as dc_replace

    return dc_replace(config, **overrides) if overrides else config
