"""The command line: ``python -m eaviz {train,eval,bench,pretrained} ...``.

A thin layer: each subcommand turns its flags into the config dataclasses and calls the
package function that a notebook would call (``eaviz.train.train``, ``eaviz.bench.bench_attention``,
...). Flags left out keep the dataclass defaults, so the defaults live in one place.

    python -m eaviz train cifar10 --mixer external --epochs 30 --out runs/cifar10-external
    python -m eaviz train voc --head external --epochs 30 --out runs/voc-external
    python -m eaviz eval runs/cifar10-external/last.pt
    python -m eaviz bench attention --sizes 256 1024 4096
    torchrun --nproc_per_node=4 -m eaviz train cifar10 ...   # data-parallel: train() reads the env
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from eaviz.attention import MIXERS, NORMS
from eaviz.bench import DTYPES, RESULTS_DIR, TRAIN_MIXERS, bench_attention, bench_train
from eaviz.data import DATASETS, ImageDataset, load_dataset
from eaviz.models import ClassifierConfig, SegmenterConfig, build_model
from eaviz.models.classifier import STEMS
from eaviz.models.segmenter import BACKBONES, HEADS
from eaviz.pretrained import RECIPES, available, load_card, train_recipe
from eaviz.profile import resolve_device
from eaviz.train import OPTIMIZERS, SCHEDULES, TrainConfig, evaluate, load_checkpoint, train

SEGMENTATION_TASKS = ("voc", "shapes_seg")
# Model flags and the config field each one sets, per kind of task.
CLASSIFIER_FLAGS = {
    "mixer": "mixer",
    "stem": "stem",
    "dim": "dim",
    "depth": "depth",
    "heads": "heads",
    "memory_units": "memory_units",
    "norm": "norm",
}
SEGMENTER_FLAGS = {
    "head": "head",
    "backbone": "backbone",
    "pretrained_backbone": "pretrained_backbone",
    "dim": "width",
    "memory_units": "memory_units",
    "norm": "norm",
}


TRAIN_DEFAULTS = asdict(TrainConfig())
CLASSIFIER_DEFAULTS = asdict(ClassifierConfig())
SEGMENTER_DEFAULTS = asdict(SegmenterConfig())


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root",
        metavar="DIR",
        help="folder that holds the datasets (default: $EAVIZ_DATA, else ~/.cache/eaviz/data)",
    )
    parser.add_argument(
        "--limit", type=int, metavar="N", help="keep only the first N images of each split (quick runs and tests)"
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download the official CIFAR / VOC files with torchvision when they are missing (needs network)",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default: auto = CUDA when available)")


def _add_train_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a classifier or a segmenter",
        description="Train a model on TASK and write OUT/last.pt after every epoch (and OUT/last.json at the end). "
        "Flags left out keep the defaults of ClassifierConfig / SegmenterConfig / TrainConfig, shown below.",
        epilog="examples:\n"
        "  python -m eaviz train cifar10 --mixer external --epochs 30 --out runs/x\n"
        "  python -m eaviz train voc --head external --out runs/voc\n"
        "  torchrun --nproc_per_node=4 -m eaviz train cifar10 --mixer self --out runs/sa",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "task",
        nargs="?",
        choices=DATASETS,
        help="dataset to train on; voc and shapes_seg train a Segmenter, the others a Classifier",
    )
    parser.add_argument("--dataset", choices=DATASETS, help="the same as TASK, for those who prefer a flag")
    model = parser.add_argument_group("model (classifier: cifar10, cifar100, shapes; segmenter: voc, shapes_seg)")
    c, s = CLASSIFIER_DEFAULTS, SEGMENTER_DEFAULTS
    model.add_argument("--mixer", choices=sorted(MIXERS), help=f"classifier token mixer (default: {c['mixer']})")
    model.add_argument(
        "--stem", choices=STEMS, help=f"classifier stem: conv layers or linear patch embedding (default: {c['stem']})"
    )
    model.add_argument(
        "--head", choices=HEADS, help=f"segmenter attention head: EANet block, non-local, none (default: {s['head']})"
    )
    model.add_argument("--backbone", choices=BACKBONES, help=f"segmenter backbone (default: {s['backbone']})")
    model.add_argument(
        "--pretrained-backbone",
        action="store_const",
        const=True,
        default=None,
        help="start the resnet18 backbone from torchvision's ImageNet weights (downloads them; online only)",
    )
    model.add_argument(
        "--dim",
        type=int,
        help=f"token dimension d of the classifier (default: {c['dim']}) "
        f"or channel width of the segmenter head (default: {s['width']})",
    )
    model.add_argument("--depth", type=int, help=f"number of classifier blocks (default: {c['depth']})")
    model.add_argument(
        "--heads", type=int, help=f"heads of self-attention / multi-head external attention (default: {c['heads']})"
    )
    model.add_argument(
        "--memory-units",
        type=int,
        metavar="S",
        help=f"memory units S of external attention (default: {c['memory_units']})",
    )
    model.add_argument(
        "--norm",
        choices=NORMS,
        help=f"external attention normalisation (default: {c['norm']}: softmax over tokens, then l1 over memory units)",
    )
    t = TRAIN_DEFAULTS
    loop = parser.add_argument_group("training")
    loop.add_argument("--epochs", type=int, help=f"passes over the training set (default: {t['epochs']})")
    loop.add_argument(
        "--batch-size", type=int, help=f"images per step, summed over all processes (default: {t['batch_size']})"
    )
    loop.add_argument("--lr", type=float, help=f"peak learning rate (default: {t['lr']})")
    loop.add_argument(
        "--optimizer", choices=OPTIMIZERS, help=f"SGD with Nesterov momentum or AdamW (default: {t['optimizer']})"
    )
    loop.add_argument("--momentum", type=float, help=f"SGD momentum (default: {t['momentum']})")
    loop.add_argument(
        "--weight-decay",
        type=float,
        help=f"weight decay on weight matrices and kernels (default: {t['weight_decay']})",
    )
    loop.add_argument(
        "--schedule", choices=SCHEDULES, help=f"decay after the warm-up: linear or cosine (default: {t['schedule']})"
    )
    loop.add_argument(
        "--warmup-epochs", type=float, help=f"epochs of linear learning-rate warm-up (default: {t['warmup_epochs']})"
    )
    loop.add_argument(
        "--label-smoothing", type=float, help=f"classification label smoothing (default: {t['label_smoothing']})"
    )
    loop.add_argument(
        "--ema",
        type=float,
        dest="ema_decay",
        metavar="DECAY",
        help="evaluate and save an exponential moving average of the weights with this decay, e.g. 0.999 "
        "(default: off)",
    )
    loop.add_argument(
        "--no-amp",
        action="store_const",
        const=False,
        dest="amp",
        help="turn off bf16 autocast on CUDA (the CPU always trains in float32)",
    )
    loop.add_argument("--compile", action="store_const", const=True, help="train through torch.compile")
    loop.add_argument(
        "--no-channels-last",
        action="store_const",
        const=False,
        dest="channels_last",
        help="keep images and weights in NCHW memory layout instead of channels_last",
    )
    loop.add_argument("--crop-size", type=int, help=f"segmentation training crop in pixels (default: {t['crop_size']})")
    loop.add_argument(
        "--seed", type=int, help=f"seed of the weights, shuffling and augmentation (default: {t['seed']})"
    )
    _add_data_flags(parser)
    parser.add_argument("--out", metavar="DIR", help="folder for last.pt and last.json (default: nothing is saved)")
    parser.add_argument(
        "--resume", metavar="CHECKPOINT", help="continue from a last.pt written by an earlier run with the same flags"
    )
    parser.set_defaults(func=_train, parser=parser)


def _add_eval_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint",
        description="Print the metrics of a checkpoint on a split: loss and accuracy, or pixel accuracy, mIoU "
        "and per-class IoU. The dataset is read from the card next to the checkpoint (OUT/last.json, "
        "eaviz/checkpoints/NAME.json) unless --dataset is given.",
    )
    parser.add_argument("checkpoint", help="a .pt file written by `python -m eaviz train` or a shipped checkpoint")
    parser.add_argument("--dataset", choices=DATASETS, help="dataset to evaluate on (default: the one in the card)")
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    parser.add_argument("--batch-size", type=int, default=500, help="images per forward pass (default: 500)")
    _add_data_flags(parser)
    parser.set_defaults(func=_eval, parser=parser)


def _add_bench_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark attention or training speed",
        description="Measure and record numbers in benchmarks/results/ (JSON) and print a markdown table.",
    )
    kinds = parser.add_subparsers(dest="bench", required=True, metavar="{attention,train}", help="what to measure")
    attention = kinds.add_parser(
        "attention",
        help="time and peak memory of self-attention vs external attention against N",
        description="Time (torch.utils.benchmark) and peak memory of one call of plain self-attention, fused "
        "self-attention (SDPA) and external attention on (batch, N, dim) tokens, for each N in --sizes. "
        "Sizes whose estimated memory exceeds --max-memory-gb are recorded as skipped.",
    )
    attention.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[256, 1024, 4096, 16384],
        metavar="N",
        help="numbers of tokens N (default: 256 1024 4096 16384)",
    )
    attention.add_argument("--dim", type=int, default=64, help="token dimension d (default: 64)")
    attention.add_argument(
        "--memory-units", type=int, default=64, metavar="S", help="memory units S of external attention (default: 64)"
    )
    attention.add_argument("--batch", type=int, default=1, help="batch size B (default: 1)")
    attention.add_argument(
        "--dtype",
        nargs="+",
        choices=sorted(DTYPES),
        help="dtypes to measure (default: float32 on the CPU; float32 and bfloat16 on CUDA)",
    )
    attention.add_argument("--no-backward", action="store_false", dest="backward", help="time the forward pass only")
    attention.add_argument(
        "--max-memory-gb",
        type=float,
        metavar="GB",
        help="skip cases estimated to need more (default: 90%% of the GPU, or a quarter of the RAM)",
    )
    attention.add_argument(
        "--min-run-time",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="seconds of repeated calls behind each timing (default: 0.5)",
    )
    attention.set_defaults(func=_bench_attention)
    training = kinds.add_parser(
        "train",
        help="training images/s of the CIFAR classifier with each mixer",
        description="Images per second (from the median step) of training steps (forward, loss, backward, "
        "SGD step) of the default CIFAR classifier on random images; bf16 autocast on CUDA only; channels_last.",
    )
    training.add_argument(
        "--mixers",
        nargs="+",
        choices=sorted(MIXERS),
        default=list(TRAIN_MIXERS),
        help=f"mixers to compare (default: {' '.join(TRAIN_MIXERS)})",
    )
    training.add_argument("--steps", type=int, default=10, help="timed training steps per mixer (default: 10)")
    training.add_argument(
        "--warmup-steps", type=int, default=2, help="untimed steps before the timed ones (default: 2)"
    )
    training.add_argument("--batch-size", type=int, default=128, help="images per step (default: 128)")
    training.set_defaults(func=_bench_train)
    for sub in (attention, training):
        sub.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto = CUDA when available)")
        sub.add_argument(
            "--threads", type=int, help="CPU threads for torch (default: torch's choice, usually all cores)"
        )
        sub.add_argument(
            "--out",
            default=str(RESULTS_DIR),
            metavar="DIR",
            help="folder for the JSON file (default: benchmarks/results in the repository)",
        )


def _add_pretrained_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "pretrained",
        help="list or retrain the checkpoints shipped with eaviz",
        description="The small checkpoints in eaviz/checkpoints and the recipes that produced them.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="{list,train}", help="what to do")
    listing = actions.add_parser(
        "list", help="show each recipe with the numbers on its card (metric, time, speed, memory)"
    )
    listing.set_defaults(func=_pretrained_list)
    retrain = actions.add_parser(
        "train",
        help="retrain one recipe on real data",
        description="Train a recipe and write eaviz/checkpoints/NAME.pt with its NAME.json card.",
    )
    retrain.add_argument("name", choices=sorted(RECIPES), help="the recipe to train")
    retrain.add_argument("--data-root", metavar="DIR", help="folder that holds the datasets (default: $EAVIZ_DATA)")
    retrain.add_argument("--out", default="runs", metavar="DIR", help="folder for the run's last.pt (default: runs)")
    retrain.set_defaults(func=_pretrained_train)


def _notebooks(argv: list[str]) -> int:
    # Imported here: the notebook tools need nbclient and PyYAML, which a Colab install lacks.
    from eaviz.notebooks import main as notebooks_main

    return notebooks_main(argv)


def _add_fast_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fast",
        help="the fast CIFAR-10 recipe: train, compare mixers, costs (see: python -m eaviz fast --help)",
        add_help=False,
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of eaviz.fast_recipe")


def _add_notebooks_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "notebooks",
        help="execute, sync or check the book's notebooks (see: python -m eaviz notebooks --help)",
        add_help=False,
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of eaviz.notebooks")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; ``python -m eaviz SUBCOMMAND --help`` explains each flag."""
    parser = argparse.ArgumentParser(
        prog="python -m eaviz",
        description="External attention, explained: train, evaluate and benchmark the book's models.",
    )
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="{train,eval,bench,pretrained,fast,notebooks}", help="what to do"
    )
    _add_train_parser(subparsers)
    _add_eval_parser(subparsers)
    _add_bench_parser(subparsers)
    _add_pretrained_parser(subparsers)
    _add_fast_parser(subparsers)
    _add_notebooks_parser(subparsers)
    return parser


