#!/usr/bin/env python
"""Regenerate the README's result tables from ``benchmarks/results/`` (or check that they match).

    python benchmarks/summarize.py            # rewrite every generated block of README.md
    python benchmarks/summarize.py --check    # exit 1 and name the blocks that differ
    python benchmarks/summarize.py --files README.md benchmarks/results/ANALYSIS.md

A generated block is ``<!-- table: KIND results=FOLDER ... -->`` ... ``<!-- /table -->`` (the kinds are
in :mod:`gentleclip.app.readme_tables`). For a quick look at any benchmark folder, without a README:

    python benchmarks/summarize.py --show benchmarks/out/protein zeroshot_top1 knn_acc
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or ``--check``) the generated tables of ``--files``; ``--show`` prints compact tables."""
    from gentleclip.app.readme_tables import regenerate, stale_blocks
    from gentleclip.app.report import compact_tables

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", nargs="+",
                   default=[str(REPO / "README.md"), str(REPO / "benchmarks" / "results" / "ANALYSIS.md")],
                   help="Markdown files whose blocks to regenerate (default: README.md and ANALYSIS.md)")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"), help="root of the results folders")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs")
    p.add_argument("--show", nargs="+", metavar=("FOLDER", "METRIC"), help="print compact tables of a folder")
    args = p.parse_args(argv)
    if args.show:
        print(compact_tables(args.show[0], args.show[1:]))
        return 0
    stale = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if args.check:
            stale += [f"{path}: {spec}" for spec in stale_blocks(text, args.results)]
        else:
            new = regenerate(text, args.results)
            if new != text:
                path.write_text(new, encoding="utf-8")
                print(f"rewrote the tables of {path}")
    if stale:
        print("tables that differ from benchmarks/results (run python benchmarks/summarize.py):\n  " +
              "\n  ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
