"""One readable training loop for classification and segmentation.

    for epoch in range(epochs):
        train_one_epoch():                           # batches already on the device, augmented there
            for images, targets in batches:
                with autocast(bf16 on CUDA):
                    loss = criterion(model(images), targets)
                loss.backward(); optimizer.step(); scheduler.step(); ema.update()
        evaluate()
        save_state(out / "last.pt")                  # atomically; best.pt too when validation improves

A run resumes exactly from ``last.pt`` (:func:`restore_state`), refuses to continue with other
settings or other data, and stops without saving when the loss stops being finite, so the
last good checkpoint survives. Runs data-parallel when started by ``torchrun`` (each rank
takes its shard of every epoch).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from eaviz import __version__
from eaviz._checks import check_device, check_number
from eaviz._io import atomic_save, claim_folder, read_checkpoint
from eaviz.data.dataset import VOID, ImageDataset
from eaviz.data.loader import BatchLoader
from eaviz.metrics import ConfusionMatrix
from eaviz.models import build_model
from eaviz.profile import seed_everything

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine")


@dataclass
class TrainConfig:
    """Training settings; a checkpoint stores them next to the model's config.

    The comment after each field is its help text on the command line (``python -m eaviz train --help``).
    """

    epochs: int = 10  # passes over the training set
    batch_size: int = 256  # images per step, summed over all processes
    lr: float = 0.1  # peak learning rate
    optimizer: str = "sgd"  # SGD with Nesterov momentum, or AdamW
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # on weight matrices and kernels; not on norms, biases or position embeddings
    schedule: str = "onecycle"  # after the linear warm-up: linear ("onecycle") or cosine decay to 0
    warmup_epochs: float = 1.0  # epochs of linear learning-rate warm-up
    label_smoothing: float = 0.1  # classification label smoothing
    ema_decay: float | None = None  # e.g. 0.999: evaluate and save an exponential moving average of the weights
    amp: bool = True  # bf16 autocast on CUDA; ignored on the CPU, where bf16 is slower
    compile: bool = False  # train through torch.compile
    channels_last: bool = True  # channels_last memory layout for images and weights
    crop_size: int = 160  # segmentation training crops, in pixels
    seed: int = 0  # seed of the weights, shuffling and augmentation
    device: str = "auto"  # cpu, cuda, cuda:1 or auto (CUDA when available)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"expected optimizer to be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"expected schedule to be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("epochs", "batch_size", "crop_size"):
            check_number(getattr(self, name), name, low=1, integer=True)
        check_number(self.seed, "seed", low=0, integer=True)
        check_number(self.lr, "lr", low=0, low_open=True)
        check_number(self.momentum, "momentum", low=0, high=1, high_open=True)
        check_number(self.weight_decay, "weight_decay", low=0)
        check_number(self.warmup_epochs, "warmup_epochs", low=0, high=self.epochs)
        check_number(self.label_smoothing, "label_smoothing", low=0, high=1, high_open=True)
        if self.ema_decay is not None:
            check_number(self.ema_decay, "ema_decay", low=0, high=1, low_open=True, high_open=True)
        for name in ("amp", "compile", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"expected {name} to be True or False, got {getattr(self, name)!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as error:
                raise ValueError(f"expected device to be cpu, cuda, cuda:N or auto, got {self.device!r}") from error


class TrainingDiverged(RuntimeError):
    """The loss stopped being finite: the weights are unusable, so nothing was saved."""


@dataclass
class History:
    """One dict of metrics per finished epoch, ready for plotting or a pandas DataFrame."""

    epochs: list[dict] = field(default_factory=list)

    def __getitem__(self, key: str) -> list:
        return [row[key] for row in self.epochs]

    @property
    def last(self) -> dict:
        """The metrics of the last finished epoch ({} before the first)."""
        return self.epochs[-1] if self.epochs else {}


def _autocast(device: torch.device, amp: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def _criterion(task: str, label_smoothing: float, reduction: str = "mean") -> nn.Module:
    if task == "segmentation":
        return nn.CrossEntropyLoss(ignore_index=VOID, reduction=reduction)
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction=reduction)


def _lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warm-up, then decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return max(0.0, 1 - progress)


def _decays(name: str, parameter: nn.Parameter) -> bool:
    """Weight matrices and kernels decay; norms, biases (1-D) and position embeddings do not."""
    return parameter.ndim >= 2 and not name.split(".")[-1].endswith("embedding")


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weight matrices and kernels only, not on norms, biases or embeddings."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    decay = [p for name, p in named if _decays(name, p)]
    rest = [p for name, p in named if not _decays(name, p)]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)


def make_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """``config.warmup_epochs`` of linear warm-up, then ``config.schedule`` decay over ``config.epochs``."""
    total, warmup = config.epochs * steps_per_epoch, round(config.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, total, warmup, config.schedule))


def check_targets(dataset: ImageDataset) -> None:
    """Raise ValueError unless every target is a class id (or void, 255, in segmentation)."""
    targets, c = dataset.targets, dataset.num_classes
    bad = (targets < 0) | (targets >= c)
    if dataset.task == "segmentation":
        bad &= targets != VOID
    if bad.any():
        values = targets[bad].unique()[:5].tolist()
        allowed = f"0..{c - 1}" + (f" or {VOID} (void)" if dataset.task == "segmentation" else "")
        raise ValueError(
            f"{dataset.name or 'the dataset'} has target values {values} outside {allowed}; fix the labels "
            "(a VOC mask must use the VOC palette) or the class list"
        )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: ImageDataset,
    *,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    amp: bool = True,
    progress: bool = False,
) -> dict:
    """Loss and accuracy (classification) or pixel accuracy, mIoU and per-class IoU (segmentation).

    The loss is the mean over images (classification) or over non-void pixels (segmentation).
    """
    check_number(batch_size, "batch_size", low=1, integer=True)
    model_device = next(model.parameters()).device
    device = torch.device(device) if device is not None else model_device
    if device != model_device:
        raise ValueError(
            f"the model is on {model_device} but device={device}; move it first: model.to({str(device)!r})"
        )
    if len(dataset) == 0:
        raise ValueError(f"expected a dataset with at least one image, {dataset.name or 'the dataset'} is empty")
    check_targets(dataset)
    was_training = model.training
    model.eval()
    criterion = _criterion(dataset.task, 0.0, reduction="sum")
    loss_sum, correct, seen, counted = 0.0, 0, 0, 0
    confusion = ConfusionMatrix(dataset.num_classes)
    batches = BatchLoader(dataset, batch_size, device=device)
    for images, targets in tqdm(batches, desc="eval", leave=False, disable=not progress):
        with _autocast(device, amp):
            logits = model(images)
        if logits.shape[1] != dataset.num_classes:
            raise ValueError(
                f"the model predicts {logits.shape[1]} classes but {dataset.name or 'the dataset'} has "
                f"{dataset.num_classes}; evaluate it on the data it was trained for"
            )
        loss_sum += criterion(logits.float(), targets).item()
        counted += (targets != VOID).sum().item() if dataset.task == "segmentation" else len(images)
        predictions = logits.argmax(dim=1)
        if dataset.task == "segmentation":
            confusion.update(predictions, targets)
        else:
            correct += (predictions == targets).sum().item()
        seen += len(images)
    model.train(was_training)
    metrics = {"loss": loss_sum / max(counted, 1)}
    if dataset.task == "segmentation":
        metrics.update(confusion.summary(dataset.classes))
    else:
        metrics["accuracy"] = correct / seen
    return metrics


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """A model rebuilt from a checkpoint's config, with its weights (the EMA ones if saved), in eval mode.

    A frozen-backbone segmenter's checkpoint holds only its ``head``; the backbone is built from
    its installed ImageNet weights.
    """
    checkpoint = read_checkpoint(path, map_location=device)
    if "config" not in checkpoint or not ("model" in checkpoint or "head" in checkpoint):
        raise ValueError(f"{path} is not an eaviz checkpoint: it has no 'config' and 'model' (or 'head') entries")
    model = build_model(checkpoint["config"])
    try:
        if "head" in checkpoint:  # a frozen backbone: build_model took it from its installed weights
            model.load_head_state_dict(checkpoint["head"])
        else:
            model.load_state_dict(checkpoint.get("ema") or checkpoint["model"])
    except RuntimeError as error:
        raise ValueError(f"the weights in {path} do not fit the model its config describes; it is corrupt") from error
    return model.to(device).eval(), checkpoint


def _distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world_size, this process's device), joining the process group under torchrun.

    CUDA runs use NCCL with one GPU per process (``LOCAL_RANK``); CPU runs use gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, device


@dataclass
class TrainingState:
    """Everything a run changes as it trains: saved after each epoch, enough to continue it exactly.

    ``ema``: an :class:`~torch.optim.swa_utils.AveragedModel`, or anything with its interface
    (``module``, ``n_averaged``, ``update_parameters``), such as the fast recipe's lookahead.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batches: BatchLoader
    ema: AveragedModel | None = None
    history: History = field(default_factory=History)

    @property
    def epoch(self) -> int:
        """Epochs finished so far."""
        return len(self.history.epochs)

    @property
    def weights(self) -> nn.Module:
        """The weights to evaluate and ship: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model


def _data_record(dataset: ImageDataset) -> dict:
    """What identifies the training data of a run: its name, split and size."""
    return {"name": dataset.name, "split": dataset.info.get("split"), "size": len(dataset)}


def save_state(path: str | Path, state: TrainingState, config: Any, dataset: ImageDataset) -> Path:
    """Write ``state`` atomically to ``path`` (``last.pt``), with the configs and data it belongs to.

    config: the run's settings dataclass (:class:`TrainConfig`, or another recipe's, such as
    :class:`eaviz.fast_recipe.FastRecipeConfig`).
    """
    device = state.batches.device
    payload = {
        "model": state.model.state_dict(),
        "ema": state.ema.module.state_dict() if state.ema is not None else None,
        "ema_n_averaged": int(state.ema.n_averaged) if state.ema is not None else 0,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "rng": {
            "loader": state.batches.generator.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        },
        "epoch": state.epoch,
        "history": state.history.epochs,
        "config": state.model.config.to_dict(),
        "dataset": dataset.name,
        "data": _data_record(dataset),
        "train_config": asdict(config),
        "metrics": state.history.last.get("val_metrics", {}),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "eaviz_version": __version__,
    }
    return atomic_save(payload, path)


def _differences(saved: dict, given: dict, ignore: tuple[str, ...] = ()) -> dict:
    return {k: (saved.get(k), v) for k, v in given.items() if k not in ignore and saved.get(k) != v}


def _check_resumable(checkpoint: dict, path: Path, state: TrainingState, config: Any, dataset: ImageDataset) -> None:
    """A run resumes only with the settings and data it started with (the device may change)."""
    if "train_config" not in checkpoint or "optimizer" not in checkpoint:
        raise ValueError(
            f"{path} holds model weights only (a shipped or exported checkpoint), not a training state; it cannot "
            "be resumed: start a new run, or evaluate it with python -m eaviz eval"
        )
    changed = _differences(checkpoint["train_config"], asdict(config), ignore=("device",))
    if changed:
        raise ValueError(
            f"resume needs the {type(config).__name__} the run started with; these differ (saved, given): {changed}"
        )
    if checkpoint["config"] != state.model.config.to_dict():
        changed = _differences(checkpoint["config"], state.model.config.to_dict())
        raise ValueError(f"resume needs the model config the run started with; these differ (saved, given): {changed}")
    recorded = checkpoint.get("data") or {"name": checkpoint.get("dataset")}
    changed = _differences(recorded, {k: v for k, v in _data_record(dataset).items() if k in recorded})
    if changed:
        raise ValueError(
            f"resume needs the training data the run started with; these differ (saved, given): {changed}; "
            "use the same dataset, split and --limit"
        )


def restore_state(path: str | Path, state: TrainingState, config: Any, dataset: ImageDataset) -> dict:
    """Load a ``last.pt`` written by :func:`save_state` into ``state``, after checking it belongs to this run.

    Restores weights, optimizer, schedule, EMA, history and every random generator, so the
    run continues exactly as if it had never stopped. Returns the checkpoint dict.
    """
    device = state.batches.device
    checkpoint = read_checkpoint(path, map_location=device)
    _check_resumable(checkpoint, Path(path), state, config, dataset)
    state.model.load_state_dict(checkpoint["model"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.scheduler.load_state_dict(checkpoint["scheduler"])
    if state.ema is not None:
        state.ema.module.load_state_dict(checkpoint["ema"])
        state.ema.n_averaged.fill_(checkpoint["ema_n_averaged"])
    state.batches.generator.set_state(checkpoint["rng"]["loader"].cpu())
    torch.set_rng_state(checkpoint["rng"]["torch"].cpu())
    if device.type == "cuda" and checkpoint["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(checkpoint["rng"]["cuda"].cpu(), device)
    state.history = History(checkpoint["history"])
    state.batches.epoch = state.epoch
    return checkpoint


def _save_best(path: Path, state: TrainingState, config: TrainConfig, dataset: ImageDataset) -> Path:
    """The evaluated weights of the best epoch so far, loadable by :func:`load_checkpoint`."""
    payload = {
        "model": state.weights.state_dict(),
        "config": state.model.config.to_dict(),
        "dataset": dataset.name,
        "data": _data_record(dataset),
        "train_config": asdict(config),
        "epoch": state.epoch,
        "metrics": state.history.last.get("val_metrics", {}),
        "eaviz_version": __version__,
    }
    return atomic_save(payload, path)


def _score(row: dict) -> float | None:
    """The validation number that ``best.pt`` maximises: accuracy, or mIoU for segmentation."""
    value = row.get("val_accuracy", row.get("val_miou"))
    return value if value is not None and math.isfinite(value) else None


def train_one_epoch(
    model: nn.Module,
    batches: BatchLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    criterion: nn.Module,
    *,
    ema: AveragedModel | None = None,
    step_model: nn.Module | None = None,
    amp: bool = True,
    progress: bool = False,
    desc: str = "train",
    until: Callable[[], bool] | None = None,
) -> dict:
    """One pass over ``batches``: forward, loss, backward, optimizer and schedule step, EMA update.

    ``step_model`` runs the forward pass when ``model`` is wrapped (DDP, torch.compile); the
    EMA follows ``model`` (anything with ``update_parameters(model)``, e.g. a lookahead).
    ``until``, asked after every step, ends the pass early when it returns True (a time
    budget). Returns ``{"loss_sum", "seen", "seconds"}`` for this process, the
    loss summed over images as a tensor on the device (the loop never waits for a sync).
    """
    step_model = step_model if step_model is not None else model
    device = batches.device
    model.train()
    started, loss_sum, seen = time.perf_counter(), torch.zeros((), device=device), 0
    bar = tqdm(batches, desc=desc, disable=not progress, leave=False)
    for step, (images, targets) in enumerate(bar):
        with _autocast(device, amp):
            loss = criterion(step_model(images).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        loss_sum += loss.detach() * len(images)
        seen += len(images)
        if not bar.disable and step % 50 == 0:  # a disabled bar never counts, so test the step
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", lr=f"{scheduler.get_last_lr()[0]:.3g}")
        if until is not None and until():
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"loss_sum": loss_sum, "seen": seen, "seconds": time.perf_counter() - started}


def _diverged(loss: float, epoch: int, config: TrainConfig, out: Path | None) -> TrainingDiverged:
    kept = f"{out / 'last.pt'} still holds epoch {epoch - 1}" if out and epoch > 1 else "nothing was saved"
    return TrainingDiverged(
        f"training stopped in epoch {epoch}: the loss became {loss} (peak lr {config.lr:g}), so the weights are "
        f"no longer usable; {kept}. Lower the learning rate (--lr) or lengthen the warm-up (--warmup-epochs)"
    )


def _training_state(
    model: nn.Module, train_set: ImageDataset, config: TrainConfig, rank: int, world_size: int, device: torch.device
) -> TrainingState:
    """A fresh run: the model on its device, this process's batches, optimizer, schedule and EMA."""
    seed_everything(config.seed)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    batches = BatchLoader(
        train_set,
        config.batch_size // world_size,
        shuffle=True,
        augment=True,
        device=device,
        seed=config.seed,
        drop_last=True,
        crop_size=config.crop_size,
        channels_last=config.channels_last,
        rank=rank,
        world_size=world_size,
    )
    if len(batches) == 0:
        raise ValueError(
            f"expected at least one batch: {len(train_set)} training samples, batch_size {config.batch_size}"
        )
    optimizer = make_optimizer(model, config)
    scheduler = make_schedule(optimizer, config, len(batches))
    ema = None
    if config.ema_decay:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    return TrainingState(model, optimizer, scheduler, batches, ema)


