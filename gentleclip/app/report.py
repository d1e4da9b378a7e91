"""Results of a benchmark: tidy rows, tables (JSON / CSV / Markdown) and plots.

A :class:`Results` holds one row per measurement,
``{"task", "dataset", "method", "pairing_ratio", "seed", "metric", "value"}``, plus a ``meta``
dict (see :func:`make_meta`). :meth:`Results.write` produces, in one folder:

* ``results.json``: ``{"meta": {...}, "rows": [...]}`` (DESIGN.md "Results format");
* ``results.csv``: the same rows, one per line, columns in the order above;
* ``table.md``: derived from the rows: one table per ``(task, dataset)``, one line per method,
  one column per (pairing ratio, metric), cells ``mean ± std`` over seeds (sample std; the mean
  alone when there is one seed), the best cell of each column in **bold** (on the displayed
  value, so visually equal cells are all bold). "Best" is the highest value, except for metrics
  matched by :data:`LOWER_IS_BETTER` (substring match), where it is the lowest.

Plots use matplotlib's object API (``matplotlib.figure.Figure``, Agg canvas), so they never
change the global backend of a notebook or open windows.
"""
from __future__ import annotations

import csv
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from gentleclip.io import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

ROW_KEYS: tuple[str, ...] = ("task", "dataset", "method", "pairing_ratio", "seed", "metric", "value")
"""Columns of a results row, in file order."""

_KEY_COLUMNS = ROW_KEYS[:-1]
_GROUP_COLUMNS = ("task", "dataset", "method", "pairing_ratio", "metric")

LOWER_IS_BETTER: frozenset[str] = frozenset(
    {
        "median_rank",  # retrieval: 1 is perfect
        "mean_rank",
        "gap_centroid_distance",  # modality gap: 0 = no gap
        "modality_classifier_acc",  # 50 % = modalities indistinguishable
        "modality_nmi",  # joint clusters that split by modality
        "uniformity",  # Wang-Isola: more negative = more uniform
        "loss",
    }
)
"""Substrings of metric names for which lower values are better (all others: higher is better)."""

_STANDARD_META = ("command", "date", "git_commit", "machine", "encoders", "seeds")


def is_lower_better(metric: str, lower_is_better: Iterable[str] | None = None) -> bool:
    """True when ``metric`` contains one of the substrings of ``lower_is_better``
    (default :data:`LOWER_IS_BETTER`)."""
    patterns = LOWER_IS_BETTER if lower_is_better is None else lower_is_better
    return any(p in metric for p in patterns)


# --------------------------------------------------------------------------------------------
# meta


def git_commit(repo_dir: str | os.PathLike | None = None) -> str:
    """``git rev-parse HEAD`` of the repository holding ``repo_dir`` (default: this package), or
    ``"unknown"`` when git or the repository is unavailable."""
    cwd = Path(repo_dir) if repo_dir is not None else Path(__file__).resolve().parent
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and commit else "unknown"


def machine_info() -> dict[str, Any]:
    """Platform, Python, CPU count, torch version and threads, and CUDA device name (None without a GPU)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["cuda_device_count"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:  # pragma: no cover - torch is a dependency
        info["torch"] = None
        info["cuda_device"] = None
    return info


def make_meta(
    command: str | Sequence[str] | None = None,
    encoders: Mapping[str, str] | None = None,
    seeds: Iterable[int] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``meta`` block of ``results.json``.

    Args:
        command: the command line (a string, or an argv list that is shell-quoted);
            default: this process's ``sys.argv``.
        encoders: encoder name/identity per role, e.g. ``{"a": "esm2_t12_35M", "b": "minilm"}``.
        seeds: the seeds of the run.
        extra: more keys (must not clash with the standard ones).

    Returns:
        ``{"command", "date" (ISO 8601, UTC), "git_commit", "machine", "encoders", "seeds", **extra}``.
    """
    if command is None:
        command = shlex.join(sys.argv)
    elif not isinstance(command, str):
        command = shlex.join([str(c) for c in command])
    meta: dict[str, Any] = {
        "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": machine_info(),
        "encoders": {str(k): str(v) for k, v in (encoders or {}).items()},
        "seeds": [int(s) for s in (seeds or [])],
    }
    for key, value in (extra or {}).items():
        if key in meta:
            raise ValueError(f"make_meta: extra key {key!r} clashes with a standard meta key")
        meta[key] = value
    return meta


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    raise TypeError(f"meta: value of type {type(obj).__name__} is not JSON-serialisable: {obj!r}")


