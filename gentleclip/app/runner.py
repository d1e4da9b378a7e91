"""One run end to end, as the ``gentleclip`` command line does it: embed, train, evaluate, report.

These functions are the engine behind :mod:`gentleclip.app.cli` and can be called from a notebook::

    from gentleclip.app.config import load_run_config
    from gentleclip.app.runner import train_run, evaluate_run

    cfg = load_run_config("protein.yaml", overrides=["train.max_steps=200"])
    run = train_run(cfg, out="runs/protein")         # resumes when rerun
    results = evaluate_run("runs/protein")            # results.json / results.csv / table.md

The run configuration's ``domain`` names a registered :class:`gentleclip.domain.Domain`; it builds the
encoders, the adapter and the task, so this module knows no domain.

Output folder of :func:`train_run`::

    out/config.json          model config (both heads) + the pipeline block: domain, encoder recipes, run config
    out/model.safetensors    the weights of both heads
    out/run_config.yaml      the resolved run configuration (rerun with: gentleclip train -c out/run_config.yaml)
    out/split.json           the pairing split (paired / unpaired-A / unpaired-B items)
    out/train/               checkpoint.pt (resume), log.csv, train_config.json
    out/results.json, results.csv, table.md    after evaluation
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from gentleclip.app.config import ConfigError, RunConfig
from gentleclip.cache import FeatureCache
from gentleclip.io import atomic_write_text, check_output_dir, claim_output_dir

__all__ = [
    "CachedArray",
    "TrainRun",
    "build_encoders",
    "build_adapter",
    "build_task",
    "embed_run",
    "train_run",
    "evaluate_run",
    "report_run",
    "run_config_of",
]

Log = Callable[[str], None]

#: Settings that may change between a run and its resumption (they do not change the result).
_RESUME_IGNORED = ("out", "cache_dir", "data_dir")
_RESUME_IGNORED_TRAIN = ("device", "tensorboard", "log_every", "checkpoint_every")

def _check_device(device: str) -> None:
    """A CUDA device without a GPU is an error before any work (not a torch traceback mid-run)."""
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device: {device!r} was asked for but no CUDA GPU is available here; "
                              "use --device cpu (or auto)")


def _quiet(_: str) -> None:
    return None


# ---------------------------------------------------------------------------- domains
def _encoder_device(cfg: RunConfig) -> str | None:
    """``domain_options.device``, else ``train.device`` unless "auto" (then each encoder's own default)."""
    return cfg.domain_options.get("device") or (cfg.train.device if cfg.train.device != "auto" else None)


def build_encoders(cfg: RunConfig) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """The frozen encoders of ``cfg`` and their saved recipes: ``(encoder_a, encoder_b, recipe_a, recipe_b)``."""
    return _domain_call(cfg, "build_encoders", _encoder_device(cfg))


def build_adapter(cfg: RunConfig, encoder_a: Any = None, encoder_b: Any = None) -> Any:
    """The domain adapter of ``cfg`` over the given encoders (built from ``cfg`` when not given)."""
    if encoder_a is None or encoder_b is None:
        encoder_a, encoder_b, _, _ = build_encoders(cfg)
    return _domain_call(cfg, "build_adapter", encoder_a, encoder_b)


def build_task(cfg: RunConfig, adapter: Any) -> Any:
    """The :class:`~gentleclip.task.AlignmentTask` of ``cfg`` (computes and caches the features)."""
    return _domain_call(cfg, "build_task", adapter)


def _choose_layers(cfg: RunConfig, log: Log) -> tuple[RunConfig, dict[str, Any]]:
    """``cfg`` with the layers (``domain_options.layer_a/layer_b``) chosen among ``cfg.layers`` on the
    training pairs of the run (:class:`gentleclip.layers.LayerCandidates`), and the choice."""
    from gentleclip.layers import LayerCandidates

    name = lambda layer: "last" if layer is None else str(layer)  # noqa: E731
    configs, tasks = {}, {}
    for la in cfg.layers.get("a", [None]):
        for lb in cfg.layers.get("b", [None]):
            layered = replace(cfg, layers={}, domain_options={**cfg.domain_options, "layer_a": la, "layer_b": lb})
            enc_a, enc_b, _, _ = build_encoders(layered)
            key = (name(la), name(lb))
            configs[key], tasks[key] = layered, build_task(layered, build_adapter(layered, enc_a, enc_b))
    candidates = LayerCandidates(tasks, measure=cfg.layers.get("measure", "mutual_knn"))
    _, chosen = candidates.choose_for(cfg.pairing_ratio, cfg.seed, cfg.selection)
    log(f"layer selection ({chosen.measure} on {chosen.n_pairs} training pairs): A {chosen.best[0]}, B "
        f"{chosen.best[1]}; " + ", ".join(f"{a}|{b} {v:.3f}" for (a, b), v in chosen.scores.items()))
    return configs[chosen.best], chosen.to_dict()


def _towers(encoder_a: Any, encoder_b: Any) -> tuple[Any, Any]:
    """The trainable towers of the two encoders (:mod:`gentleclip.finetune`); a clear error for one without."""
    out = []
    for side, enc in (("a", encoder_a), ("b", encoder_b)):
        if not hasattr(enc, "tower"):
            raise ConfigError(f"finetune: encoder_{side} {getattr(enc, 'name', type(enc).__name__)!r} cannot be "
                              "trained end-to-end (it has no tower); keep it frozen or pick another encoder")
        out.append(enc.tower())
    return out[0], out[1]


def _domain_call(cfg: RunConfig, what: str, *args: Any) -> Any:
    return getattr(cfg.registered_domain, what)(cfg, *args)


# ---------------------------------------------------------------------------- embed
@dataclass
class CachedArray:
    """One feature array computed (or found) in the cache."""

    description: str
    shape: tuple[int, ...]
    encoder: str
    path: Path


class _RecordingCache(FeatureCache):
    """A FeatureCache that remembers every array it served (for ``gentleclip embed``)."""

    def __init__(self, root: Any = None) -> None:
        super().__init__(root)
        self.served: list[CachedArray] = []

    def get(self, encoder: Any, items: Any, *args: Any, **kwargs: Any) -> np.ndarray:  # type: ignore[override]
        out = super().get(encoder, items, *args, **kwargs)
        if self.last_key is not None:
            desc = kwargs.get("desc") or getattr(encoder, "name", "features")
            self.served.append(CachedArray(str(desc), tuple(int(s) for s in out.shape),
                                           str(getattr(encoder, "name", "")), self.path(self.last_key)))
        return out


def embed_run(cfg: RunConfig, log: Log = _quiet) -> tuple[list[CachedArray], Any]:
    """Compute (or find) every cached feature array of ``cfg``'s task; returns ``(arrays, task)``.

    Under ``torchrun`` every rank embeds its share of each array's chunks into the one cache entry
    (:class:`gentleclip.cache.FeatureCache`), which is the same as a single process writes."""
    from gentleclip.distributed import init_from_env

    init_from_env(cfg.train.device)
    t0 = time.perf_counter()
    enc_a, enc_b, _, _ = build_encoders(cfg)
    adapter = build_adapter(cfg, enc_a, enc_b)
    adapter.cache = _RecordingCache(adapter.cache.root)
    log(f"{cfg.domain}/{cfg.resolved_task}: encoders {enc_a.name} + {enc_b.name}; cache {adapter.cache.root}")
    task = build_task(cfg, adapter)
    arrays: list[CachedArray] = []
    seen: set[Path] = set()
    for a in adapter.cache.served:
        if a.path not in seen:
            seen.add(a.path)
            arrays.append(a)
    log(f"features ready in {time.perf_counter() - t0:.1f}s")
    return arrays, task


# ---------------------------------------------------------------------------- train
@dataclass
class TrainRun:
    """What :func:`train_run` returns."""

    out: Path
    pipeline: Any
    task: Any
    split: Any
    config: RunConfig
    result: Any = None
    trained: bool = True
    info: dict[str, Any] = field(default_factory=dict)


def _comparable(cfg: RunConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    for k in _RESUME_IGNORED:
        d.pop(k, None)
    for k in _RESUME_IGNORED_TRAIN:
        d["train"].pop(k, None)
    return json.loads(json.dumps(d, default=str))


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    import yaml

    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def resolve_method(cfg: RunConfig, task_name: str) -> tuple[Any, Any, str]:
    """The method of ``cfg`` with its preset for ``task_name`` (unless ``preset: false``) and the
    ``objective:`` overrides of ``cfg`` applied; returns ``(method, train config, source)``."""
    from gentleclip.methods import ablation_config, get_method, preset, with_config

    method = get_method(cfg.method)
    train = cfg.train
    source = "registered default"
    if method.ablation_of:  # the base method's preset with the ablated terms off
        base = preset(task_name, method.ablation_of) if cfg.preset else None
        chosen = ablation_config(method, base) if base else None
    else:
        chosen = preset(task_name, method.name) if (cfg.preset and method.tunable) else None
    if chosen:
        method = with_config(method, chosen.get("objective"), chosen.get("pipeline"))
        user_train = {k for k, v in cfg.train.to_dict().items() if v != RunConfig().train.to_dict().get(k)}
        train = replace(train, **{k: v for k, v in chosen.get("train", {}).items() if k not in user_train})
        source = (f"preset of {method.ablation_of} for {task_name}, {', '.join(method.ablates)} off"
                  if method.ablation_of else "preset for " + task_name)
    if cfg.objective:
        method = with_config(method, cfg.objective)
        source += " + objective overrides"
    return method, train, source


def train_run(
    cfg: RunConfig,
    out: str | Path | None = None,
    restart: bool = False,
    log: Log = _quiet,
    overwrite: bool = False,
) -> TrainRun:
    """Train one model as ``cfg`` says and save it (with its encoders' recipes) into ``out``.

    Rerunning with the same ``out`` resumes from ``out/train/checkpoint.pt`` (a finished run
    returns at once); a different configuration in the same folder is an error (``restart=True``
    trains from scratch and replaces it). A folder holding files gentleclip did not write is
    refused unless ``overwrite=True`` (:func:`gentleclip.io.check_output_dir`). Every check runs
    before a feature is computed.
    """
    from gentleclip.finetune import EndToEnd
    from gentleclip.pipeline import Pipeline
    from gentleclip.run import check_keyword_task, fit_run

    out_path = out if out is not None else cfg.out
    if out_path is None:
        raise ConfigError("no output folder: pass --out DIR (or set out: in the config)")
    out_dir = check_output_dir(out_path, overwrite)
    _check_device(cfg.train.device)
    # absolute paths, so that `gentleclip evaluate` works from any folder
    cfg = replace(cfg, out=str(out_dir),
                  **{k: str(Path(v).expanduser().resolve()) for k in ("data_dir", "cache_dir")
                     if (v := getattr(cfg, k)) is not None})
    saved_cfg = out_dir / "run_config.yaml"
    if saved_cfg.is_file() and not restart:
        import yaml

        try:
            old = RunConfig.from_dict(yaml.safe_load(saved_cfg.read_text(encoding="utf-8")), str(saved_cfg))
        except ConfigError:
            old = None
        diffs = _differences(_comparable(old), _comparable(cfg)) if old is not None else ["(unreadable)"]
        if diffs:
            raise ConfigError(
                f"{out_dir} holds a run with other settings "
                f"({'; '.join(diffs[:4])}{' ...' if len(diffs) > 4 else ''}); "
                "use another --out, or --restart to train from scratch there"
            )
    t0 = time.perf_counter()
    layer_choice, user_cfg = None, cfg  # run_config.yaml keeps what the user asked for
    if cfg.layers:  # layer selection on this run's training pairs; the chosen layers become the run's encoders
        cfg, layer_choice = _choose_layers(cfg, log)
    enc_a, enc_b, recipe_a, recipe_b = build_encoders(cfg)
    end_to_end = cfg.finetune.active
    towers = _towers(enc_a, enc_b) if end_to_end else None
    # end-to-end: the adapter hands out the raw items (gentleclip.items), nothing is encoded ahead
    adapter = build_adapter(replace(cfg, domain_options={**cfg.domain_options, "raw_items": True}) if end_to_end
                            else cfg, enc_a, enc_b)
    task = build_task(cfg, adapter)
    method, train_cfg, source = resolve_method(cfg, task.name)
    check_keyword_task(task, method)
    n_items = len(task.train_a)
    what = (f"raw items (fine-tuning A: {cfg.finetune.a}, B: {cfg.finetune.b})" if end_to_end else
            f"features {tuple(task.train_a.shape)} + {tuple(task.train_b.shape)}")
    log(f"task {task.name} ({task.dataset}): {n_items} training items, {what} ready in {time.perf_counter() - t0:.1f}s")
    # under torchrun every rank runs this function; only rank 0 writes files and logs
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if not main_rank:
        log = _quiet
    if main_rank:
        claim_output_dir(out_dir, overwrite)
        _write_yaml(saved_cfg, user_cfg.to_dict())
    out_dir.mkdir(parents=True, exist_ok=True)
    train_dir = out_dir / "train"
    train_dir.mkdir(parents=True, exist_ok=True)
    log(f"method {method.name} ({source}): {method.objective_summary()}, lr {train_cfg.lr:g}; {method.uses}")
    fitted = fit_run(task, method, cfg.pairing_ratio, cfg.seed, replace(train_cfg, save_model=False), cfg.head,
                     train_dir, cfg.selection, resume=not restart, write_files=main_rank,
                     end_to_end=EndToEnd(towers, cfg.finetune) if end_to_end else None)
    if main_rank:
        fitted.split.save(out_dir / "split.json")
    log(f"{fitted.split.summary()}; validation: {fitted.info['validation']}")
    model, result, trained = fitted.model, fitted.result, fitted.info["trained"]
    if result is not None:
        if result.resumed_from is not None and result.resumed_from >= result.steps:
            log(f"already trained ({result.steps} steps, checkpoint {train_dir / 'checkpoint.pt'}); "
                "pass --restart to train again")
        else:
            how = f"resumed from step {result.resumed_from}" if result.resumed_from is not None else "from scratch"
            terms = ", ".join(f"{k} {v:.4f}" for k, v in result.final_terms.items())
            log(f"trained {result.steps} steps ({how}) in {result.wall_time_s:.1f}s"
                + (f"; last losses: {terms}" if terms else ""))
        if result.best_step is not None:
            log(f"validation ({fitted.validation.metric}) selected step {result.best_step}: "
                f"{result.best_score:.4g}" + (" (stopped early)" if result.early_stopped else ""))
    else:
        log(f"method {method.name} at pairing ratio {cfg.pairing_ratio:g} has nothing to learn from: "
            "saving the untrained heads (the zero-pair baseline)")
    prepared_counts = {k: fitted.info[k] for k in ("n_paired", "n_unpaired_a", "n_unpaired_b")}
    model.cpu().eval()
    info = {**fitted.info, "n_items": n_items, **prepared_counts, "task": task.name, "dataset": task.dataset,
            "objective": method.objective.to_dict(), "lr": train_cfg.lr, "configuration": source,
            **({} if layer_choice is None else {"layers": layer_choice})}
    if end_to_end:  # the pipeline embeds with the run's fine-tuned towers (and their encoders)
        from gentleclip.finetune import mark_finetuned

        enc_a, enc_b = (mark_finetuned(getattr(model, f"encoder_{side}")) for side in ("a", "b"))
    pipeline = Pipeline(model, enc_a, enc_b, domain=cfg.domain, modality_names=tuple(task.modality_names),
                        recipe_a=recipe_a, recipe_b=recipe_b, config=cfg.to_dict())
    if main_rank:
        pipeline.save(out_dir, extra={"run": info})
    log(f"saved model to {out_dir}")
    return TrainRun(out=out_dir, pipeline=pipeline, task=task, split=fitted.split, config=cfg, result=result,
                    trained=trained, info=info)


# ---------------------------------------------------------------------------- evaluate
def run_config_of(model_dir: str | Path, **changes: Any) -> RunConfig:
    """The run configuration saved with a model (``changes``: top-level keys to replace, None ignored)."""
    from gentleclip.model import AlignmentModel
    from gentleclip.pipeline import PIPELINE_KEY

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json (expected a folder written by gentleclip train)")
    block = (AlignmentModel.load_config(model_dir).get("extra") or {}).get(PIPELINE_KEY) or {}
    data = dict(block.get("config") or {})
    if not data:
        raise ValueError(f"{model_dir}/config.json holds no run configuration (the model was not saved by gentleclip "
                         "train); score it with its domain adapter's task.evaluate, or save it with "
                         "Pipeline(..., config=RunConfig(...).to_dict())")
    data.update({k: v for k, v in changes.items() if v is not None})
    return RunConfig.from_dict(data, source=str(model_dir / "config.json"))


def evaluate_run(
    model_dir: str | Path,
    out: str | Path | None = None,
    log: Log = _quiet,
    task: Any = None,
    overwrite: bool = False,
    **changes: Any,
) -> Any:
    """Score a trained model folder on its domain task; writes ``results.json``/``.csv``/``table.md``.

    ``out`` defaults to ``model_dir``. ``changes`` replace saved settings that may differ on this
    machine (``data_dir``, ``cache_dir``) or shrink the evaluation (``max_test``). ``task``: an
    already built task (skips rebuilding it). Returns a :class:`~gentleclip.app.report.Results`.
    """
    from gentleclip.app.report import Results, make_meta
    from gentleclip.model import AlignmentModel
    from gentleclip.pipeline import load_pipeline

    model_dir = Path(model_dir)
    out_dir = check_output_dir(out if out is not None else model_dir, overwrite)
    cfg = run_config_of(model_dir, **changes)
    t0 = time.perf_counter()
    pipeline = load_pipeline(model_dir, device=_encoder_device(cfg))
    end_to_end = cfg.finetune.active  # the fine-tuned towers embed the raw evaluation items
    if task is None:
        adapter = build_adapter(replace(cfg, domain_options={**cfg.domain_options, "raw_items": True}) if end_to_end
                                else cfg, pipeline.encoder_a, pipeline.encoder_b)
        task = build_task(cfg, adapter)
    log(f"task {task.name} ({task.dataset}) ready in {time.perf_counter() - t0:.1f}s; scoring")
    from gentleclip.run import embed_fns

    rows = task.evaluate(*embed_fns(pipeline.model))
    run_info = (AlignmentModel.load_config(model_dir).get("extra") or {}).get("run") or {}
    meta = make_meta(encoders=task.encoders, seeds=[cfg.seed],
                     extra={"model_dir": str(model_dir), "domain": cfg.domain, "run": run_info})
    results = Results(meta)
    for row in rows:
        results.add(row.get("task", task.name), row.get("dataset", task.dataset), cfg.method, cfg.pairing_ratio,
                    cfg.seed, row["metric"], float(row["value"]))
    results.write(claim_output_dir(out_dir, overwrite))
    log(f"scored in {time.perf_counter() - t0:.1f}s; wrote {out_dir}/results.json, results.csv, table.md")
    return results


# ---------------------------------------------------------------------------- report
#: Metrics plotted by ``gentleclip report`` when present (``--plot`` chooses others).
DEFAULT_PLOTS = ("mean_recall", "zeroshot_top1", "linear_probe_acc", "knn_acc", "nmi", "gap_centroid_distance")


def _result_files(path: Path, exclude: Path | None) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    for name in ("results.json", "results.csv"):
        if (path / name).is_file():
            return [path / name]
    found = sorted(p for p in path.rglob("results.json")
                   if exclude is None or exclude.resolve() not in p.resolve().parents)
    if not found:
        raise FileNotFoundError(f"{path}: no results.json in it or below it (run gentleclip evaluate first)")
    return found


def report_run(
    paths: Sequence[str | Path],
    out: str | Path | None = None,
    plots: Sequence[str] | None = None,
    on_duplicate: str = "error",
    log: Log = _quiet,
    overwrite: bool = False,
) -> tuple[Any, list[Path]]:
    """Merge result folders/files (folders are searched for ``results.json``) into tables and plots.

    Writes ``results.json``, ``results.csv``, ``table.md`` and ``<metric>_vs_ratio*.png`` into
    ``out`` (nothing is written when ``out`` is None). ``plots``: metric names (default
    :data:`DEFAULT_PLOTS` that are present; ``[]`` for none). Returns ``(results, written files)``.
    """
    from gentleclip.app.report import Results, plot_metric_vs_ratio

    if not paths:
        raise ValueError("report: no result folders given")
    if out is not None:
        check_output_dir(out, overwrite)
    exclude = Path(out) if out is not None else None
    files = [f for p in paths for f in _result_files(Path(p), exclude)]
    files = list(dict.fromkeys(f.resolve() for f in files))
    results = Results.merge(files, on_duplicate=on_duplicate)  # type: ignore[arg-type]
    written: list[Path] = []
    if out is None:
        return results, written
    out_dir = claim_output_dir(out, overwrite)
    written += list(results.write(out_dir).values())
    rows = results.rows
    present = {r["metric"] for r in rows}
    wanted = [m for m in DEFAULT_PLOTS if m in present] if plots is None else list(plots)
    missing = [m for m in wanted if m not in present]
    if missing:
        raise ValueError(f"--plot: no results for metric(s) {', '.join(missing)}; present: "
                         f"{', '.join(sorted(present))}")
    for metric in wanted:
        pairs = sorted({(r["task"], r["dataset"]) for r in rows if r["metric"] == metric})
        for task, dataset in pairs:
            suffix = "" if len(pairs) == 1 else f"_{task}_{dataset}"
            path = out_dir / f"{metric}_vs_ratio{suffix}.png"
            written.append(plot_metric_vs_ratio(results, metric, path, task=task, dataset=dataset))
    return results, written
