"""The fast CIFAR-10 recipe for :class:`~eaviz.models.FastClassifier`, after airbench94.

    init_whitening(model, 5,000 training images)
    for epoch in range(epochs):
        train_one_epoch():                           # eaviz.train's loop
            for images, labels in batches:           # translate by 2 px, alternating flip
                loss = label_smoothed_cross_entropy(model(images), labels)
                loss.backward(); sgd_nesterov.step() # triangle lr; BN biases at 64x the lr
                every 5 steps: lookahead(model)      # pull the weights toward a slow average
        evaluate(), save_state()

The learning rate and weight decay are given per 1,024 summed examples and divided by the
step size momentum amounts to, as airbench does, so that changing momentum or batch size
does not change how far a step goes. ``python -m eaviz fast train|compare|costs`` runs it.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import shlex
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from eaviz._flags import Parser, add_field_flag, build_config
from eaviz._io import atomic_save, atomic_write_text
from eaviz.attention import MIXERS
from eaviz.card import make_card, write_card
from eaviz.data.dataset import ImageDataset, draw_across_classes
from eaviz.data.loader import FLIPS, BatchLoader
from eaviz.models.fast_classifier import FastClassifier, FastClassifierConfig, init_whitening
from eaviz.paths import user_dir, writable_folder
from eaviz.profile import resolve_device, seed_everything
from eaviz.train import History, TrainingState, evaluate, restore_state, save_state, train_one_epoch

LOOKAHEAD_EVERY = 5
COMPARED = ("external", "multihead_external", "self", "none")
FLAG_NAMES = {"time_budget_s": "--time-budget"}  # flags not named after their field


@dataclass
class FastRecipeConfig:
    """Training settings of the fast recipe; a checkpoint stores them next to the model's config."""

    epochs: int = 10  # the schedule's length in epochs (an upper bound with time_budget_s)
    batch_size: int = 1024  # images per step
    lr: float = 11.5  # learning rate per 1,024 examples of summed loss
    momentum: float = 0.85  # Nesterov momentum
    weight_decay: float = 0.0153  # per 1,024 examples, decoupled from the learning rate
    bias_scaler: float = 64.0  # the BN biases learn this much faster (weight decay unchanged)
    label_smoothing: float = 0.2  # weight of the uniform target mixed into the one-hot one
    whiten_bias_fraction: float = 0.3  # the whitening conv's bias learns for this part of the run, then freezes
    whiten_images: int = 5000  # training images the whitening filters are computed from
    translate: int = 2  # largest random shift of an image, in pixels (reflect padding)
    flip: str = "alternating"  # horizontal flips: "alternating" (every image switches each epoch) or "random"
    lookahead: bool = True  # every 5 steps pull the weights toward a slow average
    train_limit: int | None = None  # train on this many images (drawn across the classes), for short comparisons
    time_budget_s: float | None = None  # schedule over this many seconds of training instead of ``epochs``
    amp: bool = True  # bf16 autocast on CUDA; the CPU stays in fp32 (its bf16 is much slower)
    channels_last: bool = True  # keep images and activations in channels-last memory order
    seed: int = 0  # seeds the weights, the whitening sample and the batches
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"expected epochs >= 1 and batch_size >= 1, got {self.epochs} and {self.batch_size}")
        if self.flip not in FLIPS:
            raise ValueError(f"expected flip to be one of {FLIPS}, got {self.flip!r}")


RECIPE_FLAGS = tuple(f.name for f in fields(FastRecipeConfig) if f.name != "seed")  # seed: --seed / --seeds


def _flag(name: str) -> str:
    """The command-line flag of recipe field ``name``: ``batch_size`` -> ``--batch-size``."""
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def triangle(progress: float, start: float = 0.2, peak: float = 0.23, end: float = 0.07) -> float:
    """Learning-rate factor at ``progress`` in [0, 1]: linear from ``start`` to 1 at ``peak``, then to ``end``."""
    if progress < peak:
        return start + (1 - start) * progress / peak
    return 1 + (end - 1) * min(1.0, (progress - peak) / (1 - peak))


