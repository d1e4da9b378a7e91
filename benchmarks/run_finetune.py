"""Frozen heads against end-to-end fine-tuning: the same method, data, split, budget and selection, two ways.

Runs a benchmark script (``run_protein.py`` or ``run_remote_sensing.py``) twice in subprocesses: once
with frozen encoders (heads over cached features) and once with ``--finetune-a`` / ``--finetune-b``,
every other option the same. Measures each run's wall time and peak memory (resident set size of the
process tree, polled every 0.2 s), reads the steps each run took from its ``runs.json``, and writes
``comparison.json`` and ``comparison.md`` to ``--out`` (the two benchmark folders beside them).

Example (what the README's table ran)::

    python benchmarks/run_finetune.py --script run_protein.py --finetune-b last2 \\
        --out benchmarks/out/finetune/protein -- --methods clip,gentle --ratios 0.05 --seeds 0
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

HERE = Path(__file__).resolve().parent


def _peak_rss_run(cmd: list[str]) -> tuple[int, float, float]:
    """Run ``cmd``; (exit code, wall seconds, peak RSS of it and its children in MiB)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = 0
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    return proc.returncode, time.perf_counter() - t0, peak / 2**20


def _summary(folder: Path) -> dict:
    runs = json.loads((folder / "runs.json").read_text())
    results = json.loads((folder / "results.json").read_text())
    return {"runs": runs, "rows": results["rows"], "meta": results.get("meta", {})}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--script", choices=("run_protein.py", "run_remote_sensing.py"), required=True)
    p.add_argument("--finetune-a", default="frozen", help="what of the A encoder trains (all, lastK)")
    p.add_argument("--finetune-b", default="frozen", help="what of the B encoder trains (all, lastK)")
    p.add_argument("--metrics", default=None,
                   help="metrics of the table (default: zeroshot_top1 for proteins; mean_recall for remote sensing)")
    p.add_argument("--out", required=True, help="output folder (frozen/ and finetuned/ go inside)")
    args = p.parse_args(argv)
    if args.finetune_a == "frozen" and args.finetune_b == "frozen":
        raise SystemExit("run_finetune.py: give --finetune-a and/or --finetune-b (what the second run fine-tunes)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = (args.metrics or ("zeroshot_top1" if args.script == "run_protein.py" else "mean_recall")).split(",")
    record: dict = {"script": args.script, "options": extra, "finetune": {"a": args.finetune_a, "b": args.finetune_b},
                    "date": time.strftime("%Y-%m-%d"), "settings": {}}
    for name, flags in (("frozen", []), ("finetuned", ["--finetune-a", args.finetune_a,
                                                        "--finetune-b", args.finetune_b])):
        cmd = [sys.executable, str(HERE / args.script), *extra, *flags, "--out", str(out / name)]
        code, wall, peak = _peak_rss_run(cmd)
        if code != 0:
            raise SystemExit(f"run_finetune.py: {' '.join(cmd)} failed with exit code {code}")
        s = _summary(out / name)
        steps = sum(int(r.get("steps") or 0) for r in s["runs"])
        train_s = sum(float(r.get("wall_time_s") or 0) for r in s["runs"])
        record["settings"][name] = {"command": " ".join(cmd[1:]), "wall_time_s": round(wall, 1),
                                    "peak_rss_mib": round(peak), "steps": steps, "run_wall_s": round(train_s, 1),
                                    "steps_per_s": round(steps / train_s, 3) if train_s else None,
                                    "runs": s["runs"], "rows": s["rows"]}
    (out / "comparison.json").write_text(json.dumps(record, indent=1))
    (out / "comparison.md").write_text(_markdown(record, metrics))
    print(_markdown(record, metrics))
    return 0


def _markdown(record: dict, metrics: list[str]) -> str:
    lines = [f"Frozen vs fine-tuned ({record['script']}; fine-tuned: A {record['finetune']['a']}, B "
             f"{record['finetune']['b']}; options `{' '.join(record['options'])}`; {record['date']})", "",
             "| setting | method | ratio | seed | " + " | ".join(metrics)
             + " | steps | run s (train, validation, test) | steps/s | peak RSS MiB |",
             "|---|---|---:|---:|" + "---:|" * (len(metrics) + 4)]
    for name, s in record["settings"].items():
        for run in s["runs"]:
            key = (run.get("method"), run.get("pairing_ratio"), run.get("seed"))
            vals = {r["metric"]: r["value"] for r in s["rows"]
                    if (r["method"], r["pairing_ratio"], r["seed"]) == key}
            cells = [f"{vals[m]:.2f}" if m in vals else "" for m in metrics]
            rate = f"{run['steps'] / run['wall_time_s']:.2f}" if run.get("wall_time_s") else ""
            lines.append(f"| {name} | {key[0]} | {key[1]:g} | {key[2]} | " + " | ".join(cells)
                         + f" | {run.get('steps')} | {run.get('wall_time_s')} | {rate} | {s['peak_rss_mib']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