def model_overrides(task: str, args: argparse.Namespace) -> dict:
    """Config fields set by the model flags that were given; flags of the other kind of task are an error."""
    segmentation = task in SEGMENTATION_TASKS
    flags, other = (SEGMENTER_FLAGS, CLASSIFIER_FLAGS) if segmentation else (CLASSIFIER_FLAGS, SEGMENTER_FLAGS)
    wrong = [name for name in other if name not in flags and getattr(args, name) is not None]
    if wrong:
        kind = "classification (cifar10, cifar100, shapes)" if segmentation else "segmentation (voc, shapes_seg)"
        given = ", ".join("--" + name.replace("_", "-") for name in wrong)
        args.parser.error(f"{given} {'only applies' if len(wrong) == 1 else 'only apply'} to {kind}, not to {task}")
    return {field: getattr(args, flag) for flag, field in flags.items() if getattr(args, flag) is not None}


def model_config(task: str, overrides: dict, train_set: ImageDataset) -> ClassifierConfig | SegmenterConfig:
    """The model for ``task``: classes (and image size) from the data, the rest from the flags."""
    if task in SEGMENTATION_TASKS:
        return SegmenterConfig(num_classes=train_set.num_classes, **overrides)
    return ClassifierConfig(num_classes=train_set.num_classes, image_size=train_set.images.shape[-1], **overrides)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """A TrainConfig from the training flags that were given."""
    given = {name: getattr(args, name) for name in TRAIN_DEFAULTS if getattr(args, name, None) is not None}
    return TrainConfig(**given)


