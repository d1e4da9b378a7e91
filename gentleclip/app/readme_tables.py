"""Result tables of a Markdown file, regenerated from the benchmark folders so they cannot drift.

A generated block names what it shows in its opening comment; everything up to the closing comment
is rewritten by :func:`regenerate` (``python benchmarks/summarize.py``)::

    <!-- table: ratios results=protein metric=zeroshot_top1 methods=clip,gentle -->
    ...
    <!-- /table -->

``results=`` is a folder under the results root (``benchmarks/results``) holding ``results.json``
(as the benchmarks write it); ``results=a,b`` joins several folders of one task (for example methods
run later in a folder of their own), and a measurement found in two of them is an error. The kinds:

- ``ratios metric=M [methods=a,b] [ratios=0,0.05]``: rows methods, columns pairing ratios.
- ``metrics metrics=M1,M2 ratio=R [methods=...]``: rows methods, columns metrics at one ratio.
- ``zero metrics=M1,M2 [methods=...]``: ratio 0, with the chance row of the first folder's ``chance.json``.
- ``variants metric=M method=NAME [ratios=...]``: rows the folders (one controlled variation each: a
  different ``--objective`` or data option), columns pairing ratios, for one method.
- ``provenance``: the command, commit, encoders, seeds, date, machine and wall time of each folder.
- ``finetune metrics=M1,M2``: frozen vs fine-tuned, from ``run_finetune.py`` folders (``comparison.json``;
  ``results=a,b`` joins several: other seeds, or other methods run on their own), with steps/s and peak memory.
- ``presets task=T [methods=...]``: what validation selected per method (``gentleclip/presets.json``;
  ``results=`` is not read).

A metric may be qualified as ``task/dataset/metric`` when several blocks report it. Cells are mean ±
sample std over seeds. In every column the best mean is **bold** and a mean within one std of the
best (the best cell's std) is *italic*; the direction (↑/↓) comes from
:func:`gentleclip.app.report.is_lower_better`.
"""
from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