def make_optimizer(model: FastClassifier, config: FastRecipeConfig) -> torch.optim.SGD:
    """Nesterov SGD with airbench's scaling: ``lr`` per 1,024 examples of summed loss.

    The loss is the batch mean, so the rate per summed example is multiplied by the batch
    size. PyTorch's SGD multiplies weight decay by the learning rate, so each group's decay
    is divided by its rate: every parameter then decays by the same amount per step, except
    the mixers' own parameters (memories, attention projections) and their blocks' output BN,
    which do not decay: decayed, the memories shrank and the attention went flat. The groups
    carry their role as ``"name"`` (see :meth:`FastClassifier.parameter_groups`).
    """
    kilostep = 1024 * (1 + 1 / (1 - config.momentum))
    lr = config.lr * config.batch_size / kilostep
    decay = config.weight_decay * config.batch_size / kilostep
    lr_bias = lr * config.bias_scaler
    groups = model.parameter_groups()
    return torch.optim.SGD(
        [
            {"name": "norm_biases", "params": groups["norm_biases"], "lr": lr_bias, "weight_decay": decay / lr_bias},
            {"name": "whiten_bias", "params": groups["whiten_bias"], "lr": lr, "weight_decay": decay / lr},
            {"name": "mixers", "params": groups["mixers"], "lr": lr, "weight_decay": 0.0},
            {"name": "other", "params": groups["other"], "lr": lr, "weight_decay": decay / lr},
        ],
        momentum=config.momentum,
        nesterov=True,
    )


class RecipeClock:
    """How far a run has come, in [0, 1]: optimizer steps out of ``total_steps``, or, with a
    time budget, seconds of training spent out of ``budget_s`` (timed per epoch by :meth:`timing`).
    """

    def __init__(self, total_steps: int, budget_s: float | None = None) -> None:
        self.total_steps, self.budget_s = total_steps, budget_s
        self.spent_s, self._started = 0.0, None

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Count the time inside the block as training time."""
        self._started = time.perf_counter()
        try:
            yield
        finally:
            self.spent_s += time.perf_counter() - self._started
            self._started = None

    def progress(self, step: int) -> float:
        if self.budget_s is None:
            return step / self.total_steps
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return min(1.0, (self.spent_s + running) / self.budget_s)

    def out_of_time(self) -> bool:
        return self.budget_s is not None and self.progress(0) >= 1.0


def make_schedule(
    optimizer: torch.optim.SGD, config: FastRecipeConfig, clock: RecipeClock
) -> torch.optim.lr_scheduler.LambdaLR:
    """The :func:`triangle` learning rate over the clock's progress; the whitening bias's rate
    drops to 0 (it freezes) after ``whiten_bias_fraction`` of the run."""

    def rate(step: int) -> float:
        return triangle(clock.progress(step))

    def whiten_rate(step: int) -> float:
        now = clock.progress(step)
        return triangle(now) if now < config.whiten_bias_fraction else 0.0

    rates = {"whiten_bias": whiten_rate}
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [rates.get(g["name"], rate) for g in optimizer.param_groups])


class Lookahead(nn.Module):
    """A slow copy of the weights (and BN statistics): every ``every`` steps
    ``slow += (1 - decay) (fast - slow); fast = slow``, with ``decay = lookahead_decay(progress)``.

    Has :class:`~torch.optim.swa_utils.AveragedModel`'s interface (``module`` is the slow copy,
    ``n_averaged`` counts the steps, ``update_parameters`` follows each step), so
    :func:`eaviz.train.train_one_epoch` runs it and :func:`eaviz.train.save_state` saves it.
    On the last step (progress 1) the fast weights take the slow ones.
    """

    def __init__(self, model: nn.Module, clock: RecipeClock | None = None, every: int = LOOKAHEAD_EVERY) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.register_buffer("n_averaged", torch.zeros((), dtype=torch.long))
        self.clock, self.every = clock, every

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        fast = model.state_dict()
        for key, slow in self.module.state_dict().items():
            if slow.is_floating_point():
                slow.lerp_(fast[key], 1 - decay)
                fast[key].copy_(slow)

    def update_parameters(self, model: nn.Module) -> None:
        self.n_averaged += 1
        now = self.clock.progress(int(self.n_averaged))
        if now >= 1.0:
            self.update(model, 1.0)
        elif self.n_averaged % self.every == 0:
            self.update(model, lookahead_decay(now))


def lookahead_decay(progress: float) -> float:
    """How much of the slow weights a lookahead step keeps: grows as progress^3, up to 0.95^5."""
    return 0.95**LOOKAHEAD_EVERY * progress**3


@torch.no_grad()
def predict_tta(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """airbench's test-time augmentation: mean logits over mirror x {no shift, +1 px, -1 px}.

    images: (B, 3, 32, 32) -> logits (B, classes). Half the weight on the unshifted pair.
    """

    def mirrored(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (model(x) + model(x.flip(-1)))

    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    shifted = 0.5 * (mirrored(padded[..., :32, :32]) + mirrored(padded[..., 2:, 2:]))
    return 0.5 * mirrored(images) + 0.5 * shifted


@torch.no_grad()
def tta_accuracy(model: nn.Module, dataset: ImageDataset, *, batch_size: int = 500) -> float:
    """Accuracy of :func:`predict_tta` on ``dataset`` (model in eval mode, on its own device)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    for images, targets in BatchLoader(dataset, batch_size, device=device):
        correct += (predict_tta(model, images).argmax(1) == targets).sum().item()
    model.train(was_training)
    return correct / len(dataset)


