"""The benchmarks' grid: methods x pairing ratios x seeds on one task, each run by :func:`gentleclip.run.fit_run`."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gentleclip.layers import LayerCandidates
from gentleclip.run import (
    BUDGET_VAL_FRACTION,
    HeadConfig,
    NotApplicable,
    check_end_to_end,
    check_keyword_task,
    default_train_config,
    embed_fns,
    fit_run,
    run_dir_of,
)
from gentleclip.task import AlignmentTask

if TYPE_CHECKING:
    from gentleclip.app.report import Results
    from gentleclip.finetune import EndToEnd, FinetuneConfig
    from gentleclip.methods import Method
    from gentleclip.train import TrainConfig


def run_one(task: "AlignmentTask | LayerCandidates", method: "Method", ratio: float, seed: int,
            train_config: "TrainConfig", head: HeadConfig, out_dir: "Path", selection: str = "val",
            plot_joint_space: bool = False, score_test: bool = True,
            end_to_end: "EndToEnd | None" = None) -> tuple[list[dict], dict[str, Any], "Path"]:
    """Train (or read back) one run of the grid and score it on the task's test data.

    ``score_test=False`` (tuning trials) trains and writes ``run.json`` only: the test split is not
    read, and ``rows`` is empty. A later call with ``score_test=True`` reuses the trained run.

    The run lives in ``out_dir/runs/<task>/<method>/ratio=<r>/seed=<s>/<config key>/`` with its split,
    log, checkpoints, ``run.json`` (budget and selection, see :func:`fit_run`) and ``rows.json``
    (written last). A finished run is read back; an interrupted one resumes from its checkpoint.
    ``task`` may be :class:`~gentleclip.layers.LayerCandidates`: the run's layers are then chosen on its
    own training pairs first, and ``run.json`` records the choice (``layers``, ``encoders``).
    ``end_to_end`` (:class:`~gentleclip.finetune.EndToEnd`) fine-tunes the encoders from the task's raw items.
    Returns ``(rows, info, run_dir)``.
    """
    import json
    import time
    from pathlib import Path

    from gentleclip.io import atomic_write_json

    layers = None
    if isinstance(task, LayerCandidates):  # choose the layers on this run's own training pairs
        task, layers = task.choose_for(ratio, seed, selection)
    run_dir = run_dir_of(Path(out_dir), task, method, ratio, seed, train_config, head, selection, end_to_end)
    rows_path, info_path = run_dir / "rows.json", run_dir / "run.json"
    if rows_path.exists():
        return json.loads(rows_path.read_text()), json.loads(info_path.read_text()), run_dir
    if not score_test and info_path.exists():
        return [], json.loads(info_path.read_text()), run_dir
    t0 = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        fitted = fit_run(task, method, ratio, seed, train_config, head, run_dir, selection, end_to_end=end_to_end)
    except NotApplicable as exc:  # recorded, so the table shows no cell rather than a made-up score
        done = {"method": method.name, "pairing_ratio": ratio, "seed": seed, "not_applicable": str(exc)}
        atomic_write_json(info_path, done)
        if score_test:
            atomic_write_json(rows_path, [])
        return [], done, run_dir

    def info() -> dict[str, Any]:  # written when the run is done (wall time up to then)
        return {**fitted.info, "objective": method.objective.to_dict(), "lr": train_config.lr,
                **({} if layers is None else {"layers": layers.to_dict(), "encoders": task.encoders}),
                "wall_time_s": round(time.perf_counter() - t0, 2)}

    if not score_test:
        done = info()
        atomic_write_json(info_path, done)
        return [], done, run_dir
    embed_a, embed_b = embed_fns(fitted.model)
    rows = task.evaluate(embed_a, embed_b)
    if plot_joint_space and task.joint_space is not None:
        from gentleclip.app.report import plot_joint_space as plot

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
    task: "AlignmentTask | LayerCandidates",
    methods: "list[str | Method]",
    ratios: list[float],
    seeds: list[int],
    train_config: "TrainConfig",
    out_dir: "str | Path",
    head_config: HeadConfig | None = None,
    meta: dict | None = None,
    selection: str = "val",
    train_overrides: "dict[str, dict[str, Any]] | None" = None,
    end_to_end: "EndToEnd | None" = None,
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

    from gentleclip.app.report import Results
    from gentleclip.methods import get_method
    from gentleclip.progress import progress

    head_config = head_config or HeadConfig()
    resolved = [m if not isinstance(m, str) else get_method(m) for m in methods]  # fail early on unknown names
    for method in resolved:  # ... and on methods the task cannot feed
        check_keyword_task(task.reference if isinstance(task, LayerCandidates) else task, method)
        if end_to_end is not None:
            check_end_to_end(method)
    for r in ratios:
        if not 0.0 <= float(r) <= 1.0:
            raise ValueError(f"pairing ratio {r} is outside [0, 1]")
    overrides = train_overrides or {}
    results = Results(meta)
    grid = [(m, float(r), int(s)) for m in resolved for r in ratios for s in seeds]
    for method, ratio, seed in progress(grid, desc=f"{task.name}: runs", unit="run"):
        cfg = replace_train(train_config, overrides.get(method.name, {}))
        rows, _, _ = run_one(task, method, ratio, seed, cfg, head_config, Path(out_dir), selection,
                             plot_joint_space=seed == seeds[0], end_to_end=end_to_end)
        for row in rows:
            results.add(row["task"], row["dataset"], method.name, ratio, seed, row["metric"], float(row["value"]))
    return results


def parse_layers(text: str | None, flag: str) -> list[int | None]:
    """``"2,4,last"`` -> ``[2, 4, None]`` (None: the encoder's usual output); None -> ``[None]``."""
    if text is None:
        return [None]
    layers: list[int | None] = []
    for part in (p.strip() for p in text.split(",")):
        if part in ("last", "default"):
            layers.append(None)
        elif part:
            try:
                layers.append(int(part))
            except ValueError:
                raise ValueError(f"{flag}: cannot read {part!r} as a layer (an integer or 'last')") from None
    if not layers:
        raise ValueError(f"{flag}: no layers in {text!r}")
    return list(dict.fromkeys(layers))


def layer_candidates(args: "argparse.Namespace", build_task: "Callable[[int | None, int | None], AlignmentTask]"
                     ) -> "AlignmentTask | LayerCandidates":
    """The task of a benchmark, or with ``--layers-a`` / ``--layers-b`` the :class:`LayerCandidates` of one
    task per (layer of A, layer of B), built by ``build_task(layer_a, layer_b)`` (None = the usual output)."""
    layers_a, layers_b = parse_layers(args.layers_a, "--layers-a"), parse_layers(args.layers_b, "--layers-b")
    if layers_a == [None] and layers_b == [None]:
        return build_task(None, None)
    name = lambda layer: "last" if layer is None else str(layer)  # noqa: E731
    tasks = {(name(la), name(lb)): build_task(la, lb) for la in layers_a for lb in layers_b}
    return LayerCandidates(tasks, measure=args.layer_measure)


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
    g.add_argument("--quick", action="store_true",
                   help=f"a quick look, not the published protocol: seed 0 and ratios 0 and 5 %% only (in place of "
                        f"--seeds/--ratios), presets or registered defaults (no tuning), written to {out}-quick "
                        "unless --out is given")
    parser.set_defaults(default_out=out)
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
    s.add_argument("--tune-missing", action="store_true",
                   help="select (as --tune does) only the methods that have no preset for this task; the others run "
                        "their preset, which was selected with the same --trials")
    s.add_argument("--trials", type=int, default=12, help="trials per method with --tune (default: %(default)s)")
    s.add_argument("--tune-ratios", default="0.01,0.05,0.1",
                   help="ratios whose mean validation score a trial is judged by (default: %(default)s)")
    s.add_argument("--tune-seed", type=int, default=0, help="seed of the tuning runs and sampler (default: "
                                                            "%(default)s)")
    s.add_argument("--write-presets", action="store_true",
                   help="with --tune: store the selections as the methods' presets (gentleclip/presets.json)")
    s.add_argument("--no-presets", action="store_true",
                   help="use every method's registered default instead of its preset (still early-stopped)")
    s.add_argument("--objective", action="append", default=[], metavar="KEY=VALUE",
                   help="set an objective option or term weight for every method, after its preset or selection "
                        "(repeatable; values read as YAML), e.g. --objective clip_unpaired_negatives=true; a "
                        "controlled variation, so it goes with neither --tune nor --tune-missing")
    s = parser.add_argument_group("layer selection (STRUCTURE, arXiv 2506.16895: align the layers most alike across "
                                  "the modalities)")
    s.add_argument("--layers-a", default=None,
                   help="candidate layers of the A encoder, e.g. 2,3,last (protein: ESM-2 layers; images: backbone "
                        "stages; 'last' = the encoder's usual output); each run picks one on its own training pairs")
    s.add_argument("--layers-b", default=None,
                   help="candidate layers of the B (text) encoder: transformer hidden states, e.g. 2,4,last")
    s.add_argument("--layer-measure", choices=("mutual_knn", "cka"), default="mutual_knn",
                   help="similarity of a pair of layers on the training pairs (default: %(default)s)")
    e = parser.add_argument_group("end-to-end training (fine-tune the encoders from raw items)")
    e.add_argument("--finetune-a", default="frozen",
                   help="what of the A encoder trains: frozen (default: heads over cached features), all, or lastK "
                        "(its last K blocks, e.g. last1)")
    e.add_argument("--finetune-b", default="frozen", help="the same for the B (text) encoder, e.g. last2")
    e.add_argument("--encoder-lr-ratio", type=float, default=0.01,
                   help="the encoders' learning rate as a fraction of the heads' (default: %(default)s, as the "
                        "official Set-CLIP code)")
    e.add_argument("--num-workers", type=int, default=0,
                   help="DataLoader worker processes that decode and tokenise the raw items (default: %(default)s)")
    e.add_argument("--amp", action="store_true", help="autocast: bf16 on CPU, fp16 on CUDA")
    e.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute the encoders' activations in the backward pass (less memory; transformers models)")


@dataclass
class GridSpec:
    """The checked grid options of a benchmark (see :func:`check_grid_arguments`)."""

    methods: list
    ratios: list[float]
    seeds: list[int]
    tune_ratios: list[float]
    train: "TrainConfig"
    finetune: "FinetuneConfig | None" = None


def objective_overrides(texts: list[str]) -> dict[str, Any]:
    """``["clip_unpaired_negatives=true", "sdd=0"]`` -> ``{"clip_unpaired_negatives": True, "sdd": 0}``."""
    from gentleclip.app.config import ConfigError, parse_override

    out = {}
    for text in texts:
        try:
            key, value = parse_override(text)
        except ConfigError as exc:
            raise ValueError(str(exc).replace("--set", "--objective")) from None
        if len(key) != 1:
            raise ValueError(f"--objective {text!r}: expected an option of the objective, e.g. sdd=0.5")
        out[key[0]] = value
    return out


def methods_of(names: str) -> list:
    """The registered methods of a comma-separated list of names."""
    from gentleclip.methods import get_method

    return [get_method(m.strip()) for m in names.split(",") if m.strip()]


def check_grid_arguments(args: "argparse.Namespace") -> GridSpec:
    """Check every grid option before any feature is computed; a ``ValueError`` names the bad one."""
    from gentleclip.methods import with_config

    methods = methods_of(args.methods)
    if not methods:
        raise ValueError("--methods: no method named")
    objective = objective_overrides(getattr(args, "objective", []))
    if objective and (args.tune or args.tune_missing):
        raise ValueError("--objective varies the selected configurations; it goes with neither --tune nor "
                         "--tune-missing")
    for m in methods:
        try:
            with_config(m, objective)
        except ValueError as exc:
            raise ValueError(f"--objective: {exc}") from None
    if getattr(args, "quick", False):
        if args.tune or args.tune_missing:
            raise ValueError("--quick runs the presets as they are; it goes with neither --tune nor --tune-missing")
        args.seeds, args.ratios = "0", "0,0.05"
        if args.out == getattr(args, "default_out", None):
            args.out = args.out + "-quick"
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
    if args.write_presets and not (args.tune or args.tune_missing):
        raise ValueError("--write-presets needs --tune or --tune-missing (it stores what they select)")
    if args.tune_missing and (args.tune or args.no_presets):
        raise ValueError("--tune-missing tunes the methods without a preset: it goes with neither --tune nor "
                         "--no-presets")
    from gentleclip.io import check_output_dir

    check_output_dir(args.out, getattr(args, "overwrite", False))
    if args.device not in ("auto", "cpu") and args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: no CUDA GPU is available here; use --device cpu")
    train = default_train_config(args.steps, args.batch_size, args.lr, args.device, args.eval_every, args.patience)
    from dataclasses import replace as dc_replace

    from gentleclip.finetune import FinetuneConfig

    try:
        finetune = FinetuneConfig(a=args.finetune_a, b=args.finetune_b,
                                  gradient_checkpointing=args.gradient_checkpointing)
        train = dc_replace(train, encoder_lr_ratio=args.encoder_lr_ratio, num_workers=args.num_workers,
                           amp=bool(args.amp))
    except ValueError as exc:
        raise ValueError(f"--finetune-a / --finetune-b / --encoder-lr-ratio / --num-workers: {exc}") from None
    if finetune.active and (args.layers_a or args.layers_b):
        raise ValueError("--layers-a/--layers-b choose among cached layers of frozen encoders; they do not go with "
                         "--finetune-a/--finetune-b")
    return GridSpec(methods, ratios, parse_int_list(args.seeds), tune_ratios, train,
                    finetune if finetune.active else None)


def resolve_configs(task: AlignmentTask, spec: GridSpec, args: "argparse.Namespace", head: HeadConfig,
                    end_to_end: "EndToEnd | None" = None) -> tuple[list, dict[str, dict[str, Any]], dict[str, Any]]:
    """Each method's configuration for the grid: re-selected (``--tune``), its preset, or its default.

    Returns ``(methods, train_overrides, record)``; ``record[method]`` says where the configuration
    came from (written to ``config.json``).
    """
    import shlex
    import sys

    from gentleclip.app.tune import tune_method, write_presets
    from gentleclip.methods import ablation_config, preset, with_config

    methods, overrides, record, tuned, chosen = [], {}, {}, [], {}
    for m in spec.methods:
        if m.ablation_of:
            methods.append(m)  # configured below, from the configuration its base method runs with
            continue
        if not m.tunable:
            methods.append(m)
            record[m.name] = {"source": "fixed recipe (not tuned; early stopping on validation only)"}
            continue
        if args.tune or (args.tune_missing and preset(task.name, m.name) is None):
            sel = tune_method(task, m, spec.tune_ratios, args.trials, spec.train, head, args.out,
                              seed=args.tune_seed, selection=args.selection, end_to_end=end_to_end)
            tuned.append(sel)
            cfg, source = sel["best"], f"tuned here: {args.trials} trials (selection/{m.name}.json)"
        else:
            cfg = None if args.no_presets else preset(task.name, m.name)
            source = "preset (gentleclip/presets.json)" if cfg else "registered default (no preset for this task)"
        if cfg:
            m = with_config(m, cfg.get("objective"), cfg.get("pipeline"))
            overrides[m.name] = dict(cfg.get("train", {}))
        methods.append(m)
        chosen[m.name] = (cfg, source)
        record[m.name] = {"source": source, **({"selected": cfg} if cfg else {})}
    for i, m in enumerate(methods):
        if not m.ablation_of:
            continue
        if m.ablation_of in chosen:
            base_cfg, base_source = chosen[m.ablation_of]
        elif args.tune:
            raise ValueError(f"--tune with the ablation {m.name!r}: add its base method {m.ablation_of!r} to "
                             "--methods, so that the ablation runs with what validation selects for it")
        else:
            base_cfg = None if args.no_presets else preset(task.name, m.ablation_of)
            base_source = "preset (gentleclip/presets.json)" if base_cfg else "registered default"
        cfg = ablation_config(m, base_cfg)
        methods[i] = with_config(m, cfg["objective"], cfg.get("pipeline"))
        overrides[m.name] = dict(cfg.get("train", {}))
        record[m.name] = {"source": f"ablation: the configuration of {m.ablation_of!r} ({base_source}) with "
                                    f"{', '.join(m.ablates)} off; not tuned on its own", "selected": cfg}
    objective = objective_overrides(getattr(args, "objective", []))
    if objective:
        methods = [with_config(m, objective) for m in methods]
        for m in methods:
            record[m.name] = {**record[m.name], "objective_overrides": objective}
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
    towers: "tuple[Any, Any] | None" = None,
) -> "Results":
    """Run the grid named by ``args`` (see :func:`add_grid_arguments`) and write every output.

    With ``--finetune-a`` / ``--finetune-b`` the task holds raw items and ``towers`` are the encoders'
    towers: every run fine-tunes its own copy of them (:class:`~gentleclip.finetune.EndToEnd`).

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

    from gentleclip.app.report import compact_tables, make_meta, plot_metric_vs_ratio
    from gentleclip.io import atomic_write_json

    t0 = time.perf_counter()
    spec = spec or check_grid_arguments(args)
    head_config = head_config or HeadConfig()
    from gentleclip.io import claim_output_dir

    out = claim_output_dir(args.out, getattr(args, "overwrite", False))
    end_to_end = None
    if spec.finetune is not None:
        from gentleclip.finetune import EndToEnd

        if towers is None:
            raise ValueError("--finetune-a/--finetune-b: this benchmark gave no encoder towers")
        end_to_end = EndToEnd(towers, spec.finetune)
        for m in spec.methods:  # before any tuning or run
            check_end_to_end(m)
    methods, overrides, sources = resolve_configs(task, spec, args, head_config, end_to_end)
    candidates = task if isinstance(task, LayerCandidates) else None
    ref = task if candidates is None else candidates.reference
    config = {
        "task": ref.name, "dataset": ref.dataset, "encoders": ref.encoders,
        **({} if candidates is None else {"layer_selection": {
            "measure": candidates.measure, "k": candidates.k, "max_pairs": candidates.max_pairs,
            "layers_a": candidates.layers("a"), "layers_b": candidates.layers("b"),
            "chosen": "per run, on its own training pairs (run.json: layers)"}}),
        "n_train_items": int(len(ref.train_a)), "views": [int(ref.train_a.shape[1]), int(ref.train_b.shape[1])],
        "n_extra_unpaired_b": 0 if ref.extra_unpaired_b is None else int(len(ref.extra_unpaired_b)),
        "data": ref.info,
        "protocol": {"selection": args.selection, "validation": None if ref.validation is None else
                     {"metric": ref.validation.metric, "source": ref.validation.source},
                     "budget_val_fraction": BUDGET_VAL_FRACTION if args.selection == "budget" else None,
                     "pairs_per_step": f"min(pairs given, {spec.train.batch_size})",
                     "unpaired_per_step": f"{spec.train.batch_size} on top, for methods that read unpaired rows",
                     "steps": spec.train.max_steps, "eval_every": spec.train.eval_every,
                     "patience": spec.train.patience, "tune": "missing presets" if args.tune_missing else
                     bool(args.tune), "trials_per_method": args.trials if args.tune or args.tune_missing else None,
                     "tune_ratios": spec.tune_ratios if args.tune or args.tune_missing else None},
        "pipelines": {m.name: m.pipeline.options() for m in methods if m.pipeline is not None},
        "finetune": None if spec.finetune is None else spec.finetune.to_dict(),
        "methods": {m.name: {"description": m.description, "reference": m.reference, "uses": m.uses,
                             "objective": m.objective.to_dict(), "train_overrides": overrides.get(m.name, {}),
                             "configuration": sources[m.name]} for m in methods},
        "ratios": spec.ratios, "seeds": spec.seeds, "train": spec.train.to_dict(), "head": asdict(head_config),
        **(extra_config or {}),
    }
    atomic_write_json(out / "config.json", config, indent=2)
    meta = make_meta(encoders=ref.encoders, seeds=spec.seeds, extra={"task": ref.name})
    results = run_grid(task, methods, spec.ratios, spec.seeds, spec.train, out, head_config=head_config, meta=meta,
                       selection=args.selection, train_overrides=overrides, end_to_end=end_to_end)
    runs = []
    for m in methods:
        cfg = replace_train(spec.train, overrides.get(m.name, {}))
        for r in spec.ratios:
            for seed in spec.seeds:
                run_task = ref if candidates is None else candidates.choose_for(r, seed, args.selection)[0]
                run_dir = run_dir_of(out, run_task, m, r, seed, cfg, head_config, args.selection, end_to_end)
                info = json.loads((run_dir / "run.json").read_text())
                runs.append({k: info.get(k) for k in RUN_SUMMARY_FIELDS})
                if seed == spec.seeds[0] and (run_dir / "joint_space.png").exists():
                    (out / "joint_space").mkdir(exist_ok=True)
                    shutil.copyfile(run_dir / "joint_space.png", out / "joint_space" / f"{m.name}_ratio={r:g}.png")
    atomic_write_json(out / "runs.json", runs)
    atomic_write_json(out / "chance.json", {"seeds": spec.seeds, "dim": head_config.out_dim,
                                            "what": CHANCE_DOC, "rows": chance_levels(ref, head_config.out_dim,
                                                                                      spec.seeds)}, indent=1)
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


CHANCE_DOC = ("every metric of the task's evaluation for a joint space that carries no information: each item "
              "and prompt embedded as an independent standard Gaussian vector; mean over the seeds")


def chance_levels(task: AlignmentTask, dim: int, seeds: list[int]) -> list[dict[str, Any]]:
    """Chance level of each metric ``task.evaluate`` reports, measured as :data:`CHANCE_DOC` says.

    Returns rows ``{"task", "dataset", "metric", "value"}`` (value: the mean over ``seeds``).
    """
    import numpy as np

    sums: dict[tuple[str, str, str], list[float]] = {}
    for seed in seeds:
        rng = np.random.default_rng([seed, 7741])

        def noise(x: Any) -> np.ndarray:
            return rng.standard_normal((len(x), dim)).astype(np.float32)

        for row in task.evaluate(noise, noise):
            sums.setdefault((row["task"], row["dataset"], row["metric"]), []).append(float(row["value"]))
    return [{"task": t, "dataset": d, "metric": m, "value": float(np.mean(v))} for (t, d, m), v in sums.items()]


#: Fields of ``run.json`` collected into a benchmark's ``runs.json``.
RUN_SUMMARY_FIELDS = ("method", "pairing_ratio", "seed", "trained", "n_paired", "n_unpaired_a", "n_unpaired_b",
                      "pairs_per_step", "unpaired_a_per_step", "unpaired_b_per_step", "items_per_step",
                      "max_steps", "steps", "pairs_seen", "unpaired_seen", "best_step", "best_val",
                      "early_stopped", "lr", "selection", "wall_time_s")


def replace_train(config: "TrainConfig", overrides: dict[str, Any]) -> "TrainConfig":
    """``config`` with the given fields replaced (a method's selected learning rate, say)."""
    from dataclasses import replace as dc_replace

    return dc_replace(config, **overrides) if overrides else config