def train(
    model: nn.Module,
    train_set: ImageDataset,
    val_set: ImageDataset | None,
    config: TrainConfig,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    stop_after: int | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` on ``train_set``, evaluating on ``val_set`` after every epoch.

    With ``out``, claims that folder (``out/.lock``: a second run into it is refused), writes
    ``out/last.pt`` after every epoch (enough to resume exactly) and ``out/best.pt`` whenever
    the validation accuracy (mIoU) improves, and returns the history. ``resume`` continues
    from a ``last.pt``; a finished run is returned as it is. ``stop_after`` ends this call
    after that many epochs (the schedule still spans ``config.epochs``), to split a run.
    A loss that stops being finite raises :class:`TrainingDiverged` before anything is saved.
    """
    if stop_after is not None:
        check_number(stop_after, "stop_after", low=1, integer=True)
    rank, world_size, device = _distributed(check_device(config.device))
    check_targets(train_set)
    with claim_folder(out) if out is not None and rank == 0 else nullcontext():
        out = Path(out) if out is not None else None
        state = _training_state(model, train_set, config, rank, world_size, device)
        if resume is not None:
            restore_state(resume, state, config, train_set)
            if state.epoch >= config.epochs:
                warnings.warn(f"{resume} is a finished run ({state.epoch} of {config.epochs} epochs): nothing to do")
                if out is not None and rank == 0 and not (out / "last.pt").exists():
                    save_state(out / "last.pt", state, config, train_set)
        network = state.model
        if world_size > 1:
            network = nn.parallel.DistributedDataParallel(
                state.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        step_model = torch.compile(network) if config.compile else network
        criterion = _criterion(train_set.task, config.label_smoothing)
        scores = [_score(row) for row in state.history.epochs]
        best = max((s for s in scores if s is not None), default=None)
        last_epoch = config.epochs if stop_after is None else min(config.epochs, state.epoch + stop_after)
        for epoch in range(state.epoch + 1, last_epoch + 1):
            done = train_one_epoch(
                state.model,
                state.batches,
                state.optimizer,
                state.scheduler,
                criterion,
                ema=state.ema,
                step_model=step_model,
                amp=config.amp,
                progress=progress and rank == 0,
                desc=f"epoch {epoch}/{config.epochs}",
            )
            totals = torch.stack([done["loss_sum"].float(), torch.tensor(float(done["seen"]), device=device)])
            if world_size > 1:
                dist.all_reduce(totals)  # every rank sees the same loss, so all stop together
            loss_sum, seen = totals.tolist()
            if not math.isfinite(loss_sum):
                raise _diverged(loss_sum / seen, epoch, config, out)
            row = {
                "epoch": epoch,
                "train_loss": loss_sum / seen,
                "lr": state.scheduler.get_last_lr()[0],
                "seconds": done["seconds"],
                "images_per_s": seen / done["seconds"],
            }
            if val_set is not None and rank == 0:
                metrics = evaluate(state.weights, val_set, device=device, amp=config.amp)
                row.update({f"val_{k}": v for k, v in metrics.items() if not isinstance(v, (dict, list))})
                row["val_metrics"] = metrics
            state.history.epochs.append(row)
            if progress and rank == 0:
                shown = {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}
                tqdm.write(f"epoch {epoch}: {shown}")
            if out is not None and rank == 0:
                save_state(out / "last.pt", state, config, train_set)
                score = _score(row)
                if score is not None and (best is None or score > best):
                    best = score
                    _save_best(out / "best.pt", state, config, train_set)
        if world_size > 1:
            dist.barrier(device_ids=[device.index]) if device.type == "cuda" else dist.barrier()
        return state.history
