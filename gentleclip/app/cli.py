"""The ``gentleclip`` command line: ``embed``, ``train``, ``evaluate``, ``report``.

Examples::

    gentleclip embed --domain protein --max-train 2000                 # cache SCL2205 features
    gentleclip train -c protein.yaml --set train.max_steps=200 --out runs/protein
    gentleclip train --domain protein --method gentle --ratio 0.05 --steps 300 --out runs/protein
    gentleclip evaluate runs/protein                                   # results.json, results.csv, table.md
    gentleclip report runs/ --out report/                              # merged tables + plots

Errors a user can fix (a wrong option, a missing file, an invalid config) are reported as one line
on stderr with exit code 2; ``--debug`` (before the subcommand) shows the traceback instead.
Heavy libraries are imported only when a subcommand runs, so ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Sequence

from gentleclip.domain import available_domains, get_domain, imported_domains, resolve_errors

__all__ = ["main", "build_parser"]

PROG = "gentleclip"

_EPILOG_CONFIG = """\
config file (YAML or JSON; every key optional, defaults shown by --print-config):
  domain: protein            # protein | remote_sensing
  task: scl2205              # protein: scl2205 | uniprot; remote_sensing: rsicd
  data_dir: null             # UniProt files / FASTA+table, or the folder holding rsicd/
  encoder: kmer              # protein: kmer, kmer3-h1024, esm2_t6_8M_UR50D, a .pt; images: efficientnet_lite0, ...
  text_encoder: null         # null = offline all-MiniLM-L6-v2; or a local model folder
  method: gentle
  pairing_ratio: 0.05
  seed: 0
  max_train: 2000
  head: {out_dim: 256, hidden_dim: 512, n_blocks: 1, dropout: 0.1}
  train: {max_steps: 300, batch_size: 256, lr: 0.001}
  domain_options: {}         # extra ProteinAdapter / RemoteSensingAdapter arguments
  task_options: {}           # extra task-builder arguments (e.g. max_extra_text: 500)
  out: runs/protein
precedence: defaults < config file < flags < --set KEY=VALUE"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class UserError(Exception):
    """An error the user can fix, reported as one line."""


