"""One in-memory dataset type for every task: uint8 images held as a single tensor."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

DATA_ENV = "EAVIZ_DATA"
VOID = 255  # the label of pixels that no loss or metric counts (object boundaries in VOC)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where datasets live: ``root`` if given, else ``$EAVIZ_DATA``, else ``~/.cache/eaviz/data``."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return Path.home() / ".cache" / "eaviz" / "data"


@dataclass
class ImageDataset:
    """A whole dataset as tensors, so it can sit on the training device.

    images:  (n, 3, H, W) uint8
    targets: (n,) int64 class labels, or (n, H, W) int64 segmentation labels (255 = void)
    masks:   (n, H, W) bool object masks where they are known (synthetic sets, VOC), else None
    """

    images: torch.Tensor
    targets: torch.Tensor
    classes: list[str]
    masks: torch.Tensor | None = None
    name: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(
                f"expected images as a uint8 tensor of shape (n, 3, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.targets.shape[0] != self.images.shape[0]:
            raise ValueError(f"expected one target per image ({self.images.shape[0]}), got {self.targets.shape[0]}")

    @property
    def task(self) -> str:
        """The task, read off the targets' shape: "classification" or "segmentation"."""
        return "segmentation" if self.targets.ndim == 3 else "classification"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, task={self.task!r}, n={len(self)}, "
            f"images={tuple(self.images.shape)}, classes={len(self.classes)}, masks={self.masks is not None})"
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One sample as the models take it: (3, H, W) float in [0, 1] and its target."""
        return self.images[index].float() / 255, self.targets[index]

    def subset(self, index: torch.Tensor | slice | list[int]) -> "ImageDataset":
        """The samples at ``index`` (a slice, a list, or an index / bool tensor)."""
        if isinstance(index, list):
            index = torch.tensor(index, dtype=torch.long)
        masks = None if self.masks is None else self.masks[index]
        return replace(self, images=self.images[index], targets=self.targets[index], masks=masks)

    def to(self, device: torch.device | str) -> "ImageDataset":
        masks = None if self.masks is None else self.masks.to(device)
        return replace(self, images=self.images.to(device), targets=self.targets.to(device), masks=masks)


def draw_across_classes(labels: torch.Tensor, limit: int, seed: int = 0) -> torch.Tensor:
    """``limit`` indices drawn at random, dealt one class at a time: (n,) labels -> (limit,) indices.

    Each class's members are shuffled (seeded); the draw then takes the first of every class,
    then the second of every class, and so on, so every prefix of the result covers the
    classes evenly (``limit=100`` on CIFAR-10 gives 10 images of each class).
    """
    generator = torch.Generator().manual_seed(seed)
    by_class = [(labels == c).nonzero().flatten() for c in labels.unique()]
    shuffled = [members[torch.randperm(len(members), generator=generator)] for members in by_class]
    rounds = torch.nn.utils.rnn.pad_sequence(shuffled, padding_value=-1)  # (largest class, classes)
    dealt = rounds.flatten()
    return dealt[dealt >= 0][:limit]