def _check_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"results row: {field} must be a non-empty string, got {value!r}")
    return value


def _check_number(value: Any, field: str, allow_none: bool) -> float | None:
    if value is None or (allow_none and isinstance(value, float) and math.isnan(value)):
        if allow_none:
            return None
        raise ValueError(f"results row: {field} is missing")
    if hasattr(value, "item") and callable(value.item):  # numpy scalar, 0-dim tensor
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"results row: {field} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"results row: {field} must be finite, got {value!r}")
    return value


def _check_seed(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"results row: seed must be an integer or None, got {value!r}")
    return value


class Results:
    """Tidy benchmark results: one row per (task, dataset, method, pairing ratio, seed, metric).

    Args:
        meta: the ``meta`` block of ``results.json`` (see :func:`make_meta`); None = ``{}``.
    """

    def __init__(self, meta: dict[str, Any] | None = None) -> None:
        if meta is not None and not isinstance(meta, Mapping):
            raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
        self.meta: dict[str, Any] = dict(meta or {})
        self._rows: list[dict[str, Any]] = []
        self._index: dict[tuple, int] = {}

    # -- building --------------------------------------------------------------------------

    def add(
        self,
        task: str,
        dataset: str,
        method: str,
        pairing_ratio: float | None,
        seed: int | None,
        metric: str,
        value: float,
    ) -> None:
        """Append one measurement. ``pairing_ratio`` None marks a ratio-independent baseline.

        Raises ``ValueError`` on empty names, non-finite values, or a row whose
        (task, dataset, method, pairing_ratio, seed, metric) is already present.
        """
        row = {
            "task": _check_name(task, "task"),
            "dataset": _check_name(dataset, "dataset"),
            "method": _check_name(method, "method"),
            "pairing_ratio": _check_number(pairing_ratio, "pairing_ratio", allow_none=True),
            "seed": _check_seed(seed),
            "metric": _check_name(metric, "metric"),
            "value": _check_number(value, f"value of metric {metric!r}", allow_none=False),
        }
        if row["pairing_ratio"] is not None and row["pairing_ratio"] < 0:
            raise ValueError(f"results row: pairing_ratio must be >= 0, got {row['pairing_ratio']}")
        key = tuple(row[k] for k in _KEY_COLUMNS)
        if key in self._index:
            raise ValueError(
                f"results row: duplicate measurement {dict(zip(_KEY_COLUMNS, key))} "
                f"(already recorded with value {self._rows[self._index[key]]['value']})"
            )
        self._index[key] = len(self._rows)
        self._rows.append(row)

    def extend(self, rows: Iterable[Mapping[str, Any]] | Mapping[str, Any], **common: Any) -> None:
        """Append many rows; ``common`` fills the fields the rows leave out.

        ``rows`` is either an iterable of row dicts (e.g. ``task.evaluate(...)`` output, holding
        some of the row keys) or a metric -> value mapping (the output of an evaluator), e.g.
        ``results.extend(retrieval_metrics(...), task="retrieval", dataset="rsicd",
        method="gentle", pairing_ratio=0.1, seed=0)``. A field given both in a row and in
        ``common`` with different values is an error.
        """
        unknown = set(common) - set(ROW_KEYS)
        if unknown:
            raise ValueError(f"extend: unknown fields {sorted(unknown)}; expected some of {list(ROW_KEYS)}")
        if isinstance(rows, Mapping):
            rows = [{"metric": m, "value": v} for m, v in rows.items()]
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ValueError(f"extend: row {i} is a {type(row).__name__}, expected a dict")
            extra = set(row) - set(ROW_KEYS)
            if extra:
                raise ValueError(f"extend: row {i} has unknown fields {sorted(extra)}; expected {list(ROW_KEYS)}")
            merged = dict(common)
            for k, v in row.items():
                if k in common and common[k] != v:
                    raise ValueError(f"extend: row {i} sets {k}={v!r} but the common value is {common[k]!r}")
                merged[k] = v
            missing = [k for k in ROW_KEYS if k not in merged]
            if missing:
                raise ValueError(f"extend: row {i} lacks {missing} (give them in the row or as keyword arguments)")
            self.add(**{k: merged[k] for k in ROW_KEYS})

    # -- views -----------------------------------------------------------------------------

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Copies of the rows, in insertion order."""
        return [dict(r) for r in self._rows]

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"Results({len(self._rows)} rows, meta keys {sorted(self.meta)})"

    def to_dataframe(self) -> "pd.DataFrame":
        """The rows as a pandas DataFrame with columns :data:`ROW_KEYS`."""
        import pandas as pd

        df = pd.DataFrame(self._rows, columns=list(ROW_KEYS))
        df["pairing_ratio"] = df["pairing_ratio"].astype("float64")
        df["seed"] = df["seed"].astype("Int64")
        df["value"] = df["value"].astype("float64")
        return df

    def summary(self) -> "pd.DataFrame":
        """Mean, sample std (ddof=1; NaN for a single seed) and count over seeds.

        Columns: task, dataset, method, pairing_ratio, metric, mean, std, n; groups in order of
        first appearance (rows with ``pairing_ratio`` None form their own group).
        """
        import pandas as pd

        df = self.to_dataframe()
        if df.empty:
            return pd.DataFrame(columns=[*_GROUP_COLUMNS, "mean", "std", "n"])
        grouped = df.groupby(list(_GROUP_COLUMNS), dropna=False, sort=False)["value"]
        out = grouped.agg(mean="mean", std="std", n="count").reset_index()
        out["n"] = out["n"].astype(int)
        return out

    # -- Markdown --------------------------------------------------------------------------

    def to_markdown(self, lower_is_better: Iterable[str] | None = None) -> str:
        """``table.md``: one table per (task, dataset), methods x (pairing ratio, metric)."""
        patterns = LOWER_IS_BETTER if lower_is_better is None else frozenset(lower_is_better)
        lines = ["# Results", ""]
        for key in ("command", "date", "git_commit"):
            if key in self.meta:
                value = self.meta[key]
                lines.append(f"- {key}: `{value}`" if key != "date" else f"- {key}: {value}")
        if self.meta.get("seeds"):
            lines.append(f"- seeds: {', '.join(str(s) for s in self.meta['seeds'])}")
        lines += [
            "",
            "Cells: mean ± sample std over seeds (the mean alone for a single seed); "
            "**bold**: best of each column; ↑ higher is better, ↓ lower is better; r = pairing ratio.",
        ]
        summary = self.summary()
        if summary.empty:
            return "\n".join(lines + ["", "_No results._", ""])
        for (task, dataset), block in summary.groupby(["task", "dataset"], sort=False):
            lines += ["", f"## {task} / {dataset}", ""]
            lines += _markdown_block(block, patterns)
        return "\n".join(lines) + "\n"

    # -- files -----------------------------------------------------------------------------

    def write(self, out_dir: str | os.PathLike, lower_is_better: Iterable[str] | None = None) -> dict[str, Path]:
        """Write ``results.json``, ``results.csv`` and ``table.md`` into ``out_dir`` (created).

        Each file is written atomically. Returns ``{"json": path, "csv": path, "markdown": path}``.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"meta": self.meta, "rows": self._rows}, indent=2, default=_json_default,
                             allow_nan=False)
        paths = {"json": out / "results.json", "csv": out / "results.csv", "markdown": out / "table.md"}
        atomic_write_text(paths["json"], payload + "\n")
        atomic_write_text(paths["csv"], self._csv_text())
        atomic_write_text(paths["markdown"], self.to_markdown(lower_is_better))
        return paths

    def _csv_text(self) -> str:
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(ROW_KEYS)
        for row in self._rows:
            writer.writerow(["" if row[k] is None else (repr(row[k]) if isinstance(row[k], float) else row[k])
                             for k in ROW_KEYS])
        return buf.getvalue()

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], meta: dict[str, Any] | None = None) -> "Results":
        """A Results holding ``rows`` (each with all of :data:`ROW_KEYS`)."""
        res = cls(meta)
        res.extend(rows)
        return res

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Results":
        """Read a ``results.json`` (or the folder holding it) or a ``results.csv`` (meta = {})."""
        p = Path(path)
        if p.is_dir():
            p = p / "results.json"
        if not p.is_file():
            raise FileNotFoundError(f"no results file at {p}")
        if p.suffix == ".csv":
            return cls.from_rows(_read_csv_rows(p))
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict) or "rows" not in data or not isinstance(data["rows"], list):
            raise ValueError(f"{p}: expected an object {{'meta': ..., 'rows': [...]}}")
        try:
            return cls.from_rows(data["rows"], data.get("meta") or {})
        except ValueError as exc:
            raise ValueError(f"{p}: {exc}") from exc

    @classmethod
    def merge(
        cls,
        paths: Iterable[str | os.PathLike],
        on_duplicate: Literal["error", "first", "last"] = "error",
    ) -> "Results":
        """Combine several result folders/files into one.

        The merged ``meta`` is ``{"merged_from": [{"path", "meta"}, ...]}`` plus every meta key
        whose value is the same in all sources (e.g. ``encoders``); ``seeds`` is the sorted union.
        A measurement present in several sources is an error (``on_duplicate="error"``) or
        taken from the first / last source that has it.
        """
        if on_duplicate not in ("error", "first", "last"):
            raise ValueError(f"on_duplicate: expected 'error', 'first' or 'last', got {on_duplicate!r}")
        sources = [(str(p), cls.load(p)) for p in paths]
        if not sources:
            raise ValueError("merge: no result paths given")
        metas = [r.meta for _, r in sources]
        meta: dict[str, Any] = {}
        for key in metas[0]:
            if key != "seeds" and all(key in m and m[key] == metas[0][key] for m in metas):
                meta[key] = metas[0][key]
        seeds = sorted({int(s) for m in metas for s in (m.get("seeds") or [])})
        if seeds:
            meta["seeds"] = seeds
        meta["merged_from"] = [{"path": p, "meta": r.meta} for p, r in sources]
        chosen: dict[tuple, tuple[str, dict[str, Any]]] = {}
        for path, res in sources:
            for row in res._rows:
                key = tuple(row[k] for k in _KEY_COLUMNS)
                if key in chosen:
                    if on_duplicate == "error":
                        raise ValueError(
                            f"merge: measurement {dict(zip(_KEY_COLUMNS, key))} is in both {chosen[key][0]} "
                            f"and {path}; pass on_duplicate='first' or 'last' to choose"
                        )
                    if on_duplicate == "first":
                        continue
                chosen[key] = (path, row)
        return cls.from_rows([row for _, row in chosen.values()], meta)


