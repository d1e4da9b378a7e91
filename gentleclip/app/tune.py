"""Validation-based selection of a method's configuration: the same trials for every method.

One declared search space serves every tunable method (:func:`suggest`): the CLIP temperature
(methods with a CLIP term), the weight of each of the method's terms other than CLIP (log-uniform
between a quarter and four times its default; not when a term is the only one, where its weight is
the learning rate's twin), whether unpaired rows are CLIP negatives (methods that read unpaired
rows), the settings a method's own pipeline declares (``Method.pipeline.search_space()``, e.g.
SUE's dimensions), and the learning rate. The number of steps is chosen inside every run by early stopping on the
validation set (:class:`gentleclip.train.Trainer`). Trial 0 is the method's own default; the
others come from Optuna's seeded TPE sampler. A trial trains the configuration at every tuning
ratio (seed ``seed``) and scores the mean of the runs' best validation scores, so one selected
configuration holds across ratios. Trials are ordinary runs (:func:`gentleclip.app.grid.run_one`
without the test score): a rerun reads finished trials back and resumes an interrupted one, and
the seeded sampler then proposes the same trials again. The test split is never read.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

__all__ = ["suggest", "default_params", "search_space", "tune_method", "write_presets",
           "TEMPERATURES", "LEARNING_RATES"]

TEMPERATURES = (0.02, 0.05, 0.1)
LEARNING_RATES = (3e-4, 1e-3, 3e-3)
_TERMS_NOT_TUNED = ("clip",)


def _tuned_terms(method: Any) -> list[str]:
    terms = method.objective.enabled_terms()
    if len(terms) == 1:  # the weight of a lone term only rescales the loss, as the learning rate does
        return []
    return [t for t in terms if t not in _TERMS_NOT_TUNED]


def _has_clip(method: Any) -> bool:
    return method.objective.weight("clip") > 0


def _has_negatives_choice(method: Any) -> bool:
    return _has_clip(method) and (method.uses_unpaired_a or method.uses_unpaired_b)


def _pipeline_space(method: Any) -> dict[str, list]:
    return {} if method.pipeline is None else dict(method.pipeline.search_space())


def search_space(method: Any) -> dict[str, Any]:
    """The declared search space of ``method`` (written beside the results)."""
    space: dict[str, Any] = {"temperature": list(TEMPERATURES)} if _has_clip(method) else {}
    space["lr"] = list(LEARNING_RATES)
    for t in _tuned_terms(method):
        w = method.objective.weight(t)
        space[t] = {"log_uniform": [w / 4, w * 4]}
    if _has_negatives_choice(method):
        space["clip_unpaired_negatives"] = [True, False]
    space.update({f"pipeline.{k}": list(v) for k, v in _pipeline_space(method).items()})
    return space


def suggest(trial: Any, method: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(objective fields, train fields, pipeline fields)`` of one Optuna trial for ``method``."""
    obj: dict[str, Any] = {}
    if _has_clip(method):
        obj["temperature"] = trial.suggest_categorical("temperature", list(TEMPERATURES))
    for t in _tuned_terms(method):
        w = method.objective.weight(t)
        obj[t] = trial.suggest_float(t, w / 4, w * 4, log=True)
    if _has_negatives_choice(method):
        obj["clip_unpaired_negatives"] = trial.suggest_categorical("clip_unpaired_negatives", [True, False])
    pipeline = {k: trial.suggest_categorical(f"pipeline.{k}", list(v)) for k, v in _pipeline_space(method).items()}
    return obj, {"lr": trial.suggest_categorical("lr", list(LEARNING_RATES))}, pipeline


def default_params(method: Any, lr: float) -> dict[str, Any]:
    """The method's own configuration in the names of :func:`suggest` (enqueued as trial 0)."""
    params: dict[str, Any] = {"lr": lr}
    if _has_clip(method):
        params["temperature"] = method.objective.temperature
    for t in _tuned_terms(method):
        params[t] = method.objective.weight(t)
    if _has_negatives_choice(method):
        params["clip_unpaired_negatives"] = method.objective.clip_unpaired_negatives
    params.update({f"pipeline.{k}": method.pipeline.options()[k] for k in _pipeline_space(method)})
    return params


