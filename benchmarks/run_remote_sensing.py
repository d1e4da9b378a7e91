#!/usr/bin/env python
"""Reproduce the remote-sensing tables: methods x pairing ratios x seeds on RSICD image <-> caption.

Training items are the RSICD train images (7,862) with their 5 captions; the unpaired text pool can
grow with caption-only sets (Sydney, RSITMD). Scores: image<->caption retrieval on the RSICD test
split (1,093 images x 5 captions), zero-shot scene classification on RSICD scenes and UC Merced,
linear probe, clustering by scene and modality-gap metrics. Default encoders are offline:
ImageNet EfficientNet-Lite0 (images) and all-MiniLM-L6-v2 (captions).

``--data-dir`` is a folder laid out like ``../shared/data/remote_sensing`` (``rsicd/images``,
``rsicd/dataset_rsicd.json``, ``rsicd/classes``, ``ucm/images``, ``sydney/captions``,
``rsitmd/captions``). Features are cached (``--cache-dir``) and finished runs are reused.

Examples::

    python benchmarks/run_remote_sensing.py --data-dir ../shared/data/remote_sensing
    python benchmarks/run_remote_sensing.py --data-dir ../shared/data/remote_sensing --methods
    clip,gentle,s-clip,pseudo-nn --ratios 0.05
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
    d.add_argument("--data-dir", required=True,
                   help="folder laid out like ../shared/data/remote_sensing (rsicd/, ucm/, sydney/, rsitmd/)")
    d.add_argument("--image-encoder", default="efficientnet_lite0",
                   help="efficientnet_lite0 (offline default), a timm model name (with --image-weights) "
                        "or a torchgeo weight enum name")
    d.add_argument("--image-weights", default=None, help="weights file for a timm/torchgeo --image-encoder")
    d.add_argument("--text-encoder", default=None,
                   help="text encoder: a transformers model id or local folder (default: the offline all-MiniLM-L6-v2)")
    d.add_argument("--cache-dir", default="cache/features", help="feature cache folder (default: %(default)s)")
    d.add_argument("--views", type=int, default=2, help="image views per training item (default: %(default)s)")
    d.add_argument("--extra-text", default="sydney,rsitmd",
                   help="caption-only sets added to the unpaired text pool: any of sydney,rsitmd,ucm, or none "
                        "(default: %(default)s)")
    d.add_argument("--max-extra-text", type=int, default=None, help="keep at most this many extra caption groups")
    d.add_argument("--max-train", type=int, default=None, help="subsample the RSICD training images (default: all)")
    d.add_argument("--no-ucm", action="store_true", help="skip the UC Merced evaluation")
    d.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="malformed caption records or images: raise (default) or skip and report them")
    d.add_argument("--image-threads", type=int, default=None,
                   help="torch threads while encoding images (default: torch's setting)")
    d.add_argument("--open-clip", default=None, metavar="MODEL",
                   help="both encoders from one open_clip model (e.g. ViT-B-32): its image tower for the images, "
                        "its text tower for the captions (replaces --image-encoder and --text-encoder)")
    d.add_argument("--open-clip-weights", default=None, metavar="PATH",
                   help="the open_clip checkpoint (e.g. RemoteCLIP-ViT-B-32.pt); without it the weights are random")
    add_grid_arguments(p, out="benchmarks/out/remote_sensing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from domains.remote_sensing import ImageEncoder, RemoteSensingAdapter
    from domains.text import TextEncoder
    from gentleclip.app.grid import check_grid_arguments, layer_candidates, run_benchmark

    spec = check_grid_arguments(args)  # before any feature is computed
    start = time.time()
    device = None if args.device == "auto" else args.device
    extra = () if args.extra_text.strip().lower() in ("", "none") else tuple(
        s.strip() for s in args.extra_text.split(",") if s.strip())
    adapters = []

    if args.open_clip and (args.layers_a or args.layers_b):
        raise ValueError("--open-clip: layer selection (--layers-a/--layers-b) is not available for open_clip towers")
    pair = None
    if args.open_clip:
        from domains.remote_sensing.openclip import open_clip_pair

        pair = open_clip_pair(args.open_clip, args.open_clip_weights, device=device or "cpu")

    def build_task(layer_a: int | None, layer_b: int | None):
        text_encoder = None if args.text_encoder is None and layer_b is None else TextEncoder(
            model=args.text_encoder, device=device, layer=layer_b)
        image_encoder = args.image_encoder if layer_a is None else ImageEncoder(
            args.image_encoder, args.image_weights, stage=layer_a, num_threads=args.image_threads,
            **({} if device is None else {"device": device}))
        if pair is not None:
            image_encoder, text_encoder = pair
        adapter = RemoteSensingAdapter(args.data_dir, image_encoder=image_encoder, text_encoder=text_encoder,
                                       cache_dir=args.cache_dir, n_views=args.views, image_weights=args.image_weights,
                                       image_threads=args.image_threads, extra_text=extra, ucm=not args.no_ucm,
                                       on_error=args.on_error, raw_items=spec.finetune is not None)
        adapters.append(adapter)
        return adapter.build_task(max_train=args.max_train, max_extra_text=args.max_extra_text)

    task = layer_candidates(args, build_task)
    ref = getattr(task, "reference", task)
    leak = ref.info.get("extra_text_filter", {})
    print(f"task {ref.name} ({ref.dataset}): {len(ref.train_a)} training images, {ref.info.get('n_val')} "
          f"validation; extra text {ref.info.get('extra_text')}: {leak.get('n_groups', 0)} caption groups, "
          f"{leak.get('n_groups_removed_copy', 0)} removed whole (>= {leak.get('min_shared', 2)} captions of one "
          f"RSICD image), {leak.get('n_texts_removed_equal', 0)} captions equal to an RSICD caption removed, "
          f"{leak.get('n_groups_kept', 0)} groups kept; encoders {ref.encoders}; "
          f"features ready in {time.time() - start:.0f}s", flush=True)
    plots = ["mean_recall", "i2t_R@1", "t2i_R@1", "zeroshot_top1", "linear_probe_acc", "nmi", "joint_v_measure",
             "gap_centroid_distance"]
    headline = ["retrieval/rsicd/mean_recall", "zeroshot/rsicd/zeroshot_top1", "zeroshot/ucm/zeroshot_top1",
                "clustering/rsicd/joint_v_measure", "gap/rsicd/gap_centroid_distance"]
    towers = (adapters[0].image_encoder.tower(), adapters[0].text_encoder.tower()) if spec.finetune else None
    run_benchmark(task, args, plot_metrics=plots, headline=headline, spec=spec, towers=towers,
                            extra_config={"adapter": adapters[0].config() if len(adapters) == 1 else
                                          [a.config() for a in adapters], "max_train": args.max_train,
                                          "feature_time_s": round(time.time() - start, 1)})
    print(f"\nwrote {args.out} in {time.time() - start:.0f}s (all metrics: {args.out}/table.md)")
    return 0


if __name__ == "__main__":
    from gentleclip.app.cli import run_script

    run_script(main, "run_remote_sensing.py")
