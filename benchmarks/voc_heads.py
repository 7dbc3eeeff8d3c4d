"""VOC heads on a frozen EfficientNet-Lite0: external, nonlocal and none, three seeds each.

    python benchmarks/voc_heads.py [--seeds 0 1 2] [--cache-dir DIR] [--data-root DIR] [--checkpoint-dir DIR]

Every run trains one head on the same cached backbone features (eaviz.feature_cache) with
the recipe of ``python -m eaviz pretrained train voc-HEAD``; seed 0 is that recipe exactly,
and its run writes the checkpoint and card (default: the shipped ones, ``eaviz/checkpoints``).
Every run, with its per-epoch history, goes to ``eaviz/results/voc-heads.json`` (package data:
the book reads it with ``eaviz.bench.load_recorded("voc-heads")``) and the table (mean +- sd
over seeds of the held-out mIoU, over all classes present and over the 13 common ones) to
``benchmarks/results/voc-heads-<device>-<date>.md``; both are rewritten after every run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
from pathlib import Path

import torch

from eaviz.pretrained import train_cached_recipe
from eaviz.profile import describe_device

HEADS = ("external", "nonlocal", "none")
RESULTS = Path(__file__).parent / "results"
SHIPPED = Path(__file__).parents[1] / "eaviz"


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def table(runs: list[dict]) -> str:
    """Markdown: one row per head, mean ± sd over its seeds, and the per-class IoU means."""
    lines = [
        "| head | seeds | mIoU, 13 common classes | mIoU, all present classes | pixel accuracy | "
        "trained parameters | head training s | images/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for head in HEADS:
        rows = [r for r in runs if r["head"] == head]
        if not rows:
            continue
        lines.append(
            f"| {head} | {len(rows)} | {_mean_sd([r['miou_common'] for r in rows])} | "
            f"{_mean_sd([r['miou'] for r in rows])} | {_mean_sd([r['pixel_accuracy'] for r in rows])} | "
            f"{rows[0]['trained_parameters']:,} | {_mean_sd([r['train_seconds'] for r in rows])} | "
            f"{_mean_sd([r['images_per_s'] for r in rows])} |"
        )
    classes = list(runs[0]["iou"])
    rare = set(runs[0]["barely_seen_classes"])
    lines += ["", "IoU per class, mean over seeds (* = barely seen in training: < 0.2 M pixels in the data)", ""]
    lines.append("| class | " + " | ".join(h for h in HEADS if any(r["head"] == h for r in runs)) + " |")
    lines.append("| --- |" + " ---: |" * len({r["head"] for r in runs}))
    for name in classes:
        cells = [
            f"{statistics.mean(r['iou'][name] for r in runs if r['head'] == h):.3f}"
            for h in HEADS
            if any(r["head"] == h for r in runs)
        ]
        lines.append(f"| {name}{' *' if name in rare else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache-dir", default=None, help="feature cache (default: ~/.cache/eaviz/features)")
    parser.add_argument("--data-root", default=None, help="folder that holds VOCdevkit (default: $EAVIZ_DATA)")
    parser.add_argument(
        "--checkpoint-dir", default=SHIPPED / "checkpoints", help="where seed 0 writes voc-HEAD.pt and .json"
    )
    args = parser.parse_args()
    device = describe_device(torch.device("cpu"))
    stem = f"voc-heads-{'cpu' if 'cpu' in device else 'cuda'}-{datetime.date.today().isoformat()}"
    runs = []
    for seed in args.seeds:  # seed by seed, so an interrupted job still covers every head
        for head in HEADS:
            name = f"voc-{head}"
            card = train_cached_recipe(
                name, root=args.data_root, seed=seed, cache_dir=args.cache_dir, ship=seed == 0, folder=args.checkpoint_dir
            )
            metrics = card["val_metrics"]
            runs.append(
                {
                    "head": head,
                    "seed": seed,
                    "miou": metrics["miou"],
                    "miou_common": metrics["miou_common"],
                    "pixel_accuracy": metrics["pixel_accuracy"],
                    "iou": metrics["iou"],
                    "barely_seen_classes": metrics["barely_seen_classes"],
                    "history": card["history"],
                    "trained_parameters": card["trained_parameters"],
                    "train_seconds": card["train_seconds"],
                    "feature_seconds": card["feature_seconds"],
                    "images_per_s": card["images_per_s"],
                }
            )
            print(f"{name} seed {seed}: mIoU {metrics['miou']:.4f}, common {metrics['miou_common']:.4f}", flush=True)
            summary = {
                "command": "python benchmarks/voc_heads.py",
                "device": card["device"],
                "date": card["date"],
                "data": card["split"],
                "backbone": card["backbone"],
                "augmentation": card["augmentation"],
                "model": {k: v for k, v in card["model"].items() if k != "head"},
                "train": {k: v for k, v in card["train"].items() if k != "seed"},
                "runs": runs,
            }
            RESULTS.mkdir(exist_ok=True)
            (SHIPPED / "results" / "voc-heads.json").write_text(json.dumps(summary, indent=2) + "\n")
            (RESULTS / f"{stem}.md").write_text(table(runs))


if __name__ == "__main__":
    main()
