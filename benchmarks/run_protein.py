#!/usr/bin/env python
"""Reproduce the protein tables: methods x pairing ratios x seeds on sequence <-> text alignment.

With no arguments it runs offline on the embedded SCL2205 data (``p-scldata``): k-mer protein
features (hashed 1-3-mer composition, 1,444 dims, no weights needed) and all-MiniLM-L6-v2 text
features, methods ``clip``, ``gentle`` and ``gentle-reference``, pairing ratios 0, 1 %, 5 %, 10 %,
100 % of the training proteins, seeds 0, 1, 2. Sequence groups are MMseqs2 clusters at 30 %
identity (``--cluster-identity``; ``--cluster-method kmer`` for the weight-free k-mer Jaccard
groups). Every run is early-stopped on the validation split (SCL2205 ``eval``; 10 % of the training
proteins for user data) with each method's shipped preset; ``--tune`` re-selects them. It prints
the compact tables and writes ``results.json``, ``results.csv``, ``table.md``, ``config.json`` and plots to
``--out``. Features are cached (``--cache-dir``) and finished runs are reused, so a rerun (or a
run resumed after a kill) skips what is done.

Examples::

    python benchmarks/run_protein.py
    python benchmarks/run_protein.py --data-dir ../shared/data/protein/uniprot_flatfiles --out benchmarks/out/uniprot
    python benchmarks/run_protein.py --data-dir ../shared/data/protein/uniprot_flatfiles \
        --ec-prompts ../shared/data/protein/protst_prompts --out benchmarks/out/uniprot   # + EC zero-shot
    python benchmarks/run_protein.py --encoder esm2_t6_8M_UR50D --methods clip,gentle,s-clip-caption,pseudo-nn
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def build_parser() -> argparse.ArgumentParser:
    from gentleclip.app.grid import add_grid_arguments

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data and encoders")
    d.add_argument("--data-dir", default=None,
                   help="UniProt flat files (file or folder) or a FASTA + descriptions table; "
                        "default: the embedded SCL2205 localisation task")
    d.add_argument("--encoder", default="kmer3-h1024",
                   help="protein encoder: kmer3-h1024 (default: hashed 1-3-mer composition, no weights), kmer (exact, "
                        "8,420 dims), kmer2, an ESM-2 name "
                        "(esm2_t6_8M_UR50D ... esm2_t33_650M_UR50D) or a local ESM checkpoint path (fair-esm), or a "
                        "transformers ESM-2 (facebook/esm2_t6_8M_UR50D or a local folder with config.json)")
    d.add_argument("--text-encoder", default=None,
                   help="text encoder: a transformers model id or local folder (default: the offline all-MiniLM-L6-v2)")
    d.add_argument("--cache-dir", default="cache/features", help="feature cache folder (default: %(default)s)")
    d.add_argument("--max-train", type=int, default=None, help="subsample the training proteins (default: all)")
    d.add_argument("--max-test", type=int, default=None, help="subsample the evaluation proteins (default: all)")
    d.add_argument("--views", type=int, default=2, help="views per training item (default: %(default)s)")
    d.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="bad records in --data-dir (invalid residues, missing descriptions, duplicates): raise "
                        "(default) or skip and report them")
    d.add_argument("--cluster-method", choices=("mmseqs", "kmer"), default="mmseqs",
                   help="sequence groups for leak-free splits: mmseqs (MMseqs2 identity clusters) or kmer "
                        "(MinHash k-mer Jaccard) (default: %(default)s)")
    d.add_argument("--cluster-identity", type=float, default=0.3,
                   help="minimum sequence identity of an MMseqs2 cluster (default: %(default)s)")
    d.add_argument("--ec-prompts", default=None,
                   help="ProtST's reaction prompts (the folder of reaction_*.tsv, e.g. "
                        "../shared/data/protein/protst_prompts): adds zero-shot EC reaction classification over "
                        "its 384 classes to a --data-dir task (default: not scored)")
    add_grid_arguments(p, out="benchmarks/out/protein")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from domains.protein import ProteinAdapter
    from domains.protein.adapter import make_protein_encoder
    from domains.text import TextEncoder
    from gentleclip.app.grid import check_grid_arguments, layer_candidates, run_benchmark

    spec = check_grid_arguments(args)  # before any feature is computed
    if not 0.0 < args.cluster_identity <= 1.0:
        raise ValueError(f"--cluster-identity must be in (0, 1], got {args.cluster_identity}")
    if args.ec_prompts and not args.data_dir:
        raise ValueError("--ec-prompts scores UniProt entries' EC numbers: give --data-dir (SCL2205 has no EC numbers)")
    start = time.time()
    device = None if args.device == "auto" else args.device
    if args.layers_a and args.encoder.startswith("kmer"):
        raise ValueError(f"--layers-a: the k-mer encoder {args.encoder!r} has no layers; use an ESM-2 encoder")
    adapters = []

    def build_task(layer_a: int | None, layer_b: int | None):
        encoder = args.encoder if layer_a is None else make_protein_encoder(args.encoder, device=device, layer=layer_a)
        text_encoder = None if args.text_encoder is None and layer_b is None else TextEncoder(
            model=args.text_encoder, device=device, layer=layer_b)
        adapter = ProteinAdapter(encoder=encoder, text_encoder=text_encoder, cache_dir=args.cache_dir,
                                 data_dir=args.data_dir, n_views=args.views, max_train=args.max_train,
                                 max_test=args.max_test, device=device, cluster_method=args.cluster_method,
                                 on_error=args.on_error, cluster_identity=args.cluster_identity,
                                 raw_items=spec.finetune is not None, ec_prompts_dir=args.ec_prompts)
        adapters.append(adapter)
        return adapter.uniprot_task() if args.data_dir else adapter.scl2205_task()

    task = layer_candidates(args, build_task)
    ref = getattr(task, "reference", task)
    info = ref.info
    print(f"task {ref.name} ({ref.dataset}): {len(ref.train_a)} training, {info.get('n_val')} validation, "
          f"{info.get('n_test')} test proteins; {info.get('n_clusters')} sequence clusters "
          f"({info.get('clustering', {}).get('method')}); removed as near a training protein: "
          f"{info.get('n_removed_from_test', 0)} test, {info.get('n_removed_from_val', 0)} validation; "
          f"encoders {ref.encoders}; features ready in {time.time() - start:.0f}s", flush=True)
    if "ec_zero_shot" in info:
        ec = info["ec_zero_shot"]
        print(f"EC zero-shot: {ec['test_proteins']} test proteins with one EC number among ProtST's {ec['classes']} "
              f"classes ({ec['prompts']}){'' if ec['scored'] else '; fewer than 10, so not scored'}", flush=True)
    plots = ["mean_recall", "zeroshot_top1", "linear_probe_acc", "knn_acc", "nmi", "joint_v_measure",
             "gap_centroid_distance", *(["ec_zeroshot_top1"] if args.ec_prompts else [])]
    headline = (["mean_recall", "zeroshot_top1", *(["ec_zeroshot_top1"] if args.ec_prompts else []),
                 "joint_v_measure", "gap_centroid_distance"] if args.data_dir
                else ["zeroshot_top1", "knn_acc", "linear_probe_acc", "joint_v_measure", "gap_centroid_distance"])
    towers = (adapters[0].protein_encoder.tower(), adapters[0].text_encoder.tower()) if spec.finetune else None
    run_benchmark(task, args, plot_metrics=plots, headline=headline, spec=spec, towers=towers,
                            extra_config={"encoder": args.encoder,
                                          "text_encoder": args.text_encoder or "all-MiniLM-L6-v2",
                                          "data_dir": args.data_dir, "ec_prompts": args.ec_prompts,
                                          "max_train": args.max_train,
                                          "max_test": args.max_test,
                                          "feature_timings_s": adapters[0].timings if len(adapters) == 1 else
                                          [a.timings for a in adapters]})
    print(f"\nwrote {args.out} in {time.time() - start:.0f}s (all metrics: {args.out}/table.md)")
    return 0


if __name__ == "__main__":
    from gentleclip.app.cli import run_script

    run_script(main, "run_protein.py")