def _data_kwargs(args: argparse.Namespace) -> dict:
    return {"root": args.data_root, "limit": args.limit, "download": args.download}


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _train(args: argparse.Namespace) -> int:
    if args.task and args.dataset and args.task != args.dataset:
        args.parser.error(f"TASK {args.task!r} and --dataset {args.dataset!r} disagree; give one of them")
    task = args.task or args.dataset
    if task is None:
        args.parser.error("give the dataset to train on, e.g. `python -m eaviz train cifar10`")
    overrides = model_overrides(task, args)
    config = train_config(args)
    train_set = load_dataset(task, "train", **_data_kwargs(args))
    val_set = load_dataset(task, "val", **_data_kwargs(args))
    model_cfg = model_config(task, overrides, train_set)
    torch.manual_seed(config.seed)
    model = build_model(model_cfg)
    if _is_main_process():
        parameters = sum(p.numel() for p in model.parameters())
        print(
            f"{task}: {len(train_set)} train / {len(val_set)} val images, {type(model).__name__} with "
            f"{parameters:,} parameters, device {resolve_device(config.device)}"
        )
    history = train(model, train_set, val_set, config, out=args.out, resume=args.resume)
    if not _is_main_process():
        return 0
    final = {k: v for k, v in history.last.items() if not isinstance(v, (dict, list))}
    print(json.dumps(final, indent=2))
    if args.out is not None:
        card = {
            "dataset": task,
            "task": train_set.task,
            "command": "python -m eaviz " + shlex.join(args.argv),
            "model": model_cfg.to_dict(),
            "train": asdict(config),
            "val_metrics": history.last.get("val_metrics", {}),
            "history": [{k: v for k, v in row.items() if k != "val_metrics"} for row in history.epochs],
            "date": datetime.date.today().isoformat(),
        }
        path = Path(args.out) / "last.json"
        path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"wrote {Path(args.out) / 'last.pt'} and {path}")
    return 0