def tune_method(task: Any, method: Any, ratios: Sequence[float], n_trials: int, train_config: Any, head: Any,
                out_dir: str | Path, seed: int = 0, selection: str = "val", end_to_end: Any = None) -> dict[str, Any]:
    """Select ``method``'s configuration on ``task``'s validation data; returns the selection record.

    The record (also written to ``out_dir/selection/<method>.json``) holds the search space, every
    trial (its parameters, its best validation score at each ratio and their mean) and ``best``
    (``objective`` and ``train`` fields to apply, and its mean validation score).

    A configuration that cannot run at a tuning ratio (``not_applicable``, e.g. SUE's CCA with fewer
    pairs than components) is scored on the ratios it ran at, and ranks below every configuration that
    ran at more of them; one that ran at none is pruned. The trials still count against ``n_trials``.
    """
    import optuna

    from gentleclip.app.grid import run_one
    from gentleclip.io import atomic_write_json
    from gentleclip.layers import LayerCandidates
    from gentleclip.methods import with_config

    ref = task.reference if isinstance(task, LayerCandidates) else task  # name and validation they share

    if n_trials < 1:
        raise ValueError(f"tune_method: n_trials must be >= 1, got {n_trials}")
    ratios = [float(r) for r in ratios]
    out_dir = Path(out_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, n_trials)))
    study.enqueue_trial(default_params(method, train_config.lr))
    trials: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def objective(trial: Any) -> float:
        obj, train, pipeline = suggest(trial, method)
        m, cfg = with_config(method, obj, pipeline), replace(train_config, **train)
        values, not_applicable = {}, {}
        for r in ratios:
            _, info, _ = run_one(task, m, r, seed, cfg, head, out_dir, selection, score_test=False,
                                 end_to_end=end_to_end)
            if "not_applicable" in info:  # e.g. SUE's CCA with fewer pairs than components
                not_applicable[f"{r:g}"] = info["not_applicable"]
                continue
            if info.get("best_val") is None:
                raise ValueError(f"task {ref.name!r} has no validation data at ratio {r:g} "
                                 f"(selection {selection!r}): nothing to tune on")
            values[f"{r:g}"] = float(info["best_val"])
        mean = sum(values.values()) / len(values) if values else None
        trials.append({"number": trial.number, "params": dict(trial.params), "val": values, "mean_val": mean,
                       **({"not_applicable": not_applicable} if not_applicable else {})})
        if mean is None:
            raise optuna.TrialPruned(f"not applicable at any tuning ratio: {not_applicable}")
        return mean

    study.optimize(objective, n_trials=n_trials)
    ran = [t for t in trials if t["mean_val"] is not None]
    if not ran:
        raise ValueError(f"tune_method: {method.name!r} could run at none of the tuning ratios {ratios} with any "
                         f"of its {n_trials} trials: {trials[0].get('not_applicable')}")
    # a configuration that runs at more of the tuning ratios ranks first; then the mean over them
    best = max(ran, key=lambda t: (len(t["val"]), t["mean_val"]))
    params = dict(best["params"])
    record = {
        "task": ref.name, "method": method.name, "metric": ref.validation.metric if ref.validation else None,
        "selection": selection, "ratios": ratios, "seed": seed, "n_trials": n_trials,
        "sampler": f"optuna {optuna.__version__} TPESampler(seed={seed}); trial 0 = the method's default",
        "search_space": search_space(method), "steps": "early stopping on validation inside every run "
        f"(every {train_config.eval_every} steps, patience {train_config.patience}, at most {train_config.max_steps})",
        "trials": trials,
        "best": {"objective": {k: v for k, v in params.items() if k != "lr" and not k.startswith("pipeline.")},
                 "train": {"lr": params["lr"]},
                 **({"pipeline": {k[len("pipeline."):]: v for k, v in params.items() if k.startswith("pipeline.")}}
                    if method.pipeline is not None else {}),
                 "mean_val": best["mean_val"], "trial": best["number"]},
        "wall_time_s": round(time.perf_counter() - t0, 1),
    }
    (out_dir / "selection").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "selection" / f"{method.name}.json", record)
    return record


def write_presets(records: Sequence[dict[str, Any]], path: str | Path | None = None, command: str = "") -> Path:
    """Store selections as the methods' presets (``gentleclip/presets.json``), keeping the others."""
    from gentleclip.io import atomic_write_json
    from gentleclip.methods import PRESETS_PATH

    p = PRESETS_PATH if path is None else Path(path)
    data = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    for rec in records:
        data.setdefault(rec["task"], {})[rec["method"]] = {
            "objective": rec["best"]["objective"], "train": rec["best"]["train"],
            **({"pipeline": rec["best"]["pipeline"]} if "pipeline" in rec["best"] else {}),
            "selected_by": {"metric": rec["metric"], "mean_val": rec["best"]["mean_val"], "ratios": rec["ratios"],
                            "seed": rec["seed"], "n_trials": rec["n_trials"], "selection": rec["selection"],
                            "command": command, "date": time.strftime("%Y-%m-%d")},
        }
    atomic_write_json(p, data, indent=2)
    return p
