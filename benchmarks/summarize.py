#!/usr/bin/env python
"""Compact Markdown tables from a benchmark's ``results.json``: one table per chosen metric,
rows = methods, columns = pairing ratios, cells = mean ± std over seeds.

    python benchmarks/summarize.py benchmarks/out/protein zeroshot_top1 knn_acc nmi gap_centroid_distance
    python benchmarks/summarize.py benchmarks/out/remote_sensing retrieval/rsicd/mean_recall zeroshot/ucm/zeroshot_top1

A metric may be qualified as ``task/dataset/metric`` when several blocks report it.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def compact_tables(results_path: str, metrics: list[str]) -> str:
    from gentleclip.app.report import compact_tables as tables

    return tables(results_path, metrics)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    print(compact_tables(sys.argv[1], sys.argv[2:]))
