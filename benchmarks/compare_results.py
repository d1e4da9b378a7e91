#!/usr/bin/env python
"""Compare the per-seed values of two benchmark runs (e.g. the same grid on two commits).

Every value of ``results.json`` is keyed by (task, dataset, method, pairing ratio, seed, metric).
The script lists the keys present on one side only, counts the values that moved by more than
``--tol`` (absolute), shows the largest moves, and writes the comparison as Markdown (``--out``).
The exit code is 1 when a value moved or a key is missing on one side, 0 otherwise.

Examples::

    python benchmarks/compare_results.py before/protein after/protein --tol 1e-6
    python benchmarks/compare_results.py before/remote_sensing/results.json after/remote_sensing --out cmp.md
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

Key = tuple[str, str, str, float, int, str]


def load_values(path: str | Path) -> dict[Key, float]:
    """``{(task, dataset, method, ratio, seed, metric): value}`` of a results.json (or the folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no results.json (pass a benchmark output folder or its results.json)")
    rows = json.loads(p.read_text(encoding="utf-8"))["rows"]
    out: dict[Key, float] = {}
    for i, r in enumerate(rows):
        key = (r["task"], r["dataset"], r["method"], float(r["pairing_ratio"]), int(r["seed"]), r["metric"])
        if key in out:
            raise ValueError(f"{p}: row {i} repeats {key}")
        out[key] = float(r["value"])
    return out


def compare(before: dict[Key, float], after: dict[Key, float], tol: float) -> dict:
    """Keys on one side only, and the values that moved by more than ``tol``, largest first."""
    common = sorted(set(before) & set(after))
    moved = sorted(((abs(after[k] - before[k]), k) for k in common if not abs(after[k] - before[k]) <= tol),
                   reverse=True)
    return {"n_common": len(common), "only_before": sorted(set(before) - set(after)),
            "only_after": sorted(set(after) - set(before)), "moved": moved,
            "max_abs_diff": max((abs(after[k] - before[k]) for k in common), default=0.0)}


def to_markdown(result: dict, before: dict[Key, float], after: dict[Key, float], labels: tuple[str, str],
                tol: float, limit: int = 30) -> str:
    lines = [f"Compared {result['n_common']} per-seed values of `{labels[0]}` and `{labels[1]}` "
             f"(tolerance {tol:g}, absolute).", "",
             f"- largest absolute difference: {result['max_abs_diff']:.3g}",
             f"- values that moved by more than the tolerance: {len(result['moved'])}",
             f"- keys only in the first: {len(result['only_before'])}; only in the second: {len(result['only_after'])}"]
    if result["moved"]:
        lines += ["", "| task | dataset | method | ratio | seed | metric | before | after |",
                  "|---|---|---|---:|---:|---|---:|---:|"]
        for _, k in result["moved"][:limit]:
            lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]:g} | {k[4]} | {k[5]} | {before[k]:.6g} | {after[k]:.6g} "
                         "|")
    for name in ("only_before", "only_after"):
        if result[name]:
            lines += ["", f"{name.replace('_', ' ')}: " + "; ".join(map(str, result[name][:limit]))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", help="first benchmark output folder (or its results.json)")
    p.add_argument("after", help="second benchmark output folder (or its results.json)")
    p.add_argument("--tol", type=float, default=1e-6, help="absolute tolerance (default: %(default)s)")
    p.add_argument("--out", help="write the comparison as Markdown to this file")
    args = p.parse_args(argv)
    before, after = load_values(args.before), load_values(args.after)
    result = compare(before, after, args.tol)
    text = to_markdown(result, before, after, (args.before, args.after), args.tol)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 1 if result["moved"] or result["only_before"] or result["only_after"] else 0


if __name__ == "__main__":
    sys.exit(main())
