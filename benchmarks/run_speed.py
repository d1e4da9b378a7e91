#!/usr/bin/env python
"""Speed benchmark: our code side by side with the simplest correct alternative, in the same run.

Sections (``--only protein,image,loss,train,stream``; all by default):

* ``protein``: ESM-2 sequence embeddings with :class:`domains.protein.ESMEncoder` (token-budget,
  length-sorted batches) against (a) fixed-size batches in file order padded to the longest and
  (b) fair-esm's own token-budget batching (``FastaBatchedDataset.get_batch_indices``), on the
  same SCL2205 sequences, for random-weight ESM-2 8M and 35M architectures (the compute of the
  real models; no weights are needed). All three paths see the same windows of long sequences
  (ESMEncoder splits sequences longer than 1022 residues into overlapping windows; the baselines
  are given the same windows and average them the same way) and must agree to 1e-4.
  Sequences/s, real tokens/s, padding fraction, batches, peak memory (each measurement in a fresh
  subprocess: peak RSS on CPU, ``torch.cuda.max_memory_allocated`` on CUDA).
* ``image``: images/s of the default image encoder (EfficientNet-Lite0, 224 px) through
  :class:`domains.remote_sensing.ImageEncoder` (batched, ``inference_mode``, channels_last)
  against a plain loop (one image at a time, ``no_grad`` only, default memory format), both from
  the JPEG files (decoding included; decoding alone is timed too).
* ``loss``: forward + backward of CLIP, SDD, MK-MMD and their weighted sum (1.0/0.6/0.2) at batch
  64, 256, 1024 against per-sample Python-loop implementations of the same formulas
  (``benchmarks/speed_reference.py``); values (and gradients) checked equal in float64.
* ``train``: steps/s of :class:`gentleclip.train.Trainer` over memmapped cached features against
  a plain loop (SemiPairedLoader + heads + Objective + AdamW), and epoch time and peak memory as
  the unpaired pools grow 1x, 4x, 16x (expected: time linear in the pool size, memory flat).
* ``stream``: a generated FASTA of 10,000 / 100,000 / 1,000,000 sequences read with
  :class:`domains.protein.FastaSequences` (an index of record offsets, records read per chunk)
  and k-mer embedded into the feature cache chunk by chunk: wall time and peak anonymous memory,
  which should not grow with the file; against the obvious path (``read_fasta`` then the cache on
  the list of sequences), measured up to ``--stream-baseline-max`` sequences.

Output: ``<out>/speed.md`` and ``<out>/speed.json`` (machine, command, date, every number, every
ratio against its baseline). Timings on a shared or busy machine are noisy: the load average
before and after the run is recorded in the report.

Examples::

    python benchmarks/run_speed.py                       # full sizes (long on a CPU)
    python benchmarks/run_speed.py --quick               # smoke test, a minute or two
    python benchmarks/run_speed.py --only loss,train --device cuda
    python benchmarks/run_speed.py --only protein --n-seqs 500 --esm-archs 8M --threads 1
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
for _p in (str(REPO_ROOT), str(Path(__file__).resolve().parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402
import speed_reference as ref  # noqa: E402
import torch  # noqa: E402

from gentleclip.io import atomic_write_text  # noqa: E402
from gentleclip.progress import progress  # noqa: E402

SECTIONS = ("protein", "image", "loss", "train", "stream")

#: ESM-2 architectures by name: (layers, embedding dim, attention heads). ``LxDxH`` is also accepted.
ESM_ARCHS: dict[str, tuple[int, int, int]] = {
    "8M": (6, 320, 20),
    "35M": (12, 480, 20),
    "150M": (30, 640, 20),
    "650M": (33, 1280, 20),
    "tiny": (2, 64, 4),
}

#: Targets of the issue: speed-up of ours over the named baseline (>= value).
TARGETS = {
    ("protein", "fixed_batches"): 1.5,
    ("protein", "fair_esm_batches"): 1.0,
    ("loss", "per_sample_loop@256"): 20.0,
}

#: Why a loss's speed-up is what it is (shown in the summary).
LOSS_NOTES = {
    "CLIP": "matmul-bound: the loop does the same products as matrix-vector products, one per pair, "
            "so only its Python overhead is saved",
}

AGREE_TOL_EMB = 1e-4
AGREE_TOL_LOSS = 1e-5


# =========================================================================================== config
@dataclass
class SpeedConfig:
    """Everything that determines a speed run (written into ``speed.json``)."""

    device: str = "cpu"
    only: tuple[str, ...] = SECTIONS
    out: str = "benchmarks/results"
    threads: int | None = None
    isolate: bool = True
    seed: int = 0
    min_time: float = 1.0
    repeats: int = 1
    # protein
    n_seqs: int = 2000
    seq_sample: str = "first"  # or "random": a seeded sample of SCL2205 train
    esm_archs: tuple[str, ...] = ("8M", "35M")
    toks_per_batch: int = 4096
    fixed_batch_size: int = 8
    max_residues: int = 1022
    window_overlap: int = 256
    # image
    n_images: int = 256
    image_batch_size: int | None = None  # None: ImageEncoder's default for the device
    image_dir: str | None = None
    image_batch_sweep: tuple[int, ...] = (1, 4, 8, 16, 32)  # the default is left out of its own sweep
    # loss
    loss_batches: tuple[int, ...] = (64, 256, 1024)
    loss_dim: int = 256
    paired_fraction: float = 0.25
    check_max_batch: int = 1024
    # train
    train_batch: int = 256
    n_pairs: int = 512
    pool_base: int = 4096
    pool_scales: tuple[int, ...] = (1, 4, 16)
    dim_a: int = 320
    dim_b: int = 384
    train_steps: int = 100
    work_dir: str | None = None
    # stream
    stream_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    stream_baseline_max: int = 100_000
    stream_chunk: int = 8192
    merge: bool = False

    @classmethod
    def quick(cls, **overrides: Any) -> "SpeedConfig":
        """Small sizes for a smoke test (a minute or two on a laptop CPU)."""
        base = dict(
            n_seqs=24, esm_archs=("8M",), n_images=16, image_batch_size=8, image_batch_sweep=(1,),
            loss_batches=(64, 256),
            train_batch=64, n_pairs=64, pool_base=512, pool_scales=(1, 4), train_steps=20, min_time=0.2,
            stream_sizes=(500, 2000), stream_baseline_max=2000, stream_chunk=256,
        )
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]


# ========================================================================================= helpers
def _set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def _sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _status_kb(field_name: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` (None where there is no procfs)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


class MemorySampler:
    """Peak memory of this process over a block of code.

    CPU: resets the kernel's RSS high-water mark (``/proc/self/clear_refs``), reads ``VmHWM``
    at the end, and samples ``RssAnon`` (anonymous memory: not the file pages of memmaps, which
    the kernel may drop at will) in a background thread. CUDA: ``torch.cuda.max_memory_allocated``.
    Without procfs, falls back to ``resource.getrusage`` (peak since process start).
    """

    def __init__(self, device: str | torch.device = "cpu", interval: float = 0.005) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak_anon_kb = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            anon = _status_kb("RssAnon")
            if anon is not None:
                self.peak_anon_kb = max(self.peak_anon_kb, anon)
            self._stop.wait(self.interval)

    def __enter__(self) -> "MemorySampler":
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self.rss_start_kb = _status_kb("VmRSS")
        self.anon_start_kb = _status_kb("RssAnon")
        self.peak_anon_kb = self.anon_start_kb or 0.0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.cuda_start = torch.cuda.memory_allocated(self.device)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        anon = _status_kb("RssAnon")
        if anon is not None:
            self.peak_anon_kb = max(self.peak_anon_kb, anon)
        hwm = _status_kb("VmHWM") if self._hwm_reset else None
        if hwm is None:
            import resource

            hwm = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # kB on Linux
        self.peak_rss_kb = hwm
        if self.device.type == "cuda":
            self.cuda_peak = torch.cuda.max_memory_allocated(self.device)

    def metrics(self) -> dict[str, float]:
        """``peak_rss_mb`` (whole process), ``peak_rss_delta_mb`` (over the start of the block),
        ``peak_anon_mb`` / ``peak_anon_delta_mb`` (anonymous memory), ``cuda_peak_mb`` on CUDA."""
        mb = 1024.0
        out: dict[str, float] = {"peak_rss_mb": self.peak_rss_kb / mb}
        if self.rss_start_kb is not None:
            out["peak_rss_delta_mb"] = (self.peak_rss_kb - self.rss_start_kb) / mb
        if self.anon_start_kb is not None:
            out["peak_anon_mb"] = self.peak_anon_kb / mb
            out["peak_anon_delta_mb"] = (self.peak_anon_kb - self.anon_start_kb) / mb
        if self.device.type == "cuda":
            out["cuda_peak_mb"] = self.cuda_peak / 2**20
            out["cuda_peak_delta_mb"] = (self.cuda_peak - self.cuda_start) / 2**20
        return out


def time_call(fn: Callable[[], Any], device: str | torch.device = "cpu", min_time: float = 1.0,
              max_reps: int = 50, warmup: int = 1) -> dict[str, float]:
    """Median wall time of ``fn()`` over enough repetitions to fill ``min_time`` seconds.

    The warm-up call is timed too: a call slower than ``min_time`` is repeated once only (and a
    call slower than 5x ``min_time`` is not repeated: its warm-up time is the measurement).
    """
    times: list[float] = []
    t_first = 0.0
    for _ in range(max(warmup, 1)):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        t_first = time.perf_counter() - t0
    if warmup and t_first > 5 * min_time:
        return {"median_s": t_first, "min_s": t_first, "reps": 1, "warm": 0}
    reps = int(min(max_reps, max(1, math.ceil(min_time / max(t_first, 1e-6)))))
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "reps": reps, "warm": 1}


def machine_meta(device: str) -> dict[str, Any]:
    """CPU model, cores, memory, torch version and threads, GPU, load average."""
    try:
        from gentleclip.app.report import machine_info

        info = dict(machine_info())
    except Exception:  # noqa: BLE001 - the report module is optional here
        info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cpu_model"] = cpu or platform.processor() or platform.machine()
    info["logical_cores"] = os.cpu_count()
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["usable_cores"] = os.cpu_count()
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001
        pass
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["device"] = device
    info["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    info["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return info


def git_commit() -> str:
    try:
        from gentleclip.app.report import git_commit as _gc

        return _gc(REPO_ROOT)
    except Exception:  # noqa: BLE001
        return "unknown"


def check_device(device: str) -> str:
    """Return ``device`` or raise ``RuntimeError`` with a clear message when CUDA is asked for but absent."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        built = torch.version.cuda or "none (CPU-only build)"
        raise RuntimeError(
            f"--device cuda was asked for, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, CUDA build: {built}, CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}). Run with --device cpu, or on a machine with a GPU."
        )
    return device