def train_fast(
    model: FastClassifier,
    train_set: ImageDataset,
    val_set: ImageDataset | None,
    config: FastRecipeConfig,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    stop_after: int | None = None,
    progress_bar: bool = True,
) -> History:
    """Train ``model`` with the fast recipe, evaluating ``val_set`` after every epoch.

    The epochs are :func:`eaviz.train.train_one_epoch` with this recipe's optimizer, schedule
    and lookahead. The schedule follows the progress of the run (:class:`RecipeClock`): steps
    done out of ``epochs`` worth, or, with ``time_budget_s``, seconds of training spent out
    of the budget (then ``epochs`` is only an upper bound and the last epoch may end early).
    With ``out``, writes ``out/last.pt`` after every epoch (:func:`eaviz.train.save_state`);
    ``resume`` continues from one; ``stop_after`` ends this call after that many epochs.
    """
    device = resolve_device(config.device)
    seed_everything(config.seed)
    if config.train_limit is not None and config.train_limit < len(train_set):
        train_set = train_set.subset(draw_across_classes(train_set.targets, config.train_limit, config.seed))
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    picked = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.seed))
    init_whitening(model, train_set.images[picked[: config.whiten_images]])
    batches = BatchLoader(
        train_set,
        config.batch_size,
        shuffle=True,
        augment=True,
        device=device,
        seed=config.seed,
        drop_last=True,
        channels_last=config.channels_last,
        translate=config.translate,
        flip=config.flip,
    )
    if len(batches) == 0:
        raise ValueError(f"expected at least one batch: {len(train_set)} images, batch_size {config.batch_size}")
    clock = RecipeClock(config.epochs * len(batches), config.time_budget_s)
    optimizer = make_optimizer(model, config)
    scheduler = make_schedule(optimizer, config, clock)
    lookahead = Lookahead(model, clock) if config.lookahead else None
    state = TrainingState(model, optimizer, scheduler, batches, lookahead)
    if resume is not None:
        restore_state(resume, state, config, train_set)
        clock.spent_s = sum(row["seconds"] for row in state.history.epochs)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    last_epoch = config.epochs if stop_after is None else min(config.epochs, state.epoch + stop_after)
    for epoch in range(state.epoch + 1, last_epoch + 1):
        if clock.progress(scheduler.last_epoch) >= 1.0:
            break
        with clock.timing():
            done = train_one_epoch(
                model,
                batches,
                optimizer,
                scheduler,
                criterion,
                ema=lookahead,
                amp=config.amp,
                progress=progress_bar,
                desc=f"epoch {epoch}/{config.epochs}",
                until=clock.out_of_time,
            )
        row = {
            "epoch": epoch,
            "steps": scheduler.last_epoch,
            "train_loss": done["loss_sum"].item() / done["seen"],
            "seconds": done["seconds"],
            "images_per_s": done["seen"] / done["seconds"],
        }
        if val_set is not None:
            metrics = evaluate(model, val_set, device=device, amp=config.amp)
            row.update({f"val_{key}": value for key, value in metrics.items() if not isinstance(value, (dict, list))})
            row["val_metrics"] = metrics
        state.history.epochs.append(row)
        if progress_bar:
            tqdm.write(f"epoch {epoch}: {({k: round(v, 4) for k, v in row.items() if isinstance(v, float)})}")
        if out is not None:
            save_state(Path(out) / "last.pt", state, config, train_set)
    return state.history