def _dataset_of(checkpoint_path: Path, checkpoint: dict) -> str | None:
    """The dataset recorded in the checkpoint, else in the card beside it (NAME.json)."""
    card = checkpoint_path.with_suffix(".json")
    if "dataset" not in checkpoint and card.exists():
        return json.loads(card.read_text()).get("dataset")
    return checkpoint.get("dataset")


def _eval(args: argparse.Namespace) -> int:
    device = resolve_device(args.device or "auto")
    path = Path(args.checkpoint)
    model, checkpoint = load_checkpoint(path, device=device)
    dataset = args.dataset or _dataset_of(path, checkpoint)
    if dataset is None:
        args.parser.error(f"{path} records no dataset (no {path.with_suffix('.json').name} beside it); pass --dataset")
    data = load_dataset(dataset, args.split, **_data_kwargs(args))
    metrics = evaluate(model, data, batch_size=args.batch_size, device=device, progress=True)
    print(f"{path} on {dataset} {args.split} ({len(data)} images):")
    print(json.dumps(metrics, indent=2))
    return 0


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        torch.set_num_threads(args.threads)


def _bench_attention(args: argparse.Namespace) -> int:
    _set_threads(args)
    bench_attention(
        args.sizes,
        dim=args.dim,
        memory_units=args.memory_units,
        batch=args.batch,
        device=args.device,
        dtype=args.dtype,
        backward=args.backward,
        max_memory_gb=args.max_memory_gb,
        min_run_time=args.min_run_time,
        out=args.out,
    )
    return 0