class _Formatter(argparse.HelpFormatter):
    """Wraps prose paragraphs but keeps indented blocks (examples, config) as written; fills
    ``{methods}`` in help strings with the method registry, only when help is shown."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        out = []
        for para in text.split("\n\n"):
            lines = para.splitlines()
            if len(lines) > 1 or para.startswith(" "):
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(textwrap.fill(para, width, initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "{methods}" in text:
            from gentleclip.methods import available_methods  # imports torch: only for --help of train

            text = text.replace("{methods}", ", ".join(available_methods()))
        if "{domains}" in text:
            text = text.replace("{domains}", ", ".join(available_domains()))
        for key in ("tasks", "data_dir", "encoder"):
            if "{" + key + "}" in text:
                text = text.replace("{" + key + "}", _domain_help(key))
        return text


def _domain_help(key: str) -> str:
    """One help text per registered domain (``"<name>: ...; <name>: ..."``)."""
    parts = []
    for name in available_domains():
        domain = get_domain(name)
        parts.append(f"{name}: {', '.join(domain.tasks) if key == 'tasks' else domain.help.get(key, '')}")
    return "; ".join(parts)


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and encoders (override the config file)")
    g.add_argument("-c", "--config", metavar="FILE", help="run configuration, YAML or JSON")
    g.add_argument("--domain", help="a registered domain: {domains} (default: the one that declares itself default)")
    g.add_argument("--task", help="the domain's task: {tasks}")
    g.add_argument("--data-dir", metavar="DIR", help="the domain's data: {data_dir}")
    g.add_argument("--encoder", metavar="SPEC", help="A-side encoder: {encoder}")
    g.add_argument("--text-encoder", metavar="SPEC",
                   help="B-side text encoder: a local transformers folder or hub id (default: the offline "
                        "all-MiniLM-L6-v2)")
    g.add_argument("--cache-dir", metavar="DIR",
                   help="feature cache (default: $GENTLECLIP_CACHE or ~/.cache/gentleclip/features)")
    g.add_argument("--max-train", type=int, metavar="N", help="use a seeded subset of N training items")
    g.add_argument("--max-test", type=int, metavar="N", help="use a seeded subset of N evaluation items (where the "
                   "task allows it)")
    g.add_argument("--views", type=int, metavar="V", dest="n_views", help="views per training item (default: 2)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override any config key, dotted for sections (train.max_steps=200, head.out_dim=128, "
                        "objective.sdd=0.3, objective.clip_unpaired_negatives=false, domain_options.image_threads=1); "
                        "values are read as YAML; repeatable")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``gentleclip`` command (all subcommands)."""
    parser = _Parser(
        prog=PROG,
        description="Align two modalities with few pairs (Gentle-CLIP / Set-CLIP): cache features, train projection "
                    "heads, evaluate and report.",
        epilog="Run 'gentleclip COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parser.set_defaults(_subparsers=sub.choices)

    fmt = _Formatter
    p = sub.add_parser(
        "embed", help="compute and cache the frozen-encoder features of a domain dataset",
        description="Compute (or find) the cached frozen-encoder features of a domain's task -- training items, "
                    "evaluation items, prompts -- and print where they are and their shapes [N, views, dim]. "
                    "A later train or evaluate with the same settings reads them from the cache.",
        epilog="examples:\n  gentleclip embed --domain protein --max-train 2000\n"
               "  gentleclip embed --domain remote_sensing --data-dir ../shared/data/remote_sensing --max-train 500",
        formatter_class=fmt)
    _add_data_options(p)
    p.add_argument("--json", action="store_true", help="print the list of arrays as JSON")

    p = sub.add_parser(
        "train", help="train one model from a config (+ overrides) and save it",
        description="Train the projection heads of one method at one pairing ratio and save them with "
                    "save_pretrained into --out (config.json with the run configuration and the encoder recipes, "
                    "model.safetensors with both heads). Rerunning the same command resumes from the last "
                    "checkpoint in --out/train (a finished run is not redone).",
        epilog="examples:\n  gentleclip train --domain protein --max-train 2000 --ratio 0.05 --steps 300 --out "
               "runs/protein\n"
               f"  gentleclip train -c protein.yaml --set train.lr=3e-4 --out runs/protein-lr3e-4\n\n{_EPILOG_CONFIG}",
        formatter_class=fmt)
    _add_data_options(p)
    g = p.add_argument_group("method and training (override the config file)")
    g.add_argument("--method", help="alignment method (default: gentle); one of: {methods}")
    g.add_argument("--ratio", type=float, dest="pairing_ratio", metavar="R",
                   help="pairing ratio: fraction of the training items whose pair is known (default: 0.05)")
    g.add_argument("--seed", type=int, help="seed of the pairing split, the heads and the batches (default: 0)")
    g.add_argument("--steps", type=int, metavar="N",
                   help="step budget (train.max_steps; default: 300, the benchmarks'); validation picks the best "
                        "checkpoint and stops early (train.eval_every=25, train.patience=4)")
    g.add_argument("--batch-size", type=int, metavar="N",
                   help="pairs per step; methods that read unpaired rows get as many unpaired rows on top "
                        "(train.batch_size; default: 256)")
    g.add_argument("--selection", choices=("val", "budget"),
                   help="validation data for early stopping: val (the task's validation split, default) or budget "
                        "(20%% of the given pairs)")
    g.add_argument("--lr", type=float, help="learning rate of the heads (train.lr; default: 0.001)")
    g.add_argument("--finetune-a", metavar="WHAT",
                   help="train the A encoder end-to-end from raw items: all, or lastK (its last K blocks, e.g. "
                        "last1); default frozen (cached features). Encoders learn at lr x train.encoder_lr_ratio "
                        "(1/100)")
    g.add_argument("--finetune-b", metavar="WHAT", help="the same for the B (text) encoder, e.g. last2")
    g.add_argument("--device", help="cpu, cuda or auto (train.device; default: auto)")
    g.add_argument("-o", "--out", metavar="DIR", help="output folder (or out: in the config)")
    g.add_argument("--restart", action="store_true", help="ignore a checkpoint in --out and train from scratch")
    g.add_argument("--overwrite", action="store_true",
                   help="write into --out even when it holds files gentleclip did not write (refused otherwise)")
    g.add_argument("--evaluate", action="store_true", help="evaluate right after training (as 'gentleclip evaluate')")
    g.add_argument("--print-config", action="store_true", help="print the resolved configuration as YAML and exit")

    p = sub.add_parser(
        "evaluate", help="score a trained model folder on its domain task",
        description="Score a model folder written by 'gentleclip train' on its domain task (the settings saved with "
                    "the model), print the metrics and write results.json, results.csv and table.md.",
        epilog="examples:\n  gentleclip evaluate runs/protein\n"
               "  gentleclip evaluate runs/rs --data-dir /data/remote_sensing --out results/rs",
        formatter_class=fmt)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by gentleclip train")
    p.add_argument("-o", "--out", metavar="DIR", help="where to write the metrics (default: MODEL_DIR)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into --out even when it holds files gentleclip did not write (refused otherwise)")
    p.add_argument("--data-dir", metavar="DIR", help="the data folder, when it moved since training")
    p.add_argument("--cache-dir", metavar="DIR", help="feature cache folder (default: the one used in training)")
    p.add_argument("--max-test", type=int, metavar="N", help="score a seeded subset of N evaluation items (where the "
                   "task allows it)")
    p.add_argument("--json", action="store_true", help="print the result rows as JSON instead of a table")

    p = sub.add_parser(
        "report", help="merge result folders into tables (Markdown/CSV/JSON) and plots",
        description="Merge the results.json of one or several folders (each folder is searched recursively) into "
                    "one table: printed as Markdown, and with --out written as results.json, results.csv, table.md "
                    "and <metric>_vs_ratio.png plots (rows = methods, columns = pairing ratio x metric, "
                    "mean +/- std over seeds).",
        epilog="examples:\n  gentleclip report runs/ --out report/\n"
               "  gentleclip report runs/a runs/b --out report/ --plot zeroshot_top1,nmi",
        formatter_class=fmt)
    p.add_argument("paths", nargs="+", metavar="PATH", help="result folders or results.json / results.csv files")
    p.add_argument("-o", "--out", metavar="DIR", help="write tables and plots here (default: only print the table)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into --out even when it holds files gentleclip did not write (refused otherwise)")
    p.add_argument("--plot", metavar="METRICS",
                   help="comma-separated metrics to plot against the pairing ratio (default: the headline metrics "
                        "present; 'none' for no plots)")
    p.add_argument("--on-duplicate", choices=("error", "first", "last"), default="error",
                   help="a measurement found in several sources: error (default), or keep the first / last")
    return parser


# ---------------------------------------------------------------------------- commands
def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_config(args: argparse.Namespace, **extra: Any) -> Any:
    from gentleclip.app.config import load_run_config

    settings = {k: getattr(args, k, None) for k in ("domain", "task", "data_dir", "encoder", "text_encoder",
                                                     "cache_dir", "max_train", "max_test", "n_views")}
    settings.update(extra)
    return load_run_config(args.config, overrides=args.overrides, **settings)


def _cmd_embed(args: argparse.Namespace) -> int:
    from gentleclip.app.runner import embed_run

    cfg = _run_config(args)
    arrays, task = embed_run(cfg, log=_log)
    if args.json:
        import json

        print(json.dumps([{"description": a.description, "shape": list(a.shape), "encoder": a.encoder,
                           "path": str(a.path)} for a in arrays], indent=1))
        return 0
    width = max((len(a.description) for a in arrays), default=10)
    print(f"{'array':<{width}}  {'shape [N, views, dim]':<22}  path")
    for a in arrays:
        print(f"{a.description:<{width}}  {str(list(a.shape)):<22}  {a.path}")
    print(f"task {task.name} ({task.dataset}): train_a {list(task.train_a.shape)}, train_b {list(task.train_b.shape)}"
          + ("" if task.extra_unpaired_b is None else f", extra unpaired B {list(task.extra_unpaired_b.shape)}"))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from gentleclip.app.runner import evaluate_run, train_run

    train = {k: v for k, v in (("max_steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr),
                               ("device", args.device)) if v is not None}
    finetune = {k: v for k, v in (("a", args.finetune_a), ("b", args.finetune_b)) if v is not None}
    cfg = _run_config(args, method=args.method, pairing_ratio=args.pairing_ratio, seed=args.seed, out=args.out,
                      train=train or None, selection=args.selection, finetune=finetune or None)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    run = train_run(cfg, restart=args.restart, log=_log, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 reports and evaluates
        return 0
    print(f"model saved in {run.out}")
    if args.evaluate:
        results = evaluate_run(run.out, log=_log, task=run.task)
        print(results.to_markdown())
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from gentleclip.app.runner import evaluate_run

    results = evaluate_run(args.model_dir, out=args.out, log=_log, data_dir=args.data_dir, cache_dir=args.cache_dir,
                           max_test=args.max_test, overwrite=args.overwrite)
    if args.json:
        import json

        print(json.dumps(results.rows, indent=1))
    else:
        print(results.to_markdown())
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from gentleclip.app.runner import report_run

    plots = None
    if args.plot is not None:
        plots = [] if args.plot.strip().lower() == "none" else [m.strip() for m in args.plot.split(",") if m.strip()]
    results, written = report_run(args.paths, out=args.out, plots=plots, on_duplicate=args.on_duplicate, log=_log,
                                  overwrite=args.overwrite)
    print(results.to_markdown())
    if args.out is None:
        _log("(pass --out DIR to write results.json, results.csv, table.md and plots)")
    else:
        for path in written:
            _log(f"wrote {path}")
    return 0


_COMMANDS = {"embed": _cmd_embed, "train": _cmd_train, "evaluate": _cmd_evaluate, "report": _cmd_report}


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the user can fix this" (reported in one line)."""
    errors: list[type[BaseException]] = [ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                                         PermissionError, UserError]
    try:
        from gentleclip.train import NonFiniteLossError

        errors.append(NonFiniteLossError)
    except ImportError:  # pragma: no cover
        pass
    for domain in imported_domains():
        errors += resolve_errors(domain.user_errors)
    return tuple(errors)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    first = text.splitlines()[0].strip()
    return first + (" (more with --debug)" if len(text.splitlines()) > 1 else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gentleclip`` console script; returns the exit code."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        (args._subparsers.get(args.command) or parser).error(f"unrecognized arguments: {' '.join(extras)}")
    if args.command is None:
        parser.error(f"choose a command: {', '.join(_COMMANDS)}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return _guarded(lambda: _COMMANDS[args.command](args), f"{PROG} {args.command}", args.debug)


def _guarded(fn: Callable[[], int], prog: str, debug: bool) -> int:
    """``fn()``'s exit code; an error of the user's (bad options, bad or missing data, missing weights)
    is one line on stderr and exit code 2 (re-raised with ``debug``); Ctrl-C is exit code 130."""
    try:
        return fn()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug or not isinstance(exc, user_errors()):
            raise
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2


def run_script(main_fn: Callable[[], int], prog: str) -> None:
    """Run a script's ``main()`` as the console script runs a command (see :func:`_guarded`);
    ``--debug`` on the command line is taken off ``sys.argv`` and shows the traceback instead."""
    debug = "--debug" in sys.argv[1:]
    sys.argv[1:] = [a for a in sys.argv[1:] if a != "--debug"]
    sys.exit(_guarded(main_fn, prog, debug))


if __name__ == "__main__":  # python -m gentleclip.app.cli
    sys.exit(main())