def count_flops(model: nn.Module) -> int:
    """Forward FLOPs for one 32x32 image (a multiply-add counts 2), by ``torch.utils.flop_counter``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 3, 32, 32, device=device))
    model.train(was_training)
    return counter.get_total_flops()


def compact_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with weight matrices and kernels stored in fp16 (half the file).

    ``load_state_dict`` copies them back into the fp32 parameters; biases and BN statistics
    stay fp32, so that tiny variances keep their precision.
    """
    return {
        k: (v.half() if v.is_floating_point() and v.ndim >= 2 else v).cpu() for k, v in model.state_dict().items()
    }


def run(
    mixer: str,
    config: FastRecipeConfig,
    *,
    name: str | None = None,
    root: str | Path | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    tta: bool = False,
    progress: bool = True,
) -> tuple[FastClassifier, dict]:
    """Train one FastClassifier with ``mixer`` on CIFAR-10's 45,000/5,000 split; (model, its card).

    The card (:func:`eaviz.card.make_card`) adds the recipe's numbers: FLOPs per image,
    images seen, accuracy with test-time augmentation when ``tta``. ``name``: the card's name
    (default ``cifar10-{mixer}``).
    """
    from eaviz.data import load_dataset

    name = name or f"cifar10-{mixer}"
    train_set = load_dataset("cifar10", "train", root=root)
    val_set = load_dataset("cifar10", "val", root=root)
    seed_everything(config.seed)
    model = FastClassifier(FastClassifierConfig(mixer=mixer))
    device = resolve_device(config.device)
    started = time.perf_counter()
    history = train_fast(model, train_set, val_set, config, out=out, resume=resume, progress_bar=progress)
    seconds = time.perf_counter() - started
    model.eval()
    rows = history.epochs
    card = make_card(
        name=name,
        model=model,
        train_set=train_set,
        val_set=val_set,
        train_config=config,
        history=history,
        seconds=seconds,
        device=device,
        command=train_command(mixer, config, name),
        split={"train": len(train_set), "val": len(val_set), "rule": "the last 500 images of each class are val"},
        val_metrics={"accuracy": history.last["val_accuracy"], "loss": history.last["val_loss"]},
        recipe="eaviz.fast_recipe (airbench94-style)",
        val_accuracy_tta=tta_accuracy(model, val_set) if tta else None,
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        flops_per_image=count_flops(model),
        train_images=config.train_limit or len(train_set),
        steps=history.last["steps"],
        images_seen=history.last["steps"] * config.batch_size,
        images_per_s=round(sum(r["seconds"] * r["images_per_s"] for r in rows) / sum(r["seconds"] for r in rows), 1),
        seed=config.seed,
    )
    return model, card


