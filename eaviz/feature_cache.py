"""Train a segmentation head on cached backbone features: the backbone runs once, not every epoch.

With a frozen backbone (``SegmenterConfig(freeze_backbone=True)``) the features of an image
never change, so they are computed once, saved under a cache folder, and every epoch and
every seed of every head trains on them::

    features = cached_features(model, dataset, cache_dir=..., flips=True)   # (2n, C, h, w)
    for epoch in range(epochs):
        for f, y in batches(features):           # each image once, mirrored or not at random
            loss = cross_entropy(model.head(f, size=y.shape[-2:]), y)

Augmentation is limited to what is cached: the image and its mirror image (no random scales
or crops). The result is the same model as training end to end with the backbone frozen;
``model(images)`` still takes images.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from eaviz._io import atomic_save
from eaviz.data.dataset import VOID, ImageDataset
from eaviz.metrics import ConfusionMatrix
from eaviz.models.segmenter import Segmenter
from eaviz.profile import resolve_device, seed_everything
from eaviz.train import History, TrainConfig, make_optimizer, make_schedule, train_one_epoch

DEFAULT_CACHE = Path.home() / ".cache" / "eaviz" / "features"
LOSS_STRIDE = 2  # the training loss reads every 2nd label row and column: 4x cheaper, evaluation stays exact


@dataclass
class FeatureSet:
    """Backbone features of a dataset, and the labels they predict.

    features: (n, C, h, w) float (float16 to halve the memory of large sets)
    targets:  (n, H, W) uint8 labels, 255 = void
    With ``flips``, rows n/2.. hold the mirror images of rows 0..n/2 (labels mirrored too).
    """

    features: torch.Tensor
    targets: torch.Tensor
    classes: list[str]
    flips: bool = False
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.features.shape[0]

    @property
    def images(self) -> int:
        """How many distinct images (mirror images not counted)."""
        return len(self) // 2 if self.flips else len(self)


def _digest(tensors: list[torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for tensor in tensors:
        sha.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()[:16]


def cache_path(model: Segmenter, dataset: ImageDataset, *, cache_dir: Path, flips: bool, dtype: torch.dtype) -> Path:
    """The cache file for these features: named after the backbone, the data, the split and the size.

    The name ends in a digest of the backbone's weights and of the images' pixels, so other
    weights, other images or another size never reuse a stale file.
    """
    config = model.config
    weights = _digest(list(model.backbone.state_dict().values()))
    pixels = _digest([dataset.images])
    size = "x".join(str(s) for s in dataset.images.shape[-2:])
    split = dataset.info.get("split", "all")
    variant = f"{'flips' if flips else 'plain'}-{str(dtype).removeprefix('torch.')}"
    return Path(cache_dir) / f"{config.backbone}-{dataset.name}-{split}-{size}-{variant}-{weights}-{pixels}.pt"


@torch.no_grad()
def compute_features(
    model: Segmenter, images: torch.Tensor, *, batch_size: int = 32, dtype: torch.dtype = torch.float32, desc: str = ""
) -> torch.Tensor:
    """images (n, 3, H, W) uint8 -> backbone features (n, C, H/8, W/8) in ``dtype``, on the CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc or "features", leave=False, disable=not desc):
        batch = images[start : start + batch_size].to(device).float() / 255
        out.append(model.features(batch).to("cpu", dtype))
    model.train(was_training)
    return torch.cat(out)


def cached_features(
    model: Segmenter,
    dataset: ImageDataset,
    *,
    cache_dir: str | Path | None = None,
    flips: bool = False,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 32,
    progress: bool = True,
) -> FeatureSet:
    """The backbone features of ``dataset``, read from ``cache_dir`` or computed once and saved there.

    Needs a frozen backbone (``freeze_backbone=True``): features of a backbone that trains would go stale.
    flips: cache the mirror image of every image too (twice the time and memory).
    """
    if not model.config.freeze_backbone:
        raise ValueError("cached features need a frozen backbone: build the model with freeze_backbone=True")
    if dataset.task != "segmentation":
        raise ValueError(f"expected a segmentation dataset, got a {dataset.task} one ({dataset.name})")
    path = cache_path(model, dataset, cache_dir=Path(cache_dir or DEFAULT_CACHE), flips=flips, dtype=dtype)
    if path.exists():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        features, targets = stored["features"], stored["targets"]
    else:
        started = time.perf_counter()
        images, targets = dataset.images, dataset.targets.to(torch.uint8)
        desc = f"{model.config.backbone} features, {dataset.name} {dataset.info.get('split', '')}" if progress else ""
        if flips:
            images, targets = torch.cat([images, images.flip(-1)]), torch.cat([targets, targets.flip(-1)])
        features = compute_features(model, images, batch_size=batch_size, dtype=dtype, desc=desc)
        atomic_save({"features": features, "targets": targets, "seconds": time.perf_counter() - started}, path)
    info = {"path": str(path), "split": dataset.info.get("split"), "ids": dataset.info.get("ids")}
    return FeatureSet(features, targets, list(dataset.classes), flips=flips, info=info)


def _batches(data: FeatureSet, batch_size: int, generator: torch.Generator | None, device: torch.device):
    """(features float32, targets int64) batches; with a generator: shuffled, each image in one view."""
    n = data.images
    if generator is None:
        order = torch.arange(len(data))
    else:
        order = torch.randperm(n, generator=generator)
        if data.flips:
            order = order + n * torch.randint(0, 2, (n,), generator=generator)
        order = order[: n - n % batch_size]
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        yield data.features[index].to(device, torch.float32), data.targets[index].to(device, torch.int64)


