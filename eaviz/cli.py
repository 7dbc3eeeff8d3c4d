"""The command line: ``python -m eaviz {train,eval,bench,pretrained,notebooks} ...``.

A thin layer: each subcommand turns its flags into the config dataclasses and calls the
package function that a notebook would call (``eaviz.train.train``, ``eaviz.bench.bench_attention``,
...). The training flags are generated from the fields of ``TrainConfig``, ``ClassifierConfig``
and ``SegmenterConfig``, and their help is the comment beside each field, so a new field is
a new flag. Flags left out keep the dataclass defaults, so the defaults live in one place.

    python -m eaviz train cifar10 --mixer external --epochs 30 --out runs/cifar10-vit-external
    python -m eaviz train voc --head external --epochs 30 --out runs/voc-external
    python -m eaviz eval runs/cifar10-vit-external/last.pt
    python -m eaviz bench attention --sizes 256 1024 4096
    torchrun --nproc_per_node=4 -m eaviz train cifar10 ...   # data-parallel: train() reads the env

A user error (bad flag, missing or broken file, a run that diverged) prints one line on
stderr and exits with code 2 (1 for a run that failed while training); ``--debug`` or
``EAVIZ_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path

import torch

from eaviz._checks import check_device
from eaviz._flags import Parser, add_field_flag, build_config, folder, integer, number
from eaviz._io import claim_folder, read_json
from eaviz.attention import MIXERS, NORMS
from eaviz.bench import DTYPES, bench_attention, bench_train, results_dir
from eaviz.card import make_card, write_card
from eaviz.data import DATASETS, ImageDataset, load_dataset
from eaviz.models import ClassifierConfig, SegmenterConfig, build_model
from eaviz.models.classifier import STEMS
from eaviz.models.segmenter import BACKBONES, HEADS, voc_config
from eaviz.pretrained import RECIPES, available, checkpoints_dir, load_card, train_recipe
from eaviz.train import OPTIMIZERS, SCHEDULES, TrainConfig, TrainingDiverged, evaluate, load_checkpoint, train

DEBUG_ENV = "EAVIZ_DEBUG"
POSITIVE, NONNEGATIVE = integer(1), integer(0)
SEGMENTATION_TASKS = ("voc", "shapes_seg")
FROM_DATA = ("num_classes", "image_size")  # model fields read off the dataset, not set by flags
CHOICES = {
    "mixer": sorted(MIXERS),
    "stem": STEMS,
    "norm": NORMS,
    "head": HEADS,
    "backbone": BACKBONES,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
}
# Flags named apart from their field (the segmenter's width shares --dim with the classifier's dim: _field_of).
RENAMED = {"ema_decay": ("--ema", "--ema-decay")}
METAVARS = {"memory_units": "S", "ema_decay": "DECAY", "lr": "LR"}


# --- flags generated from the config dataclasses ----------------------------------------------


def _model_fields() -> dict[str, list[type]]:
    """Each settable model field (the segmenter's ``width`` under the classifier's ``dim``) -> its configs."""
    owners: dict[str, list[type]] = {}
    for cls in (ClassifierConfig, SegmenterConfig):
        for spec in fields(cls):
            if spec.name not in FROM_DATA:
                owners.setdefault("dim" if spec.name == "width" else spec.name, []).append(cls)
    return owners


def _field_of(cls: type, flag: str) -> str:
    return "width" if (cls, flag) == (SegmenterConfig, "dim") else flag


# --- the parsers --------------------------------------------------------------------------


def _add_data_flags(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    parser.add_argument(
        "--data-root",
        metavar="DIR",
        help="folder that holds the datasets (default: $EAVIZ_DATA, else ~/.cache/eaviz/data)",
    )
    parser.add_argument(
        "--limit", type=POSITIVE, metavar="N", help="keep only the first N images of each split (quick runs and tests)"
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download the official CIFAR / VOC files with torchvision when they are missing (needs network)",
    )
    if device:
        parser.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default: auto = CUDA when available)")


def _add_train_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a classifier or a segmenter",
        description="Train a model on TASK and write OUT/last.pt after every epoch, OUT/best.pt when the\n"
        "validation score improves, and OUT/last.json (the card) at the end. Every field of ClassifierConfig,\n"
        "SegmenterConfig and TrainConfig is a flag (classes and image size come from the data); flags left\n"
        "out keep the defaults shown below.",
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
    for flag, owners in _model_fields().items():
        fields_ = {cls: _field_of(cls, flag) for cls in owners}
        add_field_flag(model, fields_, flag, choices=CHOICES.get(flag), metavar=METAVARS.get(flag))
    loop = parser.add_argument_group("training")
    for spec in fields(TrainConfig):
        options = RENAMED.get(spec.name)
        add_field_flag(loop, {TrainConfig: spec.name}, spec.name, options=options, choices=CHOICES.get(spec.name),
                       metavar=METAVARS.get(spec.name))  # fmt: skip
    _add_data_flags(parser, device=False)
    parser.add_argument(
        "--out",
        type=folder,
        metavar="DIR",
        help="folder for last.pt, best.pt and last.json (default: nothing is saved)",
    )
    parser.add_argument(
        "--resume", metavar="CHECKPOINT", help="continue from a last.pt written by an earlier run with the same flags"
    )
    parser.set_defaults(func=_train, parser=parser)


def _add_eval_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint",
        description="Print the metrics of a checkpoint on a split: loss and accuracy, or pixel accuracy, mIoU "
        "and per-class IoU. The dataset is the one recorded in the checkpoint or in the card beside it "
        "(OUT/last.json, NAME.json) unless --dataset is given.",
    )
    parser.add_argument("checkpoint", help="a .pt file written by `python -m eaviz train` or a shipped checkpoint")
    parser.add_argument("--dataset", choices=DATASETS, help="dataset to evaluate on (default: the recorded one)")
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    parser.add_argument("--batch-size", type=POSITIVE, default=500, help="images per forward pass (default: 500)")
    _add_data_flags(parser)
    parser.set_defaults(func=_eval, parser=parser)


def _add_bench_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark attention or training speed",
        description="Measure, print a markdown table and record the numbers as JSON in a folder you own "
        "(--out; default $EAVIZ_HOME/results, else ~/.cache/eaviz/results). The results the book shows ship "
        "in eaviz/results/; eaviz.bench.load_results reads those and yours.",
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
        type=POSITIVE,
        nargs="+",
        default=[256, 1024, 4096, 16384],
        metavar="N",
        help="numbers of tokens N (default: 256 1024 4096 16384)",
    )
    attention.add_argument("--dim", type=POSITIVE, default=64, help="token dimension d (default: 64)")
    attention.add_argument(
        "--memory-units",
        type=POSITIVE,
        default=64,
        metavar="S",
        help="memory units S of external attention (default: 64)",
    )
    attention.add_argument("--batch", type=POSITIVE, default=1, help="batch size B (default: 1)")
    attention.add_argument(
        "--dtype",
        nargs="+",
        choices=sorted(DTYPES),
        help="dtypes to measure (default: float32 on the CPU; float32 and bfloat16 on CUDA)",
    )
    attention.add_argument("--no-backward", action="store_false", dest="backward", help="time the forward pass only")
    attention.add_argument(
        "--max-memory-gb",
        type=number(0),
        metavar="GB",
        help="skip cases estimated to need more (default: 90%% of the GPU, or a quarter of the RAM)",
    )
    attention.add_argument(
        "--min-run-time",
        type=number(0),
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
        help="mixers to compare (default: every registered mixer)",
    )
    training.add_argument("--steps", type=POSITIVE, default=10, help="timed training steps per mixer (default: 10)")
    training.add_argument(
        "--warmup-steps", type=NONNEGATIVE, default=2, help="untimed steps before the timed ones (default: 2)"
    )
    training.add_argument("--batch-size", type=POSITIVE, default=128, help="images per step (default: 128)")
    training.set_defaults(func=_bench_train)
    for sub in (attention, training):
        sub.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto = CUDA when available)")
        sub.add_argument(
            "--threads", type=POSITIVE, help="CPU threads for torch (default: torch's choice, usually all cores)"
        )
        sub.add_argument(
            "--out",
            type=folder,
            metavar="DIR",
            help="folder for the JSON file "
            f"(default: $EAVIZ_HOME/results, else ~/.cache/eaviz/results; now {results_dir()})",
        )
        sub.set_defaults(parser=sub)


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
    listing.set_defaults(func=_pretrained_list, parser=listing)
    retrain = actions.add_parser(
        "train",
        help="retrain one recipe on real data",
        description="Train a recipe and write NAME.pt with its NAME.json card to a folder you own (--checkpoint-dir; "
        "default $EAVIZ_HOME/checkpoints, else ~/.cache/eaviz/checkpoints), never into the installed package. "
        "Load it with eaviz.load_pretrained(NAME, folder=DIR); to ship it, pass --checkpoint-dir eaviz/checkpoints "
        "in a checkout.",
    )
    retrain.add_argument("name", choices=sorted(RECIPES), help="the recipe to train")
    retrain.add_argument("--data-root", metavar="DIR", help="folder that holds the datasets (default: $EAVIZ_DATA)")
    retrain.add_argument(
        "--out", type=folder, default="runs", metavar="DIR", help="folder for the run's last.pt (default: runs)"
    )
    retrain.add_argument(
        "--checkpoint-dir",
        type=folder,
        metavar="DIR",
        help=f"folder for NAME.pt and NAME.json (default: $EAVIZ_HOME/checkpoints, else ~/.cache/eaviz/checkpoints; "
        f"now {checkpoints_dir()})",
    )
    retrain.set_defaults(func=_pretrained_train, parser=retrain)


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
    parser = Parser(
        prog="python -m eaviz",
        description="External attention, explained: train, evaluate and benchmark the book's models.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the full traceback of an error instead of one line (also: {DEBUG_ENV}=1); "
        "may be given anywhere on the line",
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


# --- from flags to configs ----------------------------------------------------------------


def model_overrides(task: str, args: argparse.Namespace) -> dict:
    """Config fields set by the model flags that were given; flags of the other kind of task are an error."""
    segmentation = task in SEGMENTATION_TASKS
    mine = SegmenterConfig if segmentation else ClassifierConfig
    owners = _model_fields()
    wrong = [flag for flag, classes in owners.items() if mine not in classes and getattr(args, flag) is not None]
    if wrong:
        kind = "classification (cifar10, cifar100, shapes)" if segmentation else "segmentation (voc, shapes_seg)"
        given = ", ".join("--" + name.replace("_", "-") for name in wrong)
        args.parser.error(f"{given} {'only applies' if len(wrong) == 1 else 'only apply'} to {kind}, not to {task}")
    overrides = {}
    for flag, classes in owners.items():
        value = getattr(args, flag)
        if mine in classes and value is not None:
            overrides[_field_of(mine, flag)] = tuple(value) if isinstance(value, list) else value
    return overrides


def model_config(task: str, overrides: dict, train_set: ImageDataset) -> ClassifierConfig | SegmenterConfig:
    """The model for ``task``: classes (and image size) from the data, the rest from the flags."""
    if task == "voc" and "backbone" not in overrides:
        return voc_config(overrides.pop("head", "external"), num_classes=train_set.num_classes, **overrides)
    if task in SEGMENTATION_TASKS:
        return SegmenterConfig(num_classes=train_set.num_classes, **overrides)
    return ClassifierConfig(num_classes=train_set.num_classes, image_size=train_set.images.shape[-1], **overrides)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """A TrainConfig from the training flags that were given."""
    names = [spec.name for spec in fields(TrainConfig)]
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    parser = getattr(args, "parser", None) or build_parser()
    return build_config(TrainConfig, given, parser, {"ema_decay": "--ema"})


def _data_kwargs(args: argparse.Namespace) -> dict:
    return {"root": args.data_root, "limit": args.limit, "download": args.download}


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# --- the subcommands ----------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    if args.task and args.dataset and args.task != args.dataset:
        args.parser.error(f"TASK {args.task!r} and --dataset {args.dataset!r} disagree; give one of them")
    task = args.task or args.dataset
    if task is None:
        args.parser.error("give the dataset to train on, e.g. `python -m eaviz train cifar10`")
    overrides = model_overrides(task, args)
    segmentation = task in SEGMENTATION_TASKS
    build_config(SegmenterConfig if segmentation else ClassifierConfig, overrides, args.parser, {"width": "--dim"})
    config = train_config(args)
    device = check_device(config.device)  # before loading data: a missing GPU is found at once
    out = args.out
    with claim_folder(out) if out is not None and _is_main_process() else nullcontext():
        train_set = load_dataset(task, "train", **_data_kwargs(args))
        val_set = load_dataset(task, "val", **_data_kwargs(args))
        model_cfg = model_config(task, overrides, train_set)
        torch.manual_seed(config.seed)
        model = build_model(model_cfg)
        if _is_main_process():
            parameters = sum(p.numel() for p in model.parameters())
            print(
                f"{task}: {len(train_set)} train / {len(val_set)} val images, {type(model).__name__} with "
                f"{parameters:,} parameters, device {device}"
            )
        started = time.perf_counter()
        history = train(model, train_set, val_set, config, out=out, resume=args.resume)
        if not _is_main_process():
            return 0
        final = {k: v for k, v in history.last.items() if not isinstance(v, (dict, list))}
        print(json.dumps(final, indent=2))
        if out is not None:
            card = make_card(
                name=Path(out).name,
                model=model,
                train_set=train_set,
                val_set=val_set,
                train_config=config,
                history=history,
                seconds=time.perf_counter() - started,
                device=device,
                command="python -m eaviz " + shlex.join(args.argv),
            )
            path = write_card(card, Path(out) / "last.json")
            print(f"wrote {Path(out) / 'last.pt'} and {path}")
    return 0


def _dataset_of(checkpoint_path: Path, checkpoint: dict) -> str | None:
    """The dataset recorded in the checkpoint, else in the card beside it (NAME.json)."""
    card = checkpoint_path.with_suffix(".json")
    if "dataset" not in checkpoint and card.exists():
        return read_json(card).get("dataset")
    return checkpoint.get("dataset")


def _eval(args: argparse.Namespace) -> int:
    device = check_device(args.device or "auto")
    path = Path(args.checkpoint)
    model, checkpoint = load_checkpoint(path, device=device)
    recorded = _dataset_of(path, checkpoint)
    dataset = args.dataset or recorded
    if dataset is None:
        args.parser.error(f"{path} records no dataset (no {path.with_suffix('.json').name} beside it); pass --dataset")
    if recorded is not None and dataset != recorded:
        warnings.warn(f"{path} was trained on {recorded}; evaluating it on {dataset}, as --dataset asks")
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
        out=args.out or results_dir(),
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
        out=args.out or results_dir(),
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
    card = train_recipe(args.name, root=args.data_root, out=args.out, folder=args.checkpoint_dir)
    print(json.dumps({k: card[k] for k in ("name", "dataset", "val_metrics", "train_seconds", "device")}, indent=2))
    return 0


def _notebooks(argv: list[str]) -> int:
    # Imported here: the notebook tools need nbclient and PyYAML, which a Colab install lacks.
    from eaviz.notebooks import main as notebooks_main

    return notebooks_main(argv)


# --- errors as one line -------------------------------------------------------------------


def _one_line(error: BaseException) -> str:
    """The message of ``error`` on one line; OS errors as 'reason: path'."""
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.strerror}: {error.filename}"
    text = " ".join(str(error.args[0] if isinstance(error, KeyError) and error.args else error).split())
    return text or type(error).__name__


def _report(prog: str, error: BaseException) -> int:
    """Print ``error`` as one line on stderr; return the exit code."""
    if isinstance(error, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    message = _one_line(error)
    if isinstance(error, TrainingDiverged):
        code = 1
    elif isinstance(error, (OSError, ValueError, TypeError, EOFError)) or type(error) is RuntimeError:
        code = 2
    else:  # not a user error we know of: say how to see more
        message = f"{type(error).__name__}: {message} (unexpected: rerun with --debug and report the traceback)"
        code = 1
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def _note(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"python -m eaviz: note: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the subcommand; returns the exit code.

    A user error raises SystemExit with a non-zero code after printing one line on stderr.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [arg for arg in argv if arg != "--debug"]
    prog = "python -m eaviz" + (f" {argv[0]}" if argv[:1] and not argv[0].startswith("-") else "")
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _note
        try:
            if argv[:1] == ["notebooks"]:  # its own parser, flags and --help included
                return _notebooks(argv[1:])
            if argv[:1] == ["fast"]:  # the fast CIFAR-10 recipe: its own parser too
                from eaviz.fast_recipe import main as fast_main

                return fast_main(argv[1:])
            args = build_parser().parse_args(argv)
            args.argv = argv
            return args.func(args)
        except SystemExit:
            raise
        except BaseException as error:
            if debug:
                raise
            raise SystemExit(_report(prog, error)) from None