BLOCK = re.compile(r"(<!-- table: (?P<spec>[^\n]*?) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)

LEGEND = ("mean ± std over seeds (one seed: its value alone); per column **bold** = best mean, *italic* = "
          "within one std (of the best) of it")


def regenerate(text: str, root: str | Path) -> str:
    """``text`` with every generated block rewritten from the folders under ``root``."""
    root = Path(root)

    def fill(match: re.Match) -> str:
        return match.group(1) + render(match.group("spec"), root) + match.group(4)

    return BLOCK.sub(fill, text)


def stale_blocks(text: str, root: str | Path) -> list[str]:
    """The specs of the blocks of ``text`` whose content differs from what :func:`regenerate` writes."""
    root = Path(root)
    return [m.group("spec") for m in BLOCK.finditer(text) if m.group("body") != render(m.group("spec"), root)]


def render(spec: str, root: Path) -> str:
    """The Markdown of one block (ends with a newline)."""
    kind, *pairs = shlex.split(spec)
    opts = dict(p.split("=", 1) for p in pairs)
    if kind == "presets":
        return _presets(**opts)
    folders = [root / f for f in opts.pop("results").split(",")]
    if kind == "finetune":
        return _finetune(folders, **opts)
    renderers = {"ratios": _ratios, "metrics": _metrics, "zero": _zero, "provenance": _provenance,
                 "variants": _variants}
    if kind not in renderers:
        raise ValueError(f"table {spec!r}: unknown kind {kind!r} (known: {', '.join(renderers)}, finetune, "
                         "presets)")
    return renderers[kind](folders, **opts)


# ------------------------------------------------------------------------------------------ data

def _summary(folders: list[Path]) -> Any:
    from gentleclip.app.report import Results

    paths = [folder / "results.json" for folder in folders]
    for path in paths:
        if not path.is_file():
            raise ValueError(f"{path}: no results.json (run the benchmark that writes this folder)")
    return Results.merge(paths).summary()


def _label(spec: str) -> str:
    """Column title of a metric: its name, with its dataset when the spec names one."""
    parts = spec.split("/")
    return parts[-1] if len(parts) < 3 else f"{parts[-1]} ({parts[1]})"


def _select(summary: Any, metric: str) -> tuple[Any, str, str, str]:
    parts = metric.split("/")
    sel = summary[summary["metric"] == parts[-1]]
    if len(parts) == 3:
        sel = sel[(sel["task"] == parts[0]) & (sel["dataset"] == parts[1])]
    blocks = sorted({(t, d) for t, d in zip(sel["task"], sel["dataset"])})
    if len(blocks) != 1:
        raise ValueError(f"metric {metric!r}: {'no rows' if not blocks else f'in several blocks {blocks}'}")
    return sel, blocks[0][0], blocks[0][1], parts[-1]


def _names(value: str | None, available: list[str]) -> list[str]:
    if value is None:
        return available
    names = [n for n in value.split(",") if n]
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(f"no results for method(s) {missing} (have {available})")
    return names


def _cell(sel: Any, method: str, ratio: float) -> tuple[float, float | None] | None:
    """(mean, sample std) of one cell; the std is None for a single seed (there is no spread to show)."""
    row = sel[(sel["method"] == method) & (sel["pairing_ratio"] == ratio)]
    if row.empty:
        return None
    std = float(row["std"].iloc[0])
    return float(row["mean"].iloc[0]), (None if math.isnan(std) else std)


# ------------------------------------------------------------------------------------------ format

def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _decimals(values: list[float]) -> int:
    top = max((abs(v) for v in values), default=0.0)
    return 1 if top >= 10 else 2 if top >= 1 else 3


def _column(cells: list[tuple[float, float | None] | None], lower: bool) -> list[str]:
    """Formatted cells of one column: the best mean bold, means within the best's std italic (a single
    seed's cell shows its value alone)."""
    present = [c for c in cells if c is not None]
    if not present:
        return ["" for _ in cells]
    d = _decimals([m for m, _ in present])
    best_mean, best_std = (min if lower else max)(present, key=lambda c: c[0])
    out = []
    for c in cells:
        if c is None:
            out.append("")
            continue
        text = _fmt(c[0], d) if c[1] is None else f"{_fmt(c[0], d)} ± {_fmt(c[1], d)}"
        if c[0] == best_mean:
            text = f"**{text}**"
        elif abs(c[0] - best_mean) <= (best_std or 0.0):
            text = f"*{text}*"
        out.append(text)
    return out


def _table(header: list[str], row_names: list[str], columns: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for i, name in enumerate(row_names):
        lines.append(f"| {name} | " + " | ".join(col[i] for col in columns) + " |")
    return lines


def _ratio(r: float) -> str:
    return "0" if r == 0 else f"{100 * r:g} %"


def _ratio_list(sel: Any, ratios: str | None) -> list[float]:
    """The ratios a block names (``ratios=0,0.05``), else every ratio ``sel`` has."""
    return sorted(set(sel["pairing_ratio"])) if ratios is None else [float(r) for r in ratios.split(",")]


# ------------------------------------------------------------------------------------------ kinds

def _ratios(folders: list[Path], metric: str, methods: str | None = None, ratios: str | None = None) -> str:
    from gentleclip.app.report import is_lower_better

    sel, task, dataset, name = _select(_summary(folders), metric)
    names = _names(methods, list(dict.fromkeys(sel["method"])))
    rs = _ratio_list(sel, ratios)
    lower = is_lower_better(name)
    columns = [_column([_cell(sel, m, r) for m in names], lower) for r in rs]
    head = f"**{name}** {'↓' if lower else '↑'} ({task} / {dataset}; {LEGEND})\n"
    return "\n".join([head, *_table(["method", *(_ratio(r) for r in rs)], [f"`{m}`" for m in names], columns), ""])


def _variants(folders: list[Path], metric: str, method: str, ratios: str | None = None) -> str:
    from gentleclip.app.report import is_lower_better

    selected = []
    for folder in folders:
        sel, task, dataset, name = _select(_summary([folder]), metric)
        _names(method, list(dict.fromkeys(sel["method"])))
        selected.append(sel)
    rs = _ratio_list(selected[0], ratios)
    lower = is_lower_better(name)
    columns = [_column([_cell(sel, method, r) for sel in selected], lower) for r in rs]
    reference = _data_settings(_config(folders[0]))
    rows = [f"`{folder.name}`{_variation(folder, method, reference)}" for folder in folders]
    head = f"**{name}** {'↓' if lower else '↑'} of `{method}`, one folder per row ({task} / {dataset}; {LEGEND})\n"
    return "\n".join([head, *_table(["results", *(_ratio(r) for r in rs)], rows, columns), ""])


def _variation(folder: Path, method: str, reference: dict) -> str:
    """`` (sdd=0, extra_text=none, layers_b=2,4,last, ...)``: the folder's ``--objective`` overrides of
    ``method``, the data settings (``config.json`` ``adapter``) where they differ from ``reference`` (the
    first row's), and the candidate layers when each run chose its layers (``--layers-a/--layers-b``)."""
    conf = _config(folder)
    over = conf.get("methods", {}).get(method, {}).get("configuration", {}).get("objective_overrides") or {}
    data = {k: v for k, v in _data_settings(conf).items()
            if k in reference and v != reference[k] and k != "cache_dir"}
    layers = {k: v for k, v in (conf.get("layer_selection") or {}).items()
              if k in ("layers_a", "layers_b") and v != ["last"]}
    parts = [f"{k}={_short(v)}" for k, v in {**over, **data, **layers}.items()]
    return f" ({', '.join(parts)})" if parts else ""


def _data_settings(conf: dict) -> dict:
    """A folder's ``adapter`` settings; with one adapter per candidate layer, the settings they share."""
    adapter = conf.get("adapter", {})
    if isinstance(adapter, list):
        adapter = {k: v for k, v in adapter[0].items() if all(a.get(k) == v for a in adapter)}
    return adapter


def _config(folder: Path) -> dict:
    path = folder / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _metrics(folders: list[Path], metrics: str, ratio: str, methods: str | None = None) -> str:
    from gentleclip.app.report import is_lower_better

    summary = _summary(folders)
    specs = metrics.split(",")
    selected = [_select(summary, s) for s in specs]
    names = _names(methods, list(dict.fromkeys(selected[0][0]["method"])))
    r = float(ratio)
    columns = [_column([_cell(sel, m, r) for m in names], is_lower_better(n)) for sel, _, _, n in selected]
    head = f"At {_ratio(r)} pairs ({LEGEND})\n"
    return "\n".join([head, *_table(_metric_header(specs, selected), [f"`{m}`" for m in names], columns), ""])


def _zero(folders: list[Path], metrics: str, methods: str | None = None) -> str:
    from gentleclip.app.report import is_lower_better

    summary = _summary(folders)
    chance_path = folders[0] / "chance.json"
    if not chance_path.is_file():
        raise ValueError(f"{chance_path}: missing (the benchmarks write it beside results.json)")
    chance = json.loads(chance_path.read_text(encoding="utf-8"))
    specs = metrics.split(",")
    selected = [_select(summary, s) for s in specs]
    names = _names(methods, list(dict.fromkeys(selected[0][0]["method"])))
    columns = []
    for (sel, task, dataset, name) in selected:
        cells = [_cell(sel, m, 0.0) for m in names]
        level = [r["value"] for r in chance["rows"] if (r["task"], r["dataset"], r["metric"]) == (task, dataset, name)]
        if not level:
            raise ValueError(f"{chance_path}: no chance level of {task}/{dataset}/{name}")
        digits = _decimals([c[0] for c in cells if c is not None] or level)
        columns.append(_column(cells, is_lower_better(name)) + [_fmt(level[0], digits)])
    head = f"No pairs at all ({LEGEND}; chance: {chance['what']})\n"
    return "\n".join([head, *_table(_metric_header(specs, selected), [f"`{m}`" for m in names] + ["chance"],
                                     columns), ""])


def _metric_header(specs: list[str], selected: list[tuple[Any, str, str, str]]) -> list[str]:
    from gentleclip.app.report import is_lower_better

    return ["method", *(f"{_label(spec)} {'↓' if is_lower_better(n) else '↑'}"
                        for spec, (_, _, _, n) in zip(specs, selected))]


def _provenance(folders: list[Path]) -> str:
    return "".join(_provenance_line(folder) for folder in folders)


def _provenance_line(folder: Path) -> str:
    from gentleclip.app.report import Results

    meta = Results.load(folder / "results.json").meta
    machine = meta.get("machine", {})
    device = machine.get("cuda_device") or f"CPU, {machine.get('cpu_count')} cores"
    encoders = "; ".join(f"{k}: `{v.split(' | ')[0]}`" for k, v in meta.get("encoders", {}).items())
    wall = meta.get("wall_time_s")
    return (f"Command: `python {meta.get('command')}` (commit {str(meta.get('git_commit'))[:7]}). Encoders: "
            f"{encoders}. Seeds {', '.join(map(str, meta.get('seeds', [])))}. Date {str(meta.get('date'))[:10]}; "
            f"{device}, torch {machine.get('torch')}; wall time "
            f"{'n/a' if wall is None else f'{wall / 60:.1f} min'} (runs already in the folder are read back).\n")


def _finetune(folders: list[Path], metrics: str) -> str:
    from gentleclip.app.report import Results, is_lower_better

    comps = []
    for folder in folders:
        path = folder / "comparison.json"
        if not path.is_file():
            raise ValueError(f"{path}: missing (python benchmarks/run_finetune.py writes it)")
        comps.append(json.loads(path.read_text(encoding="utf-8")))
    c = comps[0]
    if any((o["script"], o["finetune"]) != (c["script"], c["finetune"]) for o in comps):
        raise ValueError(f"finetune table {[str(f) for f in folders]}: the folders ran different scripts or "
                         "fine-tuned different layers")
    settings = list(c["settings"])
    specs = metrics.split(",")
    summaries = {s: Results.merge([f / s / "results.json" for f in folders]).summary() for s in settings}
    selected = {s: [_select(summaries[s], spec) for spec in specs] for s in settings}
    first = selected[settings[0]][0][0]
    methods = list(dict.fromkeys(first["method"]))
    ratio = float(sorted(set(first["pairing_ratio"]))[0])
    rows, speed, memory = [], [], []
    for m in methods:
        for s in settings:
            rows.append(f"`{m}` {s}")
            held = [o["settings"][s] for o in comps if any(r["method"] == m for r in o["settings"][s]["runs"])]
            runs = [r for h in held for r in h["runs"] if r["method"] == m]
            steps, wall = sum(r["steps"] for r in runs), sum(r["wall_time_s"] for r in runs)
            speed.append(f"{steps / wall:.2f}" if wall else "")
            memory.append(f"{max(h['peak_rss_mib'] for h in held) / 1024:.1f}" if held else "")
    columns = []
    for i, spec in enumerate(specs):
        name = selected[settings[0]][i][3]
        cells = [_cell(selected[s][i][0], m, ratio) for m in methods for s in settings]
        columns.append(_column(cells, is_lower_better(name)))
    header = ["run", *_metric_header(specs, selected[settings[0]])[1:], "steps/s", "peak RSS GiB"]
    head = (f"At {_ratio(ratio)} pairs; fine-tuned: A {c['finetune']['a']}, B {c['finetune']['b']} ({c['script']}, "
            f"{len(folders)} folder(s); steps/s counts training, validation and the test evaluation; peak RSS is "
            f"the largest of the benchmark processes that ran the row; {LEGEND})\n")
    return "\n".join([head, *_table(header, rows, [*columns, speed, memory]), ""])


def _presets(task: str, methods: str | None = None) -> str:
    from gentleclip.methods import PRESETS_PATH

    data = json.loads(PRESETS_PATH.read_text(encoding="utf-8")).get(task, {})
    names = _names(methods, list(data))
    lines = ["| method | selected | trials | validation (mean over the tuning ratios) |", "|---|---|---:|---:|"]
    for m in names:
        cfg = data[m]
        parts = [f"{k} {_short(v)}" for k, v in {**cfg.get("objective", {}), **cfg.get("pipeline", {}),
                                                   **cfg.get("train", {})}.items()]
        sel = cfg["selected_by"]
        lines.append(f"| `{m}` | {', '.join(parts)} | {sel['n_trials']} | {sel['mean_val']:.2f} ({sel['metric']}) |")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    if isinstance(value, list):  # a data setting such as extra_text: joined by commas, "none" when empty
        return ",".join(map(str, value)) or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.2g}"
    return str(value)