def compact_tables(results: "Results | str | os.PathLike", metrics: Iterable[str], skip_missing: bool = False) -> str:
    """Compact Markdown tables: for each metric, rows = methods, columns = pairing ratios, cells =
    mean ± std over seeds (what the benchmarks print and the README shows).

    A metric may be qualified as ``task/dataset/metric`` when several blocks report it. A metric
    with no rows is an error, or left out with ``skip_missing=True``.
    """
    summary = _as_results(results).summary()
    out: list[str] = []
    for spec in metrics:
        parts = spec.split("/")
        sel = summary[summary["metric"] == parts[-1]]
        if len(parts) == 3:
            sel = sel[(sel["task"] == parts[0]) & (sel["dataset"] == parts[1])]
        if sel.empty:
            if skip_missing:
                continue
            raise ValueError(f"no rows for {spec!r}")
        blocks = sel.groupby(["task", "dataset"], sort=False)
        if len(blocks) > 1:
            raise ValueError(f"{spec!r} occurs in several blocks {list(blocks.groups)}; qualify it as "
                             "task/dataset/metric")
        (task, dataset), block = next(iter(blocks))
        ratios = sorted(block["pairing_ratio"].unique())
        arrow = "↓" if is_lower_better(parts[-1]) else "↑"
        out.append(f"**{parts[-1]}** {arrow} ({task} / {dataset})\n")
        out.append("| method | " + " | ".join(f"{r:g}" for r in ratios) + " |")
        out.append("|---|" + "---:|" * len(ratios))
        for method, rows in block.groupby("method", sort=False):
            cells = []
            for r in ratios:
                row = rows[rows["pairing_ratio"] == r]
                if row.empty:
                    cells.append("")
                    continue
                mean, std = float(row["mean"].iloc[0]), row["std"].iloc[0]
                cells.append(f"{mean:.3g} ± {float(std):.2g}" if std == std else f"{mean:.3g}")
            out.append(f"| {method} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _read_csv_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or set(reader.fieldnames) != set(ROW_KEYS):
            raise ValueError(f"{path}: expected CSV columns {list(ROW_KEYS)}, got {reader.fieldnames}")
        for line, rec in enumerate(reader, start=2):
            try:
                rows.append(
                    {
                        "task": rec["task"],
                        "dataset": rec["dataset"],
                        "method": rec["method"],
                        "pairing_ratio": float(rec["pairing_ratio"]) if rec["pairing_ratio"] != "" else None,
                        "seed": int(rec["seed"]) if rec["seed"] != "" else None,
                        "metric": rec["metric"],
                        "value": float(rec["value"]),
                    }
                )
            except ValueError as exc:
                raise ValueError(f"{path}, line {line}: {exc}") from exc
    return rows


def _ratio_label(ratio: float | None) -> str:
    return "r=n/a" if ratio is None or (isinstance(ratio, float) and math.isnan(ratio)) else f"r={ratio:g}"


def _decimals(values: Iterable[float]) -> int:
    vals = [abs(v) for v in values if v is not None and math.isfinite(v)]
    top = max(vals, default=0.0)
    return 1 if top >= 10 else 2 if top >= 1 else 3


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _markdown_block(block: "pd.DataFrame", patterns: frozenset[str]) -> list[str]:
    methods = list(dict.fromkeys(block["method"]))
    metrics = list(dict.fromkeys(block["metric"]))
    ratio_values = {None if _isna(r) else float(r) for r in block["pairing_ratio"]}
    ratios = sorted((r for r in ratio_values if r is not None)) + ([None] if None in ratio_values else [])
    cells: dict[tuple, tuple[float, float, int]] = {}
    for rec in block.itertuples(index=False):
        ratio = None if _isna(rec.pairing_ratio) else float(rec.pairing_ratio)
        cells[(rec.method, ratio, rec.metric)] = (float(rec.mean), float(rec.std), int(rec.n))
    columns = [(r, m) for r in ratios for m in metrics if any((meth, r, m) in cells for meth in methods)]
    header = ["method"] + [
        f"{_md_escape(m)} {'↓' if is_lower_better(m, patterns) else '↑'} ({_ratio_label(r)})" for r, m in columns
    ]
    table = {meth: [_md_escape(meth)] for meth in methods}
    for r, m in columns:
        present = {meth: cells[(meth, r, m)] for meth in methods if (meth, r, m) in cells}
        dec = _decimals(v[0] for v in present.values())
        rounded = {meth: round(v[0], dec) for meth, v in present.items()}
        best = (min if is_lower_better(m, patterns) else max)(rounded.values())
        for meth in methods:
            if meth not in present:
                table[meth].append("–")
                continue
            mean, std, n = present[meth]
            text = f"{mean:.{dec}f}" if n < 2 or not math.isfinite(std) else f"{mean:.{dec}f} ± {std:.{dec}f}"
            if len(present) > 1 and rounded[meth] == best:
                text = f"**{text}**"
            table[meth].append(text)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * len(columns)) + "|"]
    lines += ["| " + " | ".join(table[meth]) + " |" for meth in methods]
    return lines