def _bench_train(args: argparse.Namespace) -> int:
    _set_threads(args)
    bench_train(
        args.mixers,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup_steps=args.warmup_steps,
        device=args.device,
        out=args.out,
    )
    return 0


def _pretrained_list(args: argparse.Namespace) -> int:
    """One line per recipe: its validation metric, training time and speed, from its card."""
    present = set(available())
    print(f"{'name':28} {'data':8} {'epochs':>6} {'val':>7} {'train s':>8} {'img/s':>7} {'peak MiB':>9}  device")
    for name, recipe in sorted(RECIPES.items()):
        if name not in present:
            retrain = f"python -m eaviz pretrained train {name}"
            print(f"{name:28} {recipe.dataset:8} {recipe.train.epochs:6d}  (missing: {retrain})")
            continue
        card = load_card(name)
        metric = card["val_metrics"].get("accuracy", card["val_metrics"].get("miou"))
        print(
            f"{name:28} {recipe.dataset:8} {card['epochs']:6d} {metric:7.4f} {card['train_seconds']:8.0f} "
            f"{card['images_per_s']:7.1f} {card['peak_memory_mib']:9.0f}  {card['device']}, {card['date']}"
        )
    return 0


def _pretrained_train(args: argparse.Namespace) -> int:
    card = train_recipe(args.name, root=args.data_root, out=args.out)
    print(json.dumps({k: card[k] for k in ("name", "dataset", "val_metrics", "train_seconds", "device")}, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the subcommand; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["notebooks"]:  # its own parser, flags and --help included
        return _notebooks(argv[1:])
    if argv[:1] == ["fast"]:
        from eaviz.fast_recipe import main as fast_main

        return fast_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as error:
        # Missing data or a bad setting: the message says what to do, a traceback would bury it.
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")