@torch.no_grad()
def evaluate_head(model: Segmenter, data: FeatureSet, *, batch_size: int = 64) -> dict:
    """Like :func:`eaviz.train.evaluate` on the images, from their cached features."""
    if model.config.num_classes != len(data.classes):
        raise ValueError(f"the model predicts {model.config.num_classes} classes but the data has {len(data.classes)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    confusion = ConfusionMatrix(len(data.classes))
    loss_sum, counted = 0.0, 0
    for features, targets in _batches(data, batch_size, None, device):
        logits = model.head(features, targets.shape[-2:])
        loss_sum += F.cross_entropy(logits, targets, ignore_index=VOID, reduction="sum").item()
        counted += (targets != VOID).sum().item()
        confusion.update(logits.argmax(dim=1), targets)
    model.train(was_training)
    return {"loss": loss_sum / max(counted, 1), **confusion.summary(data.classes)}


def class_weights(data: FeatureSet, power: float = 0.5) -> torch.Tensor:
    """(K,) loss weights ``(pixels_c / pixels) ** -power``, scaled to mean 1 over the present classes.

    Rare classes weigh more; absent classes get weight 0. ``power=0`` gives plain cross-entropy.
    """
    counts = torch.bincount(data.targets.flatten().long(), minlength=VOID + 1)[: len(data.classes)].double()
    present = counts > 0
    weights = torch.zeros_like(counts)
    weights[present] = (counts[present] / counts.sum()) ** -power
    return (weights / weights[present].mean()).float()


class FeatureBatches:
    """Shuffled training batches of a :class:`FeatureSet` for :func:`eaviz.train.train_one_epoch`.

    Yields (features (B, C, h, w) float32, targets (B, H / 2, W / 2) int64): every second label
    row and column (``LOSS_STRIDE``), each image once per epoch (mirrored or not, at random).
    """

    def __init__(self, data: FeatureSet, batch_size: int, *, device: torch.device, seed: int) -> None:
        self.data, self.batch_size, self.device = data, batch_size, device
        self.generator = torch.Generator().manual_seed(seed)
        self.label_size = tuple(data.targets[:1, ::LOSS_STRIDE, ::LOSS_STRIDE].shape[-2:])

    def __len__(self) -> int:
        return self.data.images // self.batch_size

    def __iter__(self):
        for features, targets in _batches(self.data, self.batch_size, self.generator, self.device):
            yield features, targets[:, ::LOSS_STRIDE, ::LOSS_STRIDE]


class HeadOnFeatures(nn.Module):
    """A segmenter's head alone: cached features (B, C, h, w) -> logits (B, K, *size)."""

    def __init__(self, model: Segmenter, size: tuple[int, int]) -> None:
        super().__init__()
        self.model, self.size = model, size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.head(features, self.size)


def train_head(
    model: Segmenter,
    train_set: FeatureSet,
    val_set: FeatureSet | None,
    config: TrainConfig,
    *,
    weights: torch.Tensor | None = None,
    progress: bool = True,
) -> History:
    """Train the head of ``model`` (its backbone frozen) on cached features; AdamW, warm-up and cosine decay.

    The loop is :func:`eaviz.train.train_one_epoch` on :class:`FeatureBatches`. Uses ``epochs``,
    ``batch_size``, ``lr``, ``weight_decay``, ``warmup_epochs``, ``seed`` and ``device`` of
    ``config``. Returns one row of metrics per epoch, like :func:`eaviz.train.train`.
    ``weights``: (num_classes,) loss weights, e.g. :func:`class_weights`.
    """
    if config.optimizer != "adamw" or config.schedule != "cosine":
        raise ValueError(
            f"train_head uses AdamW with a cosine schedule; got optimizer={config.optimizer!r}, "
            f"schedule={config.schedule!r}"
        )
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model = model.to(device)
    batches = FeatureBatches(train_set, config.batch_size, device=device, seed=config.seed)
    if len(batches) == 0:
        raise ValueError(f"expected at least one batch: {train_set.images} images, batch_size {config.batch_size}")
    optimizer = make_optimizer(model, config)
    scheduler = make_schedule(optimizer, config, len(batches))
    criterion = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device), ignore_index=VOID)
    head = HeadOnFeatures(model, batches.label_size)
    history = History()
    for epoch in range(1, config.epochs + 1):
        done = train_one_epoch(
            model, batches, optimizer, scheduler, criterion, step_model=head, amp=config.amp, progress=progress,
            desc=f"epoch {epoch}/{config.epochs}",
        )
        seen = done["seen"]
        row = {
            "epoch": epoch,
            "train_loss": done["loss_sum"].item() / seen,
            "lr": scheduler.get_last_lr()[0],
            "seconds": done["seconds"],
            "images_per_s": seen / done["seconds"],
        }
        if val_set is not None:
            metrics = evaluate_head(model, val_set)
            row.update({f"val_{k}": v for k, v in metrics.items() if not isinstance(v, (dict, list))})
            row["val_metrics"] = metrics
        history.epochs.append(row)
        if progress:
            tqdm.write(f"epoch {epoch}: {({k: round(v, 4) for k, v in row.items() if isinstance(v, float)})}")
    return history
