"""One readable training loop for classification and segmentation.

    for epoch in range(epochs):
        for images, targets in batches:            # already on the device, augmented there
            with autocast(bf16 on CUDA):
                loss = criterion(model(images), targets)
            loss.backward(); optimizer.step(); scheduler.step(); ema.update()
        evaluate(), save a checkpoint atomically

Runs data-parallel when started by ``torchrun`` (each rank takes its shard of every epoch).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from eaviz import __version__
from eaviz._io import atomic_save
from eaviz.data.dataset import VOID, ImageDataset
from eaviz.data.loader import BatchLoader
from eaviz.metrics import ConfusionMatrix
from eaviz.models import build_model
from eaviz.profile import resolve_device, seed_everything

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine")


@dataclass
class TrainConfig:
    """Training settings; a checkpoint stores them next to the model's config."""

    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.1
    optimizer: str = "sgd"  # SGD with Nesterov momentum, or AdamW
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # linear warm-up, then linear ("onecycle") or cosine decay to 0
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    ema_decay: float | None = None  # e.g. 0.999: evaluate an exponential moving average of weights
    amp: bool = True  # bf16 autocast on CUDA; ignored on the CPU, where bf16 is slower
    compile: bool = False
    channels_last: bool = True
    crop_size: int = 160  # segmentation training crops
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"expected optimizer to be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"expected schedule to be one of {SCHEDULES}, got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"expected epochs >= 1 and batch_size >= 1, got {self.epochs} and {self.batch_size}")


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


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weight matrices and kernels only, not on norms, biases or embeddings."""
    decay = [p for p in model.parameters() if p.ndim >= 2 and p.requires_grad]
    rest = [p for p in model.parameters() if p.ndim < 2 and p.requires_grad]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)


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
    model_device = next(model.parameters()).device
    device = torch.device(device) if device is not None else model_device
    if device != model_device:
        raise ValueError(
            f"the model is on {model_device} but device={device}; move it first: model.to({str(device)!r})"
        )
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


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` atomically: to a temporary file first, then rename over ``path``."""
    return atomic_save(payload, path)


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """A model rebuilt from a checkpoint's config, with its weights (the EMA ones if saved), in eval mode."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    model = build_model(checkpoint["config"])
    model.load_state_dict(checkpoint.get("ema") or checkpoint["model"])
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


def _check_resumable(state: dict, model: nn.Module, config: TrainConfig) -> None:
    """A run resumes only with the settings it started with (the device may change)."""
    saved = state["train_config"]
    changed = {k: (saved.get(k), v) for k, v in asdict(config).items() if k != "device" and saved.get(k) != v}
    if changed:
        raise ValueError(f"resume needs the TrainConfig the run started with; these differ (saved, given): {changed}")
    if state["config"] != model.config.to_dict():
        raise ValueError(f"resume needs the model config {state['config']}, got {model.config.to_dict()}")


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

    With ``out``, writes ``out/last.pt`` after every epoch (enough to resume exactly) and
    returns the history; ``resume`` continues from such a file. ``stop_after`` ends this call
    after that many epochs (the schedule still spans ``config.epochs``), to split a run.
    """
    rank, world_size, device = _distributed(resolve_device(config.device))
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
    optimizer = _optimizer(model, config)
    total_steps, warmup_steps = config.epochs * len(batches), round(config.warmup_epochs * len(batches))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, total_steps, warmup_steps, config.schedule)
    )
    ema = None
    if config.ema_decay:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    history, start_epoch = History(), 0
    if resume is not None:
        state = torch.load(resume, map_location=device, weights_only=True)
        _check_resumable(state, model, config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.module.load_state_dict(state["ema"])
            ema.n_averaged.fill_(state["ema_n_averaged"])
        batches.generator.set_state(state["rng"]["loader"].cpu())
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), device)
        history, start_epoch = History(state["history"]), state["epoch"]
        batches.epoch = start_epoch
    network = model
    if world_size > 1:
        network = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    step_model = torch.compile(network) if config.compile else network
    criterion = _criterion(train_set.task, config.label_smoothing)
    last_epoch = config.epochs if stop_after is None else min(config.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch, last_epoch):
        model.train()
        started, loss_sum, seen = time.perf_counter(), torch.zeros((), device=device), 0
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress or rank != 0, leave=False)
        for step, (images, targets) in enumerate(bar):
            with _autocast(device, config.amp):
                loss = criterion(step_model(images).float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += loss.detach() * len(images)  # stays on the device: no sync per step
            seen += len(images)
            if not bar.disable and step % 50 == 0:  # a disabled bar never counts, so test the step
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", lr=f"{scheduler.get_last_lr()[0]:.3g}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum.item() / seen,
            "lr": scheduler.get_last_lr()[0],
            "seconds": seconds,
            "images_per_s": seen * world_size / seconds,
        }
        if val_set is not None and rank == 0:
            evaluated = ema.module if ema is not None else model
            metrics = evaluate(evaluated, val_set, device=device, amp=config.amp)
            row.update({f"val_{key}": value for key, value in metrics.items() if not isinstance(value, (dict, list))})
            row["val_metrics"] = metrics
        history.epochs.append(row)
        if progress and rank == 0:
            shown = {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}
            tqdm.write(f"epoch {epoch + 1}: {shown}")
        if out is not None and rank == 0:
            save_checkpoint(
                Path(out) / "last.pt",
                {
                    "model": model.state_dict(),
                    "ema": ema.module.state_dict() if ema is not None else None,
                    "ema_n_averaged": int(ema.n_averaged) if ema is not None else 0,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": {
                        "loader": batches.generator.get_state(),
                        "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    },
                    "epoch": epoch + 1,
                    "history": history.epochs,
                    "config": model.config.to_dict(),
                    "dataset": train_set.name,
                    "train_config": asdict(config),
                    "metrics": row.get("val_metrics", {}),
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "eaviz_version": __version__,
                },
            )
    if world_size > 1:
        dist.barrier(device_ids=[device.index]) if device.type == "cuda" else dist.barrier()
    return history