def _isna(value: Any) -> bool:
    """True for None, float NaN and pandas' NA (the missing markers of a DataFrame column)."""
    if value is None:
        return True
    try:
        return bool(value != value) or str(value) == "<NA>"  # NaN is the only value unequal to itself
    except TypeError:  # pd.NA != pd.NA is ambiguous
        return True


# --------------------------------------------------------------------------------------------
# plots


def _as_results(results: "Results | pd.DataFrame | str | os.PathLike") -> "Results":
    if isinstance(results, Results):
        return results
    if isinstance(results, (str, os.PathLike)):
        return Results.load(results)
    if hasattr(results, "to_dict"):  # DataFrame of rows
        records = results.to_dict("records")
        for rec in records:
            for k in ("pairing_ratio", "seed"):
                if k in rec and _isna(rec[k]):
                    rec[k] = None
        return Results.from_rows(records)
    raise ValueError(f"results: expected a Results, a DataFrame of rows or a path, got {type(results).__name__}")


def plot_metric_vs_ratio(
    results: "Results | pd.DataFrame | str | os.PathLike",
    metric: str,
    out_path: str | os.PathLike,
    task: str | None = None,
    dataset: str | None = None,
    methods: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """One line per method: ``metric`` (mean over seeds, error bars = sample std) vs pairing ratio.

    The x axis is logarithmic; when ratio 0 is present it is symmetric-log (linear between 0 and
    the smallest positive ratio), so 0 has a place. Rows with ``pairing_ratio`` None
    (ratio-independent baselines) are drawn as dashed horizontal lines. ``task``/``dataset``
    select the block; they are required when the metric occurs in several. Returns ``out_path``.
    """
    summary = _as_results(results).summary()
    sel = summary[summary["metric"] == metric]
    if task is not None:
        sel = sel[sel["task"] == task]
    if dataset is not None:
        sel = sel[sel["dataset"] == dataset]
    if methods is not None:
        sel = sel[sel["method"].isin(list(methods))]
    if sel.empty:
        available = sorted(set(summary["metric"]))
        raise ValueError(
            f"plot_metric_vs_ratio: no rows for metric={metric!r}, task={task!r}, dataset={dataset!r}; "
            f"metrics available: {available}"
        )
    blocks = list(dict.fromkeys(zip(sel["task"], sel["dataset"])))
    if len(blocks) > 1:
        raise ValueError(f"plot_metric_vs_ratio: metric {metric!r} occurs in {blocks}; choose one with task=/dataset=")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    ax = fig.subplots()
    ratios = sorted({float(r) for r in sel["pairing_ratio"] if not _isna(r)})
    positive = [r for r in ratios if r > 0]
    order = list(methods) if methods is not None else list(dict.fromkeys(sel["method"]))
    for i, method in enumerate(order):
        part = sel[sel["method"] == method]
        if part.empty:
            continue
        color = f"C{i % 10}"
        base = part[part["pairing_ratio"].isna()]
        for rec in base.itertuples(index=False):
            ax.axhline(rec.mean, color=color, linestyle="--", label=f"{method} (no pairs used)")
        line = part[part["pairing_ratio"].notna()].sort_values("pairing_ratio")
        if not line.empty:
            ax.errorbar(
                line["pairing_ratio"].to_numpy(float),
                line["mean"].to_numpy(float),
                yerr=np.nan_to_num(line["std"].to_numpy(float), nan=0.0),
                marker="o",
                capsize=3,
                color=color,
                label=method,
            )
    if positive and 0.0 in ratios:
        ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_xlim(-0.3 * min(positive), max(positive) * 1.5)
    elif positive and len(positive) > 1:
        ax.set_xscale("log")
        ax.set_xlim(min(positive) / 1.5, max(positive) * 1.5)
    if ratios:
        ax.set_xticks(ratios)
        ax.set_xticklabels([f"{r:g}" for r in ratios], rotation=45 if len(ratios) > 6 else 0)
        ax.minorticks_off()
    ax.set_xlabel("pairing ratio")
    ax.set_ylabel(f"{metric} ({'lower' if is_lower_better(metric) else 'higher'} is better)")
    t, d = blocks[0]
    ax.set_title(title if title is not None else f"{t} / {d}: {metric}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def plot_joint_space(
    emb_a: Any,
    emb_b: Any,
    out_path: str | os.PathLike,
    labels: Any | None = None,
    method: Literal["pca", "tsne", "umap"] = "pca",
    names: tuple[str, str] = ("A", "B"),
    seed: int = 0,
    max_points: int = 2000,
    title: str | None = None,
) -> Path:
    """2-D projection of both modalities (A: circles, B: triangles) with their centroids joined,
    which makes the modality gap visible.

    Args:
        emb_a, emb_b: ``[N_a, d]``, ``[N_b, d]`` joint-space embeddings (L2-normalised here).
        out_path: image file to write (format from the suffix, e.g. ``.png``).
        labels: optional classes to colour by: ``N_a + N_b`` labels (A rows first), or ``N_a``
            labels shared by both when the rows are paired (``N_a == N_b``).
        method: ``"pca"`` (scikit-learn, fitted on both modalities together), ``"tsne"``
            (scikit-learn) or ``"umap"`` (needs the ``umap-learn`` package).
        names: legend names of the two modalities.
        seed: subsampling / projection seed.
        max_points: at most this many points per modality are drawn (random subset, ``seed``).
        title: figure title; default names the method and the centroid gap.

    Returns:
        ``out_path``.
    """
    from gentleclip.evaluate._checks import as_embeddings, l2_normalize, to_numpy

    a = l2_normalize(as_embeddings(emb_a, "emb_a", dtype=np.float64), "emb_a")
    b = l2_normalize(as_embeddings(emb_b, "emb_b", dtype=np.float64), "emb_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"emb_a has dim {a.shape[1]} but emb_b has dim {b.shape[1]}; they must share one space")
    if a.shape[1] < 2:
        raise ValueError(f"plot_joint_space: need at least 2 dimensions, got {a.shape[1]}")
    if method not in ("pca", "tsne", "umap"):
        raise ValueError(f"method: expected 'pca', 'tsne' or 'umap', got {method!r}")
    lab_a = lab_b = None
    if labels is not None:
        lab = to_numpy(labels)
        if lab.ndim != 1:
            raise ValueError(f"labels: expected a 1-D vector, got shape {tuple(lab.shape)}")
        if len(lab) == len(a) + len(b):
            lab_a, lab_b = lab[: len(a)], lab[len(a):]
        elif len(lab) == len(a) == len(b):
            lab_a = lab_b = lab
        else:
            raise ValueError(
                f"labels: {len(lab)} entries; expected N_a + N_b = {len(a) + len(b)} (A rows first) "
                f"or N_a = N_b = {len(a)} shared labels"
            )
    gap = float(np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)))
    rng = np.random.default_rng(seed)
    idx_a = np.sort(rng.choice(len(a), size=min(len(a), max_points), replace=False))
    idx_b = np.sort(rng.choice(len(b), size=min(len(b), max_points), replace=False))
    a, b = a[idx_a], b[idx_b]
    if lab_a is not None:
        lab_a, lab_b = lab_a[idx_a], lab_b[idx_b]
    joint = np.concatenate([a, b])
    xy = _project_2d(joint, method, seed)
    xa, xb = xy[: len(a)], xy[len(a):]

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(6.4, 5.6), dpi=120)
    ax = fig.subplots()
    handles: list[Any] = []
    if lab_a is None:
        ax.scatter(xa[:, 0], xa[:, 1], s=12, marker="o", alpha=0.6, color="C0")
        ax.scatter(xb[:, 0], xb[:, 1], s=14, marker="^", alpha=0.6, color="C1")
        handles += [
            Line2D([], [], marker="o", linestyle="", color="C0", label=names[0]),
            Line2D([], [], marker="^", linestyle="", color="C1", label=names[1]),
        ]
    else:
        classes = list(dict.fromkeys(np.concatenate([lab_a, lab_b]).tolist()))
        try:
            classes = sorted(classes)
        except TypeError:  # mixed label types: keep order of appearance
            pass
        palette = _class_colors(len(classes))
        code = {c: palette[i] for i, c in enumerate(classes)}
        ax.scatter(xa[:, 0], xa[:, 1], c=[code[c] for c in lab_a.tolist()], s=12, marker="o", alpha=0.6)
        ax.scatter(xb[:, 0], xb[:, 1], c=[code[c] for c in lab_b.tolist()], s=14, marker="^", alpha=0.6)
        handles += [
            Line2D([], [], marker="o", linestyle="", color="grey", label=names[0]),
            Line2D([], [], marker="^", linestyle="", color="grey", label=names[1]),
        ]
        if len(classes) <= 10:
            handles += [Line2D([], [], marker="s", linestyle="", color=code[c], label=str(c)) for c in classes]
    ca_xy, cb_xy = xa.mean(axis=0), xb.mean(axis=0)
    ax.annotate("", xy=cb_xy, xytext=ca_xy, arrowprops={"arrowstyle": "<->", "color": "black", "lw": 1.5})
    ax.scatter(*ca_xy, marker="X", s=160, color="black", edgecolor="white", zorder=5)
    ax.scatter(*cb_xy, marker="P", s=160, color="black", edgecolor="white", zorder=5)
    handles += [
        Line2D([], [], marker="X", linestyle="", color="black", markersize=9, label=f"{names[0]} centroid"),
        Line2D([], [], marker="P", linestyle="", color="black", markersize=9, label=f"{names[1]} centroid"),
    ]
    ax.legend(handles=handles, fontsize="small", loc="best")
    ax.set_title(title if title is not None else f"{method.upper()} of the joint space; centroid gap = {gap:.3f}")
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def _class_colors(n: int) -> list[tuple[float, ...]]:
    """``n`` distinct RGBA colours: tab10 / tab20 for few classes, viridis beyond."""
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(n)]
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(i / (n - 1)) for i in range(n)]


def _project_2d(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        if len(x) < 4:
            raise ValueError(f"t-SNE needs at least 4 points, got {len(x)}")
        perplexity = float(min(30.0, (len(x) - 1) / 3))
        # exact gradients are faster than Barnes-Hut on small sets and need O(n^2) memory only
        algorithm = "exact" if len(x) <= 1000 else "barnes_hut"
        tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed, method=algorithm)
        return tsne.fit_transform(x)
    try:
        import umap  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ImportError(
            "plot_joint_space(method='umap') needs the optional package umap-learn "
            "(pip install umap-learn); use method='pca' or 'tsne' instead"
        ) from exc
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