# ========================================================================================== report
@dataclass
class SpeedReport:
    """Tidy rows of measurements, comparisons (ratios against a baseline) and correctness checks."""

    meta: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, task: str, case: str, method: str, metrics: dict[str, Any]) -> None:
        """One row per numeric metric of one measurement."""
        for metric, value in metrics.items():
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                continue
            self.rows.append({"task": task, "case": case, "method": method, "metric": metric, "value": float(value)})

    def value(self, task: str, case: str, method: str, metric: str) -> float | None:
        for r in self.rows:
            if (r["task"], r["case"], r["method"], r["metric"]) == (task, case, method, metric):
                return r["value"]
        return None

    def compare(self, task: str, case: str, metric: str, ours: str, baseline: str, higher_is_better: bool,
                target_key: str | None = None) -> dict[str, Any] | None:
        """Add the ratio ``ours / baseline`` (rates) or ``baseline / ours`` (times): > 1 means ours is faster."""
        a, b = self.value(task, case, ours, metric), self.value(task, case, baseline, metric)
        if a is None or b is None or a <= 0 or b <= 0:
            return None
        ratio = a / b if higher_is_better else b / a
        target = TARGETS.get((task, target_key)) if target_key else None
        row = {"task": task, "case": case, "metric": metric, "ours": ours, "baseline": baseline,
               "ours_value": a, "baseline_value": b, "speedup": ratio, "target": target,
               "met": None if target is None else bool(ratio >= target)}
        self.comparisons.append(row)
        return row

    def check(self, task: str, case: str, name: str, value: float, tolerance: float) -> bool:
        ok = bool(value <= tolerance)
        self.checks.append({"task": task, "case": case, "check": name, "value": float(value),
                            "tolerance": tolerance, "passed": ok})
        return ok

    # -------------------------------------------------------------- writing
    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "config": self.config, "rows": self.rows,
                "comparisons": self.comparisons, "checks": self.checks, "notes": self.notes}

    def write(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "speed.json", "md": out / "speed.md"}
        for key, text in (("json", json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n"),
                          ("md", self.to_markdown())):
            atomic_write_text(paths[key], text)
        return paths

    def to_markdown(self) -> str:
        m = self.meta
        mach = m.get("machine", {})
        lines = ["# Speed benchmark", ""]
        lines += [
            f"- command: `{m.get('command', '')}`",
            f"- date: {m.get('date', '')}; git commit: `{m.get('git_commit', 'unknown')}`",
            f"- machine: {mach.get('cpu_model')} ({mach.get('usable_cores')} usable / {mach.get('logical_cores')} "
            f"logical cores, {mach.get('memory_gb', '?')} GB), torch {mach.get('torch')} "
            f"({mach.get('torch_threads')} threads), device **{mach.get('device')}**"
            + (f" ({mach.get('cuda_device')})" if mach.get("cuda_device") else ""),
            f"- load average (1/5/15 min) at start: {_fmt_load(mach.get('load_average'))}; "
            f"at end: {_fmt_load(m.get('load_average_end'))}",
            f"- wall time of the run: {m.get('wall_s', 0):.0f} s"
            + (" (sections kept from earlier runs say when they were measured)" if self._merged() else ""),
            "",
            "Speed-ups are ours / baseline for rates and baseline / ours for times: > 1 means ours is faster.",
            "",
        ]
        if self.notes:
            lines += ["**Notes**", ""] + [f"- {n}" for n in self.notes] + [""]
        tgt = [c for c in self.comparisons if c["target"] is not None]
        if tgt or self.checks:
            lines += ["## Summary", "", "| task | case | vs | metric | speed-up | target | met | note |",
                      "|---|---|---|---|---:|---:|---|---|"]
            for c in tgt:
                lines.append(f"| {c['task']} | {c['case']} | {c['baseline']} | {c['metric']} | {c['speedup']:.2f}x | "
                             f">= {c['target']:g}x | {'yes' if c['met'] else '**no**'} | {self._note(c)} |")
            failed = [c for c in self.checks if not c["passed"]]
            lines += ["", f"Correctness checks: {len(self.checks) - len(failed)}/{len(self.checks)} passed"
                      + (": failed " + ", ".join(f"{c['task']}/{c['case']}/{c['check']}" for c in failed)
                         if failed else "."), ""]
        for task in SECTIONS:
            render = getattr(self, f"_md_{task}")
            block = render()
            if block:
                sec = self.meta.get("sections", {}).get(task)
                if sec:
                    block[1:1] = ["", f"_Measured {sec.get('date')} by `{sec.get('command')}`; load average "
                                      f"{_fmt_load(sec.get('load_average_start'))} at start, "
                                      f"{_fmt_load(sec.get('load_average_end'))} at end._"]
                lines += block + [""]
        return "\n".join(lines).rstrip() + "\n"

    def _note(self, comparison: dict[str, Any]) -> str:
        """Why a summary ratio is what it is: for a loss its ``LOSS_NOTES`` entry; for protein speed the
        noise-free work ratio (tokens fed) of the same case."""
        if comparison["task"] == "loss":
            return LOSS_NOTES.get(comparison["case"].split("@")[0], "")
        if comparison["task"] == "protein":
            for c in self.comparisons:
                if (c["task"], c["case"], c["baseline"], c["metric"]) == ("protein", comparison["case"],
                                                                          comparison["baseline"], "tokens_fed"):
                    return f"{c['baseline']} feeds {c['speedup']:.2f}x the tokens of ours"
        return ""

    def _merged(self) -> bool:
        return any(sec.get("command") != self.meta.get("command") or sec.get("date") != self.meta.get("date")
                   for sec in self.meta.get("sections", {}).values())

    def _rows_of(self, task: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["task"] == task]

    def _cases(self, task: str) -> list[str]:
        seen: list[str] = []
        for r in self._rows_of(task):
            if r["case"] not in seen:
                seen.append(r["case"])
        return seen

    def _methods(self, task: str, case: str) -> list[str]:
        seen: list[str] = []
        for r in self._rows_of(task):
            if r["case"] == case and r["method"] not in seen:
                seen.append(r["method"])
        return seen

    def _checks_md(self, task: str) -> list[str]:
        out = []
        for c in self.checks:
            if c["task"] == task:
                out.append(f"- {c['case']}: {c['check']} = {c['value']:.3g} (tolerance {c['tolerance']:g}): "
                           f"{'ok' if c['passed'] else '**FAILED**'}")
        return out

    def _md_protein(self) -> list[str]:
        cases = self._cases("protein")
        if not cases:
            return []
        lines = ["## Protein embedding (ESM-2, random weights, same sequences)", "",
                 "(a) = fixed-size batches in file order, padded to the longest; (b) = fair-esm "
                 "`get_batch_indices(toks_per_batch)`. Peak memory: RSS high-water mark of the measuring "
                 "subprocess (CUDA: max allocated), and its growth during the measurement.", ""]
        for case in cases:
            lines += [f"### {case}", "",
                      "| method | s | seqs/s | tokens/s | padding | batches | peak RSS MB | +MB during run | "
                      "speed-up vs (a) | vs (b) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for meth in self._methods("protein", case):
                v = lambda k: self.value("protein", case, meth, k)  # noqa: E731
                sa = self.value("protein", case, "fixed_batches", "seqs_per_s")
                sb = self.value("protein", case, "fair_esm_batches", "seqs_per_s")
                mem = v("cuda_peak_mb") if v("cuda_peak_mb") is not None else v("peak_rss_mb")
                dmem = v("cuda_peak_delta_mb") if v("cuda_peak_delta_mb") is not None else v("peak_rss_delta_mb")
                lines.append(
                    f"| {_label(meth)} | {_f(v('seconds'))} | {_f(v('seqs_per_s'))} | {_f(v('tokens_per_s'))} | "
                    f"{_pct(v('padding_fraction'))} | {_f(v('n_batches'), 0)} | {_f(mem, 0)} | {_f(dmem, 0)} | "
                    f"{_ratio(v('seqs_per_s'), sa)} | {_ratio(v('seqs_per_s'), sb)} |")
            lines.append("")
        work = [c for c in self.comparisons if c["task"] == "protein" and c["metric"] == "tokens_fed"]
        if work:
            lines += ["Work, free of timing noise (tokens fed to the model, padding included; > 1: ours feeds "
                      "fewer):", ""]
            lines += [f"- {c['case']}: {c['baseline']} feeds {c['speedup']:.2f}x the tokens of ours" for c in work]
            lines.append("")
        lines += ["Embedding agreement (max |difference| over all items and dims):", ""] + self._checks_md("protein")
        return lines

    def _md_image(self) -> list[str]:
        cases = self._cases("image")
        if not cases:
            return []
        lines = ["## Image features", ""]
        for case in cases:
            lines += [f"### {case}", "", "| method | s | images/s | peak RSS MB | +MB during run | speed-up vs plain "
                                         "loop |",
                      "|---|---:|---:|---:|---:|---:|"]
            base = self.value("image", case, "plain_loop", "images_per_s")
            for meth in self._methods("image", case):
                v = lambda k: self.value("image", case, meth, k)  # noqa: E731
                mem = v("cuda_peak_mb") if v("cuda_peak_mb") is not None else v("peak_rss_mb")
                dmem = v("cuda_peak_delta_mb") if v("cuda_peak_delta_mb") is not None else v("peak_rss_delta_mb")
                lines.append(f"| {_label(meth)} | {_f(v('seconds'))} | {_f(v('images_per_s'))} | {_f(mem, 0)} | "
                             f"{_f(dmem, 0)} | {_ratio(v('images_per_s'), base) if meth != 'decode_only' else ''} |")
            lines.append("")
        lines += ["Feature agreement:", ""] + self._checks_md("image")
        return lines

    def _md_loss(self) -> list[str]:
        cases = self._cases("loss")
        if not cases:
            return []
        lines = ["## Losses: forward + backward", "",
                 "Ours (vectorised, `gentleclip.losses`) vs a per-sample Python loop of the same formula "
                 "(`benchmarks/speed_reference.py`), float32, median of repeated calls. Value and gradient "
                 "differences are measured in float64.", "",
                 "`plain autograd` is the same loss with `fused=False` (autograd through the plain formula); "
                 "ours on the CPU is the fused kernel of `gentleclip/losses/_fused.py` (the default there).", "",
                 "| loss | batch | ours ms | plain autograd ms | fused speed-up | loop ms | speed-up vs loop | value "
                 "| abs diff (f64) | max grad diff (f64) |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for case in cases:
            loss, batch = case.split("@")
            o = self.value("loss", case, "ours", "fwd_bwd_ms")
            r = self.value("loss", case, "per_sample_loop", "fwd_bwd_ms")
            p = self.value("loss", case, "plain_autograd", "fwd_bwd_ms")
            plain = f"{_f(p)} | {_ratio(p, o)}" if p is not None else "- | -"
            lines.append(f"| {loss} | {batch} | {_f(o)} | {plain} | {_f(r)} | {_ratio(r, o)} | "
                         f"{_f(self.value('loss', case, 'ours', 'value_f64'), sig=6)} | "
                         f"{_e(self.value('loss', case, 'check', 'value_abs_diff'))} | "
                         f"{_e(self.value('loss', case, 'check', 'grad_max_abs_diff'))} |")
        return lines

    def _md_train(self) -> list[str]:
        cases = self._cases("train")
        if not cases:
            return []
        lines = ["## Training over cached features", ""]
        if "steps" in cases:
            lines += ["Steps/s at the first pool size (same steps, same batches). *steps/s* counts the whole run "
                      "(start-up, first step, final checkpoint); *steady* is 1 / median time of one step.", "",
                      "| method | steps | s | steps/s | vs plain loop | median ms/step | steady steps/s | vs plain "
                      "loop |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|"]
            base = self.value("train", "steps", "plain_loop", "steps_per_s")
            base_s = self.value("train", "steps", "plain_loop", "steady_steps_per_s")
            for meth in self._methods("train", "steps"):
                v = lambda k: self.value("train", "steps", meth, k)  # noqa: E731
                lines.append(f"| {_label(meth)} | {_f(v('steps'), 0)} | {_f(v('seconds'))} | {_f(v('steps_per_s'))} | "
                             f"{_ratio(v('steps_per_s'), base)} | {_f(v('median_step_ms'))} | "
                             f"{_f(v('steady_steps_per_s'))} | {_ratio(v('steady_steps_per_s'), base_s)} |")
            lines.append("")
        scale_cases = [c for c in cases if c.startswith("pools")]
        if scale_cases:
            lines += ["One epoch (one pass over the largest pool) with the Trainer as the unpaired pools grow; "
                      "features are memmapped `.npy` files. *time/step* should stay flat (epoch time linear in "
                      "the pool size) and so should anonymous memory (file pages of the memmaps are counted "
                      "in RSS but are reclaimable page cache).", "",
                      "| pools | items | features on disk MB | steps | epoch s | epoch s / steps (ms) | "
                      "median ms/step | vs first | peak RSS MB | peak anon MB | anon vs first |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            first = scale_cases[0]
            f_ms = self.value("train", first, "trainer", "median_step_ms")
            f_anon = self.value("train", first, "trainer", "peak_anon_mb")
            for case in scale_cases:
                v = lambda k: self.value("train", case, "trainer", k)  # noqa: E731
                lines.append(
                    f"| {case.split('=')[1]} | {_f(v('items'), 0)} | {_f(v('disk_mb'), 0)} | {_f(v('steps'), 0)} | "
                    f"{_f(v('seconds'))} | {_f(v('ms_per_step'))} | {_f(v('median_step_ms'))} | "
                    f"{_x(v('median_step_ms'), f_ms)} | {_f(v('peak_rss_mb'), 0)} | {_f(v('peak_anon_mb'), 0)} | "
                    f"{_x(v('peak_anon_mb'), f_anon)} |")
        return lines

    def _md_stream(self) -> list[str]:
        cases = sorted({r["case"] for r in self.rows if r["task"] == "stream"}, key=lambda c: int(c.split("=")[1]))
        if not cases:
            return []
        lines = ["## Streaming a large FASTA into the feature cache", "",
                 "Read and k-mer embedded to the cache; *peak anon MB* is the process's anonymous memory (the "
                 "memmapped features are file pages, written chunk by chunk). Streamed: `FastaSequences`; list: "
                 "`read_fasta` then the cache on the list of sequences.", "",
                 "| sequences | FASTA MB | features MB | method | seconds | seqs/s | peak RSS MB | peak anon MB | "
                 "anon vs smallest |", "|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
        for case in cases:
            for method in ("streamed", "list"):
                v = lambda k: self.value("stream", case, method, k)  # noqa: E731
                if v("n") is None:
                    continue
                growth = self.value("stream", case, f"{method}_growth", "peak_anon_ratio")
                lines.append(f"| {_f(v('n'), 0)} | {_f(v('file_mb'), 0)} | {_f(v('features_mb'), 0)} | {method} | "
                             f"{_f(v('seconds'))} | {_f(v('seqs_per_s'), 0)} | {_f(v('peak_rss_mb'), 0)} | "
                             f"{_f(v('peak_anon_mb'), 0)} | {'' if growth is None else f'{growth:.2f}x'} |")
        return lines


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


_LABELS = {"ours": "**ours**", "fixed_batches": "(a) fixed batches", "fair_esm_batches": "(b) fair-esm batches",
           "plain_loop": "plain loop", "decode_only": "decode + preprocess only",
           "ours_contiguous": "ours without channels_last", "trainer": "**Trainer**"}


def _label(method: str) -> str:
    if method.startswith("ours_bs"):
        return f"ours, batch size {method[len('ours_bs'):]}"
    return _LABELS.get(method, method)


def _f(v: float | None, digits: int | None = None, sig: int | None = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if sig is not None:
        return f"{v:.{sig}g}"
    if digits is None:
        digits = 0 if abs(v) >= 1000 else 1 if abs(v) >= 100 else 2 if abs(v) >= 1 else 3
    return f"{v:,.{digits}f}"


def _e(v: float | None) -> str:
    return "" if v is None else f"{v:.1e}"


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}%"


def _ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None or b <= 0 else f"{a / b:.2f}x"


def _x(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None or b <= 0 else f"{a / b:.2f}"


def _fmt_load(load: Any) -> str:
    return "n/a" if not load else " / ".join(f"{x:.2f}" for x in load)


# ================================================================= subprocess-isolated measurements
def run_measurement(kind: str, spec: dict[str, Any], isolate: bool = True) -> dict[str, Any]:
    """Run measurement ``kind`` with keyword arguments ``spec``, in a fresh subprocess when ``isolate``
    (so that its peak memory is its own), else in this process."""
    fn = _MEASUREMENTS[kind]
    if not isolate:
        return fn(**spec)
    with tempfile.TemporaryDirectory(prefix="gentleclip-speed-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps({"kind": kind, "spec": spec, "out": str(out_path)}, default=_json_default))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", str(spec_path)]
        proc = subprocess.run(cmd, cwd=str(REPO_ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0 or not out_path.is_file():
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-25:])
            raise RuntimeError(f"speed measurement {kind} {json.dumps(spec, default=_json_default)[:300]} failed "
                               f"(exit {proc.returncode}):\n{tail}")
        return json.loads(out_path.read_text())


def _worker_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    result = _MEASUREMENTS[spec["kind"]](**spec["spec"])
    Path(spec["out"]).write_text(json.dumps(result, default=_json_default))
    return 0


def median_run(results: list[dict[str, Any]], rate_key: str) -> dict[str, Any]:
    """The run with the median time among repeated runs of one method, plus ``repeats``,
    ``seconds_min`` and the best rate (``<rate_key>_best``)."""
    ordered = sorted(results, key=lambda r: r["seconds"])
    out = dict(ordered[(len(ordered) - 1) // 2])
    out["repeats"] = len(results)
    out["seconds_min"] = ordered[0]["seconds"]
    out[f"{rate_key}_best"] = ordered[0][rate_key]
    if len(results) > 1:
        for i, r in enumerate(results, start=1):
            out[f"seconds_run{i}"] = r["seconds"]
    return out


# ======================================================================================= protein
def esm_model(arch: str, seed: int = 0) -> tuple[torch.nn.Module, Any]:
    """A random-weight fair-esm ESM-2 of architecture ``arch`` (a name of :data:`ESM_ARCHS` or ``LxDxH``)."""
    import esm

    if arch in ESM_ARCHS:
        layers, dim, heads = ESM_ARCHS[arch]
    else:
        try:
            layers, dim, heads = (int(x) for x in arch.lower().split("x"))
        except ValueError:
            raise ValueError(f"ESM architecture {arch!r}: expected one of {sorted(ESM_ARCHS)} or 'LxDxH' "
                             "(layers x embedding dim x heads)") from None
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    torch.manual_seed(seed)
    model = esm.model.esm2.ESM2(num_layers=layers, embed_dim=dim, attention_heads=heads, alphabet=alphabet)
    return model.eval(), alphabet


class TokenCounter:
    """Forward pre-hook on an ESM model: counts batches, tokens fed (padding included) and real tokens."""

    def __init__(self, model: torch.nn.Module, padding_idx: int) -> None:
        self.padding_idx = padding_idx
        self.handle = model.register_forward_pre_hook(self._hook)
        self.reset()

    def reset(self) -> None:
        self.batches = 0
        self.total = 0
        self.real = 0
        self.max_width = 0

    def _hook(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        tokens = args[0]
        self.batches += 1
        self.total += int(tokens.numel())
        self.real += int((tokens != self.padding_idx).sum())
        self.max_width = max(self.max_width, int(tokens.shape[1]))

    def close(self) -> None:
        self.handle.remove()


def load_sequences(n: int, sample: str = "first", seed: int = 0) -> list[str]:
    """``n`` SCL2205 training sequences in file order (validated as ESMEncoder does).

    ``sample="first"``: the first ``n`` rows; ``"random"``: ``n`` rows drawn without replacement
    (seeded), kept in file order, so their lengths follow the whole set's distribution.
    """
    import scldata

    from domains.protein.records import validate_sequence

    df = scldata.load("train")
    if len(df) < n:
        raise ValueError(f"SCL2205 train holds {len(df)} sequences, fewer than --n-seqs {n}")
    if sample == "first":
        rows = np.arange(n)
    elif sample == "random":
        rows = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    else:
        raise ValueError(f"sequence sample must be 'first' or 'random', got {sample!r}")
    column = df["seq"].to_numpy()
    return [validate_sequence(column[i], record=f"SCL2205 train row {i}") for i in rows]


def _esm_encoder_cls() -> Any:
    try:
        from domains.protein import ESMEncoder  # type: ignore[attr-defined]
    except ImportError:
        from domains.protein.esm_encoder import ESMEncoder
    return ESMEncoder


def _windowed(embed: Callable[[list[str]], np.ndarray], seqs: Sequence[str], max_residues: int,
              overlap: int) -> np.ndarray:
    """Embed each sequence as ESMEncoder does: windows of <= ``max_residues``, length-weighted mean."""
    from domains.protein.esm_encoder import sequence_windows

    windows, owner, weight = [], [], []
    for i, s in enumerate(seqs):
        for start, stop in sequence_windows(len(s), max_residues, overlap):
            windows.append(s[start:stop])
            owner.append(i)
            weight.append(float(stop - start))
    emb = embed(windows).astype(np.float64)
    w = np.asarray(weight)
    acc = np.zeros((len(seqs), emb.shape[1]))
    np.add.at(acc, np.asarray(owner), emb * w[:, None])
    return (acc / np.bincount(owner, weights=w, minlength=len(seqs))[:, None]).astype(np.float32)


def _protein_measure(method: str, arch: str, seqs_file: str, weights_file: str, device: str = "cpu",
                     threads: int | None = None, toks_per_batch: int = 4096, fixed_batch_size: int = 8,
                     max_residues: int = 1022, window_overlap: int = 256, emb_out: str | None = None) -> dict:
    """Embed the sequences of ``seqs_file`` with one method; returns timings, token counts, memory."""
    _set_threads(threads)
    seqs: list[str] = json.loads(Path(seqs_file).read_text())
    model, alphabet = esm_model(arch)
    model.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
    model = model.eval().to(device)
    counter = TokenCounter(model, alphabet.padding_idx)
    if method == "ours":
        enc = _esm_encoder_cls()(model, alphabet, device=device, tokens_per_batch=toks_per_batch,
                                 max_residues=max_residues, window_overlap=window_overlap)
        run: Callable[[list[str]], np.ndarray] = enc.encode
    elif method == "fixed_batches":
        def run(s: list[str]) -> np.ndarray:
            return _windowed(lambda w: ref.esm_embed_fixed_batches(model, alphabet, w, fixed_batch_size, device),
                             s, max_residues, window_overlap)
    elif method == "fair_esm_batches":
        def run(s: list[str]) -> np.ndarray:
            return _windowed(lambda w: ref.esm_embed_fair_esm_batches(model, alphabet, w, toks_per_batch, device),
                             s, max_residues, window_overlap)
    else:
        raise ValueError(f"unknown protein method {method!r}")
    run([s[:48] for s in seqs[:2]])  # warm-up (allocator, kernels), not timed
    counter.reset()
    with MemorySampler(device) as mem:
        _sync(device)
        t0 = time.perf_counter()
        emb = run(seqs)
        _sync(device)
        seconds = time.perf_counter() - t0
    counter.close()
    if emb_out:
        np.save(emb_out, emb)
    return {"seconds": seconds, "seqs": len(seqs), "seqs_per_s": len(seqs) / seconds,
            "tokens": counter.real, "tokens_per_s": counter.real / seconds,
            "tokens_fed": counter.total, "tokens_fed_per_s": counter.total / seconds,
            "padding_fraction": 1.0 - counter.real / max(counter.total, 1), "n_batches": counter.batches,
            "max_width": counter.max_width, **mem.metrics()}


def bench_protein(cfg: SpeedConfig, report: SpeedReport, seqs: list[str] | None = None) -> None:
    """ESMEncoder vs (a) fixed batches vs (b) fair-esm batches, per architecture."""
    seqs = seqs if seqs is not None else load_sequences(cfg.n_seqs, cfg.seq_sample, cfg.seed)
    lengths = np.array([len(s) for s in seqs])
    report.notes.append(
        f"protein: {len(seqs)} sequences ({'first' if cfg.seq_sample == 'first' else 'a seeded random sample'} "
        f"of SCL2205 train, in file order), length mean {lengths.mean():.0f}, "
        f"median {np.median(lengths):.0f}, max {lengths.max()}; {int((lengths > cfg.max_residues).sum())} longer "
        f"than {cfg.max_residues} residues are split into windows (overlap {cfg.window_overlap}) by every path; "
        f"token budget {cfg.toks_per_batch}, fixed batch size {cfg.fixed_batch_size}.")
    methods = ("ours", "fixed_batches", "fair_esm_batches")
    with tempfile.TemporaryDirectory(prefix="gentleclip-speed-protein-") as tmp:
        seqs_file = Path(tmp) / "seqs.json"
        seqs_file.write_text(json.dumps(seqs))
        bar = progress(total=len(cfg.esm_archs) * len(methods) * max(1, cfg.repeats), desc="protein", unit="run")
        for arch in cfg.esm_archs:
            model, _ = esm_model(arch, cfg.seed)
            weights = Path(tmp) / f"esm_{arch}.pt"
            torch.save(model.state_dict(), weights)
            case = f"ESM-2 {arch} ({model.num_layers} layers, dim {model.embed_dim})"
            del model
            embs = {}
            runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
            for rep in range(max(1, cfg.repeats)):  # interleaved and rotated: load changes hit every method alike
                for method in methods[rep % len(methods):] + methods[:rep % len(methods)]:
                    bar.set_postfix_str(f"{arch} {method}")
                    emb_out = str(Path(tmp) / f"{arch}_{method}.npy")
                    runs[method].append(run_measurement("protein", dict(
                        method=method, arch=arch, seqs_file=str(seqs_file), weights_file=str(weights),
                        device=cfg.device, threads=cfg.threads, toks_per_batch=cfg.toks_per_batch,
                        fixed_batch_size=cfg.fixed_batch_size, max_residues=cfg.max_residues,
                        window_overlap=cfg.window_overlap, emb_out=emb_out), cfg.isolate))
                    embs[method] = np.load(emb_out)
                    bar.update(1)
            for method in methods:
                report.add("protein", case, method, median_run(runs[method], "seqs_per_s"))
            for base in ("fixed_batches", "fair_esm_batches"):
                diff = float(np.abs(embs["ours"] - embs[base]).max()) if len(seqs) else 0.0
                report.check("protein", case, f"max |ours - {base}|", diff, AGREE_TOL_EMB)
                # the work done, free of timing noise: tokens fed to the model, padding included
                report.compare("protein", case, "tokens_fed", "ours", base, False)
                report.compare("protein", case, "seqs_per_s", "ours", base, True, base)
        bar.close()


# ========================================================================================= images
def image_items(n: int, image_dir: str | None, tmp: str | os.PathLike, seed: int = 0) -> tuple[list[str], str]:
    """``n`` RSICD JPEG paths (sorted names), or synthetic 224x224 JPEGs written to ``tmp`` when absent."""
    candidates = [Path(image_dir)] if image_dir else []
    env = os.environ.get("GENTLECLIP_SHARED_DATA")
    if env:
        candidates.append(Path(env) / "remote_sensing" / "rsicd" / "images")
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "remote_sensing" / "rsicd" / "images")
    for d in candidates:
        if d.is_dir():
            files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif"))
            if len(files) >= n:
                return [str(p) for p in files[:n]], f"RSICD images from {d}"
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = Path(tmp) / "synthetic_images"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        base = rng.integers(0, 256, size=(28, 28, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((224, 224), Image.BILINEAR)
        p = out / f"synthetic_{i:05d}.jpg"
        img.save(p, quality=75)
        paths.append(str(p))
    return paths, "synthetic 224x224 JPEGs (RSICD images not found)"


def _image_measure(method: str, paths_file: str, device: str = "cpu", threads: int | None = None,
                   batch_size: int | None = None, emb_out: str | None = None) -> dict:
    """Features of the images in ``paths_file`` with one method; returns timings and memory."""
    from domains.remote_sensing.encoders import ImageEncoder

    _set_threads(threads)
    items: list[str] = json.loads(Path(paths_file).read_text())
    if method.startswith("ours_bs"):  # ours at another batch size (channels_last)
        batch_size = int(method[len("ours_bs"):])
    enc = ImageEncoder(device=device, batch_size=batch_size, channels_last=(method != "ours_contiguous"),
                       show_progress=False)
    mean = torch.tensor(enc.mean).view(-1, 1, 1)
    std = torch.tensor(enc.std).view(-1, 1, 1)
    if method in ("ours", "ours_contiguous") or method.startswith("ours_bs"):
        run: Callable[[list[str]], np.ndarray | None] = enc.encode
    elif method == "plain_loop":
        def run(xs: list[str]) -> np.ndarray:
            return ref.image_features_plain_loop(enc.model, lambda p: (enc.preprocess(p) - mean) / std, xs, device)
    elif method == "decode_only":
        def run(xs: list[str]) -> None:
            for p in xs:
                enc.preprocess(p)
            return None
    else:
        raise ValueError(f"unknown image method {method!r}")
    run(items[:2])  # warm-up
    with MemorySampler(device) as mem:
        _sync(device)
        t0 = time.perf_counter()
        feats = run(items)
        _sync(device)
        seconds = time.perf_counter() - t0
    if emb_out and feats is not None:
        np.save(emb_out, feats)
    return {"seconds": seconds, "images": len(items), "images_per_s": len(items) / seconds, **mem.metrics()}


def bench_image(cfg: SpeedConfig, report: SpeedReport) -> None:
    """ImageEncoder (batched, inference_mode, channels_last) vs a plain one-image loop."""
    from domains.remote_sensing.encoders import CPU_BATCH_SIZE, GPU_BATCH_SIZE

    with tempfile.TemporaryDirectory(prefix="gentleclip-speed-image-") as tmp:
        items, source = image_items(cfg.n_images, cfg.image_dir, tmp, cfg.seed)
        paths_file = Path(tmp) / "items.json"
        paths_file.write_text(json.dumps(items))
        case = f"EfficientNet-Lite0 224px, {len(items)} images"
        default_bs = CPU_BATCH_SIZE if torch.device(cfg.device).type == "cpu" else GPU_BATCH_SIZE
        batch = cfg.image_batch_size or default_bs
        report.notes.append(f"image: {source}; ImageEncoder batch size {batch}"
                            f"{' (its default on ' + cfg.device + ')' if cfg.image_batch_size is None else ''} (also "
                            f"{', '.join(map(str, cfg.image_batch_sweep)) or 'none'} for comparison); decoding + "
                            "resizing included "
                            "in every method (timed alone as 'decode + preprocess only').")
        feats = {}
        sweep = tuple(f"ours_bs{b}" for b in cfg.image_batch_sweep if b != batch)
        methods = ("ours", "plain_loop", "ours_contiguous") + sweep + ("decode_only",)
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
        bar = progress(total=len(methods) * max(1, cfg.repeats), desc="image", unit="run")
        for rep in range(max(1, cfg.repeats)):
            for method in methods[rep % len(methods):] + methods[:rep % len(methods)]:
                out = str(Path(tmp) / f"{method}.npy")
                runs[method].append(run_measurement("image", dict(
                    method=method, paths_file=str(paths_file), device=cfg.device, threads=cfg.threads,
                    batch_size=cfg.image_batch_size, emb_out=out), cfg.isolate))
                if Path(out).is_file():
                    feats[method] = np.load(out)
                bar.update(1)
        bar.close()
        for method in methods:
            report.add("image", case, method, median_run(runs[method], "images_per_s"))
        report.compare("image", case, "images_per_s", "ours", "plain_loop", True)
        report.compare("image", case, "images_per_s", "ours_contiguous", "plain_loop", True)
        for method in sweep:
            report.compare("image", case, "images_per_s", method, "plain_loop", True)
        if "ours" in feats and "plain_loop" in feats:
            report.check("image", case, "max |ours - plain loop|",
                         float(np.abs(feats["ours"] - feats["plain_loop"]).max()),
                         AGREE_TOL_EMB)


# ========================================================================================== losses
def _loss_inputs(n: int, dim: int, seed: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    za = torch.nn.functional.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)
    zb = torch.nn.functional.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64) + 0.5 * za, dim=1)
    return za.to(device=device, dtype=dtype), zb.to(device=device, dtype=dtype)


def loss_pairs(n_paired: int) -> dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]]:
    """``name -> (ours(za, zb), per-sample loop(za, zb))`` for CLIP, SDD, MK-MMD and their weighted sum."""
    from gentleclip.losses import CLIPLoss, MKMMDLoss, Objective, ObjectiveConfig, SDDLoss

    clip, sdd, mmd = CLIPLoss(), SDDLoss(), MKMMDLoss()
    objective = Objective(ObjectiveConfig(clip=1.0, sdd=0.6, mmd=0.2))
    tau = float(clip.temperature)

    def ours_clip(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return clip.to(a.device)(a, b, n_paired)

    def ours_objective(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return objective.to(a.device)(a, b, n_paired)[0]

    return {
        "CLIP": (ours_clip, lambda a, b: ref.clip_loss_loop(a, b, n_paired, tau)),
        "SDD": (sdd, ref.sdd_loss_loop),
        "MK-MMD": (mmd, ref.mkmmd_loss_loop),
        "CLIP+SDD+MMD": (ours_objective,
                         lambda a, b: ref.gentle_objective_loop(a, b, n_paired, 1.0, 0.6, 0.2, temperature=tau)),
    }


def plain_losses(n_paired: int) -> dict[str, Callable[..., torch.Tensor]]:
    """The SDD and MK-MMD losses (and the objective) on plain autograd (``fused=False``): what the
    fused CPU kernels of ``gentleclip.losses._fused`` are measured against."""
    from gentleclip.losses import MKMMDLoss, Objective, ObjectiveConfig, SDDLoss

    objective = Objective(ObjectiveConfig(clip=1.0, sdd=0.6, mmd=0.2, fused_kernels=False))

    def plain_objective(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return objective.to(a.device)(a, b, n_paired)[0]

    return {"SDD": SDDLoss(fused=False), "MK-MMD": MKMMDLoss(fused=False), "CLIP+SDD+MMD": plain_objective}


def check_loss_agreement(n: int, dim: int = 256, paired_fraction: float = 0.25,
                         seed: int = 0) -> dict[str, dict[str, float]]:
    """Values and gradients of ours vs the loop implementations, in float64 on the CPU."""
    n_paired = max(1, int(round(n * paired_fraction)))
    out = {}
    for name, (ours, loop) in loss_pairs(n_paired).items():
        res = []
        for fn in (ours, loop):
            za, zb = (t.requires_grad_() for t in _loss_inputs(n, dim, seed, torch.float64, "cpu"))
            value = fn(za, zb)
            value.backward()
            res.append((float(value.detach()), za.grad, zb.grad))
        (v1, ga1, gb1), (v2, ga2, gb2) = res
        out[name] = {"value_ours": v1, "value_loop": v2, "value_abs_diff": abs(v1 - v2),
                     "value_rel_diff": abs(v1 - v2) / max(abs(v2), 1e-300),
                     "grad_max_abs_diff": float(max((ga1 - ga2).abs().max(), (gb1 - gb2).abs().max()))}
    return out


def bench_loss(cfg: SpeedConfig, report: SpeedReport) -> None:
    """Forward + backward time of each loss at each batch size, ours vs per-sample loop."""
    _set_threads(cfg.threads)
    steps = [(n, name) for n in cfg.loss_batches for name in ("CLIP", "SDD", "MK-MMD", "CLIP+SDD+MMD")]
    bar = progress(total=len(steps), desc="loss", unit="case")
    checks: dict[int, dict[str, dict[str, float]]] = {}
    for n in cfg.loss_batches:
        n_paired = max(1, int(round(n * cfg.paired_fraction)))
        if n <= cfg.check_max_batch:
            checks[n] = check_loss_agreement(n, cfg.loss_dim, cfg.paired_fraction, cfg.seed)
        plain = plain_losses(n_paired)
        for name, (ours, loop) in loss_pairs(n_paired).items():
            case = f"{name}@{n}"
            methods = [("ours", ours), ("per_sample_loop", loop)] + ([("plain_autograd", plain[name])]
                                                                     if name in plain else [])
            for method, fn in methods:
                inputs = _loss_inputs(n, cfg.loss_dim, cfg.seed, torch.float32, cfg.device)
                za, zb = (t.requires_grad_() for t in inputs)

                def step(fn: Callable[..., torch.Tensor] = fn, za: torch.Tensor = za, zb: torch.Tensor = zb) -> None:
                    za.grad = zb.grad = None
                    fn(za, zb).backward()

                t = time_call(step, cfg.device, cfg.min_time)
                metrics = {"fwd_bwd_ms": 1e3 * t["median_s"], "fwd_bwd_min_ms": 1e3 * t["min_s"], "reps": t["reps"],
                           "batch": n, "n_paired": n_paired, "dim": cfg.loss_dim}
                if method == "ours" and n in checks:
                    metrics["value_f64"] = checks[n][name]["value_ours"]
                report.add("loss", case, method, metrics)
            if n in checks:
                c = checks[n][name]
                report.add("loss", case, "check", c)
                report.check("loss", case, "|value ours - loop| (float64)", c["value_abs_diff"], AGREE_TOL_LOSS)
                report.check("loss", case, "max |grad ours - loop| (float64)", c["grad_max_abs_diff"], AGREE_TOL_LOSS)
            report.compare("loss", case, "fwd_bwd_ms", "ours", "per_sample_loop", False,
                           "per_sample_loop@256" if n == 256 else None)
            if name in plain:
                report.compare("loss", case, "fwd_bwd_ms", "ours", "plain_autograd", False, None)
            bar.update(1)
    bar.close()
    report.notes.append(
        f"loss: embedding dim {cfg.loss_dim}, {cfg.paired_fraction:.0%} of each batch paired, za/zb L2-normalised "
        "random rows (zb correlated with za); ours = CLIPLoss(0.05), SDDLoss() (variance bandwidth, normalised, "
        "inverse-variance spread), MKMMDLoss() (5 kernels, median heuristic, biased), Objective(clip=1, sdd=0.6, "
        "mmd=0.2).")


# ========================================================================================== train
def write_features(path: Path, n: int, views: int, dim: int, seed: int, chunk: int = 8192) -> Path:
    """A random ``[n, views, dim]`` float32 ``.npy`` written in chunks (never all in memory)."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, views, dim))
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        arr[start:stop] = rng.standard_normal((stop - start, views, dim), dtype=np.float32)
    arr.flush()
    del arr
    return path


def _train_measure(method: str, path_a: str, path_b: str, n_pairs: int, n_unpaired: int, batch_size: int,
                   device: str = "cpu", threads: int | None = None, max_steps: int | None = None,
                   out_dir: str | None = None, seed: int = 0) -> dict:
    """One training run over memmapped features: the Trainer for one epoch (or ``max_steps``), or the
    plain loop for the same steps. Returns time, steps and memory."""
    from gentleclip.data import SemiPairedData, SemiPairedLoader
    from gentleclip.losses import Objective, ObjectiveConfig
    from gentleclip.model import AlignmentModel, ProjectionHead
    from gentleclip.train import TrainConfig, Trainer

    _set_threads(threads)
    fa = np.load(path_a, mmap_mode="r")
    fb = np.load(path_b, mmap_mode="r")
    paired = np.arange(n_pairs)
    ua = n_pairs + np.arange(n_unpaired)
    ub = n_pairs + n_unpaired + np.arange(n_unpaired)
    data = SemiPairedData(fa, fb, paired, paired, ua, ub)
    torch.manual_seed(seed)
    model = AlignmentModel(ProjectionHead(fa.shape[2]), ProjectionHead(fb.shape[2]))
    objective = Objective(ObjectiveConfig.gentle())
    stamps: list[float] = []  # time after each step (CPU; on CUDA the Trainer's float(loss) syncs every step)
    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="gentleclip-speed-train-")
        out_dir = tmp.name
    try:
        if method == "trainer":
            config = TrainConfig(epochs=1, max_steps=max_steps, batch_size=batch_size, device=device, seed=seed,
                                 tensorboard=False, log_every=50)
            def tick(trainer: Any, step: int, terms: Any) -> None:
                stamps.append(time.perf_counter())

            trainer = Trainer(model, objective, data, config, out_dir=out_dir, callbacks=[tick])
            steps_per_epoch = len(trainer.loader)
            with MemorySampler(device) as mem:
                t0 = time.perf_counter()
                stamps.append(t0)
                result = trainer.fit()
                _sync(device)
                seconds = time.perf_counter() - t0
            steps = result.steps
        elif method == "plain_loop":
            model.to(device)
            objective.to(device)
            loader = SemiPairedLoader(data, batch_size=batch_size, seed=seed, n_views=2)
            steps_per_epoch = len(loader)
            steps = max_steps if max_steps is not None else steps_per_epoch
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
            model.train()
            with MemorySampler(device) as mem:
                t0 = time.perf_counter()
                stamps.append(t0)
                for step in range(steps):
                    batch = loader.batch_at(step).to(device)
                    za_all, zb_all = model(torch.cat([batch.a, batch.a2]), torch.cat([batch.b, batch.b2]))
                    na, nb = len(batch.a), len(batch.b)
                    loss, _ = objective(za_all[:na], zb_all[:nb], batch.n_paired, za_all[na:], zb_all[nb:])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    if device == "cpu":
                        stamps.append(time.perf_counter())
                _sync(device)
                seconds = time.perf_counter() - t0
        else:
            raise ValueError(f"unknown train method {method!r}")
    finally:
        if tmp is not None:
            tmp.cleanup()
    disk = (os.path.getsize(path_a) + os.path.getsize(path_b)) / 2**20
    step_ms = 1e3 * np.diff(stamps[1:]) if len(stamps) > 2 else np.array([1e3 * seconds / steps])  # skip step 1
    return {"seconds": seconds, "steps": steps, "steps_per_s": steps / seconds, "ms_per_step": 1e3 * seconds / steps,
            "median_step_ms": float(np.median(step_ms)), "steady_steps_per_s": 1e3 / float(np.median(step_ms)),
            "steps_per_epoch": steps_per_epoch, "items": len(fa), "disk_mb": disk, **mem.metrics()}


def bench_train(cfg: SpeedConfig, report: SpeedReport) -> None:
    """Trainer vs plain loop (steps/s), then one Trainer epoch per pool scale (time and memory)."""
    root = Path(cfg.work_dir) if cfg.work_dir else None
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gentleclip-speed-train-", dir=root) as tmp:
        bar = progress(total=2 + len(cfg.pool_scales), desc="train", unit="run")
        files: dict[int, tuple[str, str, int]] = {}

        def features(scale: int) -> tuple[str, str, int]:
            if scale not in files:
                n_unpaired = cfg.pool_base * scale
                n = cfg.n_pairs + 2 * n_unpaired
                pa = write_features(Path(tmp) / f"a_{scale}x.npy", n, 2, cfg.dim_a, cfg.seed)
                pb = write_features(Path(tmp) / f"b_{scale}x.npy", n, 2, cfg.dim_b, cfg.seed + 1)
                files[scale] = (str(pa), str(pb), n_unpaired)
            return files[scale]

        first = cfg.pool_scales[0] if cfg.pool_scales else 1
        pa, pb, nu = features(first)
        methods = ("trainer", "plain_loop")
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
        for rep in range(max(1, cfg.repeats)):
            for method in methods[rep % 2:] + methods[:rep % 2]:
                runs[method].append(run_measurement("train", dict(
                    method=method, path_a=pa, path_b=pb, n_pairs=cfg.n_pairs, n_unpaired=nu,
                    batch_size=cfg.train_batch, device=cfg.device, threads=cfg.threads, max_steps=cfg.train_steps,
                    seed=cfg.seed), cfg.isolate))
        for method in methods:
            report.add("train", "steps", method, median_run(runs[method], "steps_per_s"))
            bar.update(1)
        report.compare("train", "steps", "steps_per_s", "trainer", "plain_loop", True)
        report.compare("train", "steps", "steady_steps_per_s", "trainer", "plain_loop", True)
        for scale in cfg.pool_scales:
            pa, pb, nu = features(scale)
            res = run_measurement("train", dict(method="trainer", path_a=pa, path_b=pb, n_pairs=cfg.n_pairs,
                                                n_unpaired=nu, batch_size=cfg.train_batch, device=cfg.device,
                                                threads=cfg.threads, max_steps=None, seed=cfg.seed), cfg.isolate)
            res["pool_scale"] = scale
            report.add("train", f"pools={scale}x", "trainer", res)
            bar.update(1)
        bar.close()
        if cfg.pool_scales:  # growth against the first pool size: time should follow the steps, memory stay flat
            base = f"pools={first}x"
            for scale in cfg.pool_scales:
                case = f"pools={scale}x"
                v = lambda c, k: report.value("train", c, "trainer", k)  # noqa: E731
                growth = {"pool_ratio": scale / first, "steps_ratio": v(case, "steps") / v(base, "steps"),
                          "epoch_time_ratio": v(case, "seconds") / v(base, "seconds"),
                          "median_step_time_ratio": v(case, "median_step_ms") / v(base, "median_step_ms")}
                if v(base, "peak_anon_mb"):
                    growth["peak_anon_ratio"] = v(case, "peak_anon_mb") / v(base, "peak_anon_mb")
                growth["peak_rss_ratio"] = v(case, "peak_rss_mb") / v(base, "peak_rss_mb")
                report.add("train", case, "growth_vs_first", growth)
    report.notes.append(
        f"train: heads ProjectionHead({cfg.dim_a}) / ProjectionHead({cfg.dim_b}) -> 256, Objective gentle "
        f"(clip 1, sdd 0.6, mmd 0.2, ssl 0.1+0.1, two views), batch {cfg.train_batch}, {cfg.n_pairs} pairs, unpaired "
        f"pools of {cfg.pool_base} x scale rows each; steps/s over {cfg.train_steps} steps at {first}x; "
        "Trainer with its defaults (checkpoint and model written at the end, included in its time).")


def write_random_fasta(path: Path, n: int, seed: int = 0, min_len: int = 50, max_len: int = 500) -> Path:
    """A FASTA of ``n`` random proteins (lengths uniform in [min_len, max_len]), written in blocks."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
    with open(path, "wb") as fh:
        for start in range(0, n, 10_000):
            lengths = rng.integers(min_len, max_len + 1, size=min(10_000, n - start))
            residues = letters[rng.integers(0, len(letters), size=int(lengths.sum()))].tobytes()
            ends = np.cumsum(lengths)
            parts = []
            for i, (a, b) in enumerate(zip(np.concatenate([[0], ends[:-1]]), ends)):
                parts.append(b">R%d\n%s\n" % (start + i, residues[a:b]))
            fh.write(b"".join(parts))
    return path


def _stream_measure(method: str, fasta: str, cache_dir: str, chunk: int, threads: int | None = None) -> dict:
    """Embed ``fasta`` with the hashed 1-3-mer encoder into a fresh feature cache: ``streamed``
    (FastaSequences) or ``list`` (read_fasta, then the cache on the list of sequences)."""
    from domains.protein import FastaSequences, KmerEncoder, read_fasta
    from gentleclip.cache import FeatureCache

    _set_threads(threads)
    encoder = KmerEncoder(k=3, hash_dim=1024)
    cache = FeatureCache(cache_dir)
    t0 = time.perf_counter()
    with MemorySampler("cpu") as mem:
        if method == "streamed":
            seqs = FastaSequences(fasta)
            feats = cache.get(encoder, seqs, n_views=1, fingerprint=seqs.fingerprint, chunk_size=chunk)
        else:
            seqs = [r.sequence for r in read_fasta(fasta)]
            feats = cache.get(encoder, seqs, n_views=1, chunk_size=chunk)
        n = int(feats.shape[0])
        checksum = float(np.asarray(feats[: min(n, 1000), 0]).sum())
    seconds = time.perf_counter() - t0
    return {"n": n, "seconds": seconds, "seqs_per_s": n / seconds, "file_mb": os.path.getsize(fasta) / 2**20,
            "features_mb": n * encoder.dim * 4 / 2**20, "checksum_first_1000": checksum, **mem.metrics()}


def bench_stream(cfg: SpeedConfig, report: SpeedReport) -> None:
    """Streamed reading and chunked writing of growing FASTA files: time and peak memory."""
    root = Path(cfg.work_dir) if cfg.work_dir else None
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gentleclip-speed-stream-", dir=root) as tmp:
        bar = progress(total=len(cfg.stream_sizes), desc="stream", unit="size")
        for n in cfg.stream_sizes:
            fasta = write_random_fasta(Path(tmp) / f"r{n}.fasta", n, cfg.seed)
            methods = ("streamed", "list") if n <= cfg.stream_baseline_max else ("streamed",)
            for method in methods:
                res = run_measurement("stream", dict(method=method, fasta=str(fasta),
                                                     cache_dir=str(Path(tmp) / f"c-{method}-{n}"),
                                                     chunk=cfg.stream_chunk, threads=cfg.threads), cfg.isolate)
                report.add("stream", f"n={n}", method, res)
                shutil.rmtree(Path(tmp) / f"c-{method}-{n}", ignore_errors=True)
            if "list" in methods:
                a = report.value("stream", f"n={n}", "streamed", "checksum_first_1000")
                b = report.value("stream", f"n={n}", "list", "checksum_first_1000")
                report.checks.append({"task": "stream", "case": f"n={n}", "check": "same features as read_fasta",
                                      "passed": bool(a == b), "value": abs((a or 0) - (b or 0))})
            fasta.unlink()
            bar.update(1)
        bar.close()
    first = f"n={cfg.stream_sizes[0]}"
    for n in cfg.stream_sizes:
        case = f"n={n}"
        for method in ("streamed", "list"):
            base = report.value("stream", first, method, "peak_anon_mb")
            cur = report.value("stream", case, method, "peak_anon_mb")
            if base and cur:
                report.add("stream", case, f"{method}_growth", {"peak_anon_ratio": cur / base,
                                                               "items_ratio": n / cfg.stream_sizes[0]})
    report.notes.append(
        f"stream: random proteins of 50-500 residues, hashed 1-3-mer encoder (1,444 dims, one view), cache chunks "
        f"of {cfg.stream_chunk}; each measurement in a fresh process with a fresh cache; the streamed path keeps "
        "an 8-byte offset per record, the list path every sequence string.")


_MEASUREMENTS: dict[str, Callable[..., dict]] = {
    "protein": _protein_measure,
    "image": _image_measure,
    "train": _train_measure,
    "stream": _stream_measure,
}


# ============================================================================================= run
def run(cfg: SpeedConfig, command: str | None = None) -> SpeedReport:
    """Run the selected sections and write ``speed.md`` / ``speed.json`` into ``cfg.out``."""
    check_device(cfg.device)
    unknown = sorted(set(cfg.only) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    _set_threads(cfg.threads)
    t0 = time.perf_counter()
    report = SpeedReport()
    report.meta = {
        "command": command if command is not None else shlex.join([sys.executable] + sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": machine_meta(cfg.device),
    }
    report.config = asdict(cfg)
    report.notes.append(
        "timings on a shared machine are noisy; compare ratios measured in the same run, and look at the load "
        "average above" + ("" if cfg.isolate else "; measurements ran in-process (peak memory is of the whole "
                                                  "process)"))
    sections = [s for s in SECTIONS if s in cfg.only]
    report.meta["sections"] = {}
    if cfg.merge:
        merge_previous(report, Path(cfg.out) / "speed.json", keep=[s for s in SECTIONS if s not in sections])
    for section in sections:
        t_section = time.perf_counter()
        load_start = _loadavg()
        {"protein": bench_protein, "image": bench_image, "loss": bench_loss, "train": bench_train,
         "stream": bench_stream}[section](cfg, report)
        report.meta["sections"][section] = {
            "command": report.meta["command"], "date": report.meta["date"], "git_commit": report.meta["git_commit"],
            "load_average_start": load_start, "load_average_end": _loadavg(),
            "wall_s": time.perf_counter() - t_section, "config": asdict(cfg)}
        report.meta["wall_s"] = time.perf_counter() - t0
        report.meta["load_average_end"] = _loadavg()
        report.write(cfg.out)  # after every section, so a long run leaves partial results
    return report


def _loadavg() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def merge_previous(report: SpeedReport, path: Path, keep: Sequence[str]) -> None:
    """Copy the sections ``keep`` (rows, comparisons, checks, notes, section meta) of an earlier
    ``speed.json`` into ``report``, so that re-running one section keeps the others."""
    if not path.is_file() or not keep:
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"--merge: cannot read the earlier results {path}: {e}") from e
    for key in ("rows", "comparisons", "checks"):
        getattr(report, key).extend(r for r in old.get(key, []) if r.get("task") in keep)
    report.notes.extend(n for n in old.get("notes", []) if n.split(":", 1)[0] in keep)
    old_meta = old.get("meta", {})
    for task in keep:
        if any(r.get("task") == task for r in old.get("rows", [])):
            report.meta["sections"][task] = old_meta.get("sections", {}).get(task) or {
                "command": old_meta.get("command"), "date": old_meta.get("date"),
                "git_commit": old_meta.get("git_commit"),
                "load_average_start": old_meta.get("machine", {}).get("load_average"),
                "load_average_end": old_meta.get("load_average_end"), "config": old.get("config")}


def _int_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device to measure on (default cpu)")
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections ({','.join(SECTIONS)})")
    p.add_argument("--out", default="benchmarks/results", help="output folder for speed.md / speed.json")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-isolate", action="store_true", help="measure in this process (faster; memory not per run)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--min-time", type=float, default=None, help="seconds of repetitions per loss timing")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved repetitions of each protein / image measurement; the median run is reported (1)")
    p.add_argument("--n-seqs", type=int, default=None, help="SCL2205 sequences to embed (default 2000)")
    p.add_argument("--seq-sample", default=None, choices=["first", "random"],
                   help="which SCL2205 train sequences: the first N, or a seeded random sample of N (first)")
    p.add_argument("--esm-archs", default=None, help=f"comma-separated ESM-2 architectures ({','.join(ESM_ARCHS)} "
                                                     "or LxDxH); default 8M,35M")
    p.add_argument("--toks-per-batch", type=int, default=None, help="token budget of ours and fair-esm (4096)")
    p.add_argument("--fixed-batch-size", type=int, default=None, help="batch size of baseline (a) (8)")
    p.add_argument("--max-residues", type=int, default=None, help="ESM window length (1022)")
    p.add_argument("--n-images", type=int, default=None, help="images to encode (256)")
    p.add_argument("--image-batch-size", type=int, default=None, help="ImageEncoder batch size (default: its own for "
                                                                      "the device, 4 on the CPU)")
    p.add_argument("--image-dir", default=None, help="folder of images (default: ../shared/data RSICD)")
    p.add_argument("--loss-batches", default=None, help="comma-separated batch sizes (64,256,1024)")
    p.add_argument("--loss-dim", type=int, default=None, help="embedding dim of the loss inputs (256)")
    p.add_argument("--train-batch", type=int, default=None, help="training batch size (256)")
    p.add_argument("--n-pairs", type=int, default=None, help="pairs in the training pools (512)")
    p.add_argument("--pool-base", type=int, default=None, help="rows of each unpaired pool at 1x (4096)")
    p.add_argument("--pool-scales", default=None, help="comma-separated pool multipliers (1,4,16)")
    p.add_argument("--train-steps", type=int, default=None, help="steps for the steps/s comparison (100)")
    p.add_argument("--work-dir", default=None, help="where the memmapped training features go (default: temp)")
    p.add_argument("--stream-sizes", default=None,
                   help="comma-separated FASTA sizes of the stream section (10000,100000,1000000)")
    p.add_argument("--stream-baseline-max", type=int, default=None,
                   help="largest size also run through read_fasta + a list, the baseline (100000)")
    p.add_argument("--merge", action="store_true",
                   help="keep the sections not run now from an earlier speed.json in --out (re-run one section)")
    p.add_argument("--image-batch-sweep", default=None,
                   help="other ImageEncoder batch sizes to time for comparison (1,4,8,16,32; the one in use is "
                        "skipped); '' for none")
    p.add_argument("--render", action="store_true",
                   help="only rewrite speed.md in --out from its speed.json (no measurement)")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    return p


def config_from_args(args: argparse.Namespace) -> SpeedConfig:
    over: dict[str, Any] = {"device": args.device, "out": args.out, "threads": args.threads,
                            "isolate": not args.no_isolate, "merge": args.merge,
                            "only": tuple(s.strip() for s in args.only.split(",") if s.strip())}
    simple = {"seed": "seed", "min_time": "min_time", "repeats": "repeats", "n_seqs": "n_seqs",
              "seq_sample": "seq_sample", "toks_per_batch": "toks_per_batch",
              "fixed_batch_size": "fixed_batch_size", "max_residues": "max_residues", "n_images": "n_images",
              "image_batch_size": "image_batch_size", "image_dir": "image_dir", "loss_dim": "loss_dim",
              "train_batch": "train_batch", "n_pairs": "n_pairs", "pool_base": "pool_base",
              "train_steps": "train_steps", "work_dir": "work_dir"}
    for attr, key in simple.items():
        if getattr(args, attr) is not None:
            over[key] = getattr(args, attr)
    if args.esm_archs:
        over["esm_archs"] = tuple(a.strip() for a in args.esm_archs.split(",") if a.strip())
    if args.loss_batches:
        over["loss_batches"] = _int_tuple(args.loss_batches)
    if args.pool_scales:
        over["pool_scales"] = _int_tuple(args.pool_scales)
    if args.image_batch_sweep is not None:
        over["image_batch_sweep"] = _int_tuple(args.image_batch_sweep)
    if args.stream_sizes:
        over["stream_sizes"] = _int_tuple(args.stream_sizes)
    if args.stream_baseline_max is not None:
        over["stream_baseline_max"] = args.stream_baseline_max
    return SpeedConfig.quick(**over) if args.quick else SpeedConfig(**over)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args._worker:
        return _worker_main(args._worker)
    if args.render:
        path = Path(args.out) / "speed.json"
        if not path.is_file():
            parser.error(f"--render: {path} does not exist; run the benchmark first")
        report = SpeedReport(**{k: v for k, v in json.loads(path.read_text()).items()
                                if k in ("meta", "config", "rows", "comparisons", "checks", "notes")})
        print(f"wrote {report.write(args.out)['md']}")
        return 0
    cfg = config_from_args(args)
    unknown = sorted(set(cfg.only) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    for arch in cfg.esm_archs:
        if arch not in ESM_ARCHS and len(arch.lower().split("x")) != 3:
            parser.error(f"--esm-archs: unknown architecture {arch!r}; use {', '.join(ESM_ARCHS)} or LxDxH")
    try:
        check_device(cfg.device)
    except RuntimeError as e:
        parser.error(str(e))
    command = shlex.join(["python", "benchmarks/run_speed.py"] + list(sys.argv[1:] if argv is None else argv))
    report = run(cfg, command)
    paths = report.write(cfg.out)
    failed = [c for c in report.checks if not c["passed"]]
    print(f"wrote {paths['md']} and {paths['json']}")
    for c in report.comparisons:
        tgt = "" if c["target"] is None else f" (target >= {c['target']:g}x: {'met' if c['met'] else 'NOT met'})"
        print(f"  {c['task']:8s} {c['case'][:40]:40s} {c['metric']:18s} {c['ours']:15s} vs {c['baseline']:16s} "
              f"{c['speedup']:8.2f}x{tgt}")
    if failed:
        print("correctness checks FAILED: " + "; ".join(f"{c['task']}/{c['case']}/{c['check']}={c['value']:.3g}"
                                                       for c in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