def summary_row(card: dict) -> dict:
    """The numbers of one run that the comparison table reads, from its card."""
    return {
        "mixer": card["model"]["mixer"],
        "seed": card["seed"],
        "val_accuracy": card["val_metrics"]["accuracy"],
        "parameters": card["parameters"],
        "flops_per_image": card["flops_per_image"],
        "images_seen": card["images_seen"],
        "images_per_s": card["images_per_s"],
        "wall_seconds": card["train_seconds"],
        "peak_memory_mib": card["peak_memory_mib"],
        "device": card["device"],
        "history": card["history"],
    }


def train_command(mixer: str, config: FastRecipeConfig, name: str) -> str:
    """The ``python -m eaviz fast train`` command that reproduces one run and ships it as ``name``.

    Every recipe setting that differs from its default becomes a flag (the device does not:
    the run may be reproduced on another one).
    """
    flags = [f"--mixer {mixer}", f"--seed {config.seed}"]
    defaults = FastRecipeConfig()
    for name_ in RECIPE_FLAGS:
        value = getattr(config, name_)
        if name_ == "device" or value == getattr(defaults, name_):
            continue
        flag = _flag(name_)
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag.removeprefix("--"))
        else:
            flags.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    return f"python -m eaviz fast train {' '.join(flags)} --ship {name}"


def ship(model: FastClassifier, card: dict, *, folder: str | Path | None = None) -> Path:
    """Write ``{folder}/{name}.pt`` (fp16 weights) and its card ``{name}.json``; returns the .pt path.

    folder: default ``$EAVIZ_HOME/checkpoints`` (else ``~/.cache/eaviz/checkpoints``); to ship
    a model with the package, give ``eaviz/checkpoints`` of a checkout.
    """
    folder = user_dir("checkpoints") if folder is None else folder
    folder = writable_folder(folder, argument="folder (--checkpoint-dir)")
    name = card["name"]
    path = atomic_save(
        {"model": compact_state(model), "config": model.config.to_dict(), "metrics": card["val_metrics"]},
        folder / f"{name}.pt",
    )
    write_card(card, folder / f"{name}.json")
    return path


def compare(
    mixers: list[str],
    seeds: list[int],
    config: FastRecipeConfig,
    *,
    root: str | Path | None = None,
    ship_mixers: tuple[str, ...] = (),
    folder: str | Path | None = None,
) -> list[dict]:
    """One short run per (mixer, seed), same recipe and budget; their :func:`summary_row` rows.

    Runs go seed by seed (all mixers for seed 0, then seed 1, ...), so that a slow spell of
    a shared machine does not fall on one mixer. The first seed's model of each mixer in
    ``ship_mixers`` is shipped as ``cifar10-{mixer}`` into ``folder`` (see :func:`ship`).
    """
    rows = []
    for seed in seeds:
        for mixer in mixers:
            recipe = FastRecipeConfig(**{**asdict(config), "seed": seed})
            model, card = run(mixer, recipe, root=root, progress=False)
            rows.append(summary_row(card))
            done = rows[-1]
            print(f"{mixer} seed {seed}: {done['val_accuracy']:.4f} in {done['wall_seconds']:.0f} s", flush=True)
            if mixer in ship_mixers and seed == seeds[0]:
                ship(model, card, folder=folder)
    return rows


def comparison_table(rows: list[dict]) -> list[dict]:
    """Mean and sample sd of validation accuracy per mixer, beside parameters, FLOPs and images/s."""
    table = []
    for mixer in dict.fromkeys(r["mixer"] for r in rows):  # first-seen order
        mine = [r for r in rows if r["mixer"] == mixer]
        accuracies = [r["val_accuracy"] for r in mine]
        table.append(
            {
                "mixer": mixer,
                "seeds": [r["seed"] for r in mine],
                "val_accuracy_mean": statistics.mean(accuracies),
                "val_accuracy_sd": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                "val_accuracies": accuracies,
                "parameters": mine[0]["parameters"],
                "flops_per_image": mine[0]["flops_per_image"],
                "images_per_s": statistics.mean(r["images_per_s"] for r in mine),
                "images_seen_mean": statistics.mean(r["images_seen"] for r in mine),
                "wall_seconds_mean": statistics.mean(r["wall_seconds"] for r in mine),
            }
        )
    return table


def markdown_table(table: list[dict]) -> str:
    lines = [
        "| mixer | val accuracy (mean ± sd) | seeds | parameters | MFLOPs / image | train images/s | images seen |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in table:
        lines.append(
            f"| `{row['mixer']}` | {100 * row['val_accuracy_mean']:.2f} ± {100 * row['val_accuracy_sd']:.2f} % "
            f"| {len(row['seeds'])} | {row['parameters']:,} | {row['flops_per_image'] / 1e6:.1f} "
            f"| {row['images_per_s']:.0f} | {row['images_seen_mean']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def model_costs(mixers: list[str]) -> list[dict]:
    """Parameters (all, and those of the mixers with their projections) and forward FLOPs per image.

    For each mixer: the FastClassifier, and the ViT-style Classifier without and with
    ``mixer_projections`` (the same linear in/out pair around every mixer).
    """
    from eaviz.models import Classifier, ClassifierConfig
    from eaviz.models.common import ProjectedMixer
    from eaviz.models.fast_classifier import MixerBlock2d

    mixing_types = (MixerBlock2d, ProjectedMixer, *MIXERS.values())

    rows = []
    for mixer in mixers:
        models = {
            "FastClassifier": FastClassifier(FastClassifierConfig(mixer=mixer)),
            "Classifier": Classifier(ClassifierConfig(mixer=mixer)),
            "Classifier(mixer_projections=True)": Classifier(ClassifierConfig(mixer=mixer, mixer_projections=True)),
        }
        for name, model in models.items():
            blocks: dict[str, nn.Module] = {}
            for module_name, module in model.named_modules():
                if isinstance(module, mixing_types) and not any(module_name.startswith(f"{b}.") for b in blocks):
                    blocks[module_name] = module
            rows.append(
                {
                    "model": name,
                    "mixer": mixer,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "mixer_parameters": sum(p.numel() for block in blocks.values() for p in block.parameters()),
                    "flops_per_image": count_flops(model),
                }
            )
    return rows


def _recipe_args(parser: argparse.ArgumentParser) -> None:
    """One flag per field of :class:`FastRecipeConfig` (its comment is the help), and --data-root."""
    group = parser.add_argument_group("recipe (FastRecipeConfig)")
    for name in RECIPE_FLAGS:
        choices = FLIPS if name == "flip" else None
        add_field_flag(group, {FastRecipeConfig: name}, name, options=(_flag(name),), choices=choices)
    parser.add_argument("--data-root", metavar="DIR", help="folder that holds cifar10-train (default: $EAVIZ_DATA)")


def _folder_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help=f"folder for shipped NAME.pt and NAME.json (default: $EAVIZ_HOME/checkpoints, else "
        f"~/.cache/eaviz/checkpoints; now {user_dir('checkpoints')})",
    )


def _config(parser: argparse.ArgumentParser, args: argparse.Namespace, seed: int) -> FastRecipeConfig:
    """The recipe from the flags given (the rest keep their defaults); a refused value is a parser error."""
    given = {name: getattr(args, name) for name in RECIPE_FLAGS if getattr(args, name) is not None}
    return build_config(FastRecipeConfig, {**given, "seed": seed}, parser, {name: _flag(name) for name in RECIPE_FLAGS})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags of ``python -m eaviz fast``; for train and compare, ``.recipe`` holds the FastRecipeConfig."""
    parser = Parser(prog="python -m eaviz fast", description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="action", required=True)
    one = actions.add_parser("train", help="train one model; --ship NAME writes NAME.pt and its card")
    one.add_argument("--mixer", default="external", choices=sorted(MIXERS))
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--out", metavar="DIR", help="folder for last.pt (checkpoint after every epoch)")
    one.add_argument("--resume", metavar="FILE", help="continue from a last.pt")
    one.add_argument("--tta", action="store_true", help="also report accuracy with test-time augmentation")
    one.add_argument("--ship", metavar="NAME", help="write NAME.pt and NAME.json into --checkpoint-dir")
    _recipe_args(one)
    _folder_arg(one)
    many = actions.add_parser("compare", help="short runs of several mixers and seeds -> JSON + Markdown")
    many.add_argument("--mixers", nargs="+", default=list(COMPARED), choices=sorted(MIXERS))
    many.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    many.add_argument("--json", required=True, metavar="FILE", help="where to write the results (.json; .md beside)")
    many.add_argument(
        "--ship", nargs="*", default=[], metavar="MIXER", help="ship the first seed's model as cifar10-MIXER"
    )
    _recipe_args(many)
    _folder_arg(many)
    costs = actions.add_parser("costs", help="parameters and FLOPs of every model and mixer -> JSON + Markdown")
    costs.add_argument("--mixers", nargs="+", default=list(COMPARED), choices=sorted(MIXERS))
    costs.add_argument("--json", required=True, metavar="FILE", help="where to write the results (.json; .md beside)")
    args = parser.parse_args(argv)
    if args.action != "costs":
        args.recipe = _config(parser, args, args.seed if args.action == "train" else 0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m eaviz fast " + shlex.join(sys.argv[2:] if argv is None else argv)
    return _run(args, command)  # errors reach eaviz.cli.main, which prints them on one line


def _run(args: argparse.Namespace, command: str) -> int:
    if args.action == "train":
        config = args.recipe
        if args.ship:
            writable_folder(args.checkpoint_dir or user_dir("checkpoints"), argument="--checkpoint-dir")
        model, card = run(
            args.mixer, config, name=args.ship, root=args.data_root, out=args.out, resume=args.resume, tta=args.tta
        )
        print(json.dumps({k: v for k, v in card.items() if k != "history"}, indent=2))
        if args.ship:
            print(f"wrote {ship(model, card, folder=args.checkpoint_dir)}")
        return 0
    if args.action == "costs":
        rows = model_costs(args.mixers)
        lines = [
            "| model | mixer | parameters | of which in the mixers and their projections | MFLOPs / image |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['model']} | `{r['mixer']}` | {r['parameters']:,} | {r['mixer_parameters']:,} "
            f"| {r['flops_per_image'] / 1e6:.1f} |"
            for r in sorted(rows, key=lambda r: r["model"])
        ]
        path = Path(args.json)
        atomic_write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n", path)
        atomic_write_text("\n".join(lines) + "\n", path.with_suffix(".md"))
        print("\n".join(lines))
        return 0
    config = args.recipe
    rows = compare(
        args.mixers, args.seeds, config, root=args.data_root, ship_mixers=tuple(args.ship), folder=args.checkpoint_dir
    )
    table = comparison_table(rows)
    result = {
        "command": command,
        "recipe": {k: v for k, v in asdict(config).items() if k != "seed"},
        "date": datetime.date.today().isoformat(),
        "table": table,
        "runs": [{k: v for k, v in r.items()} for r in rows],
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(result, indent=2) + "\n", path)
    atomic_write_text(markdown_table(table), path.with_suffix(".md"))
    print(markdown_table(table))
    return 0

