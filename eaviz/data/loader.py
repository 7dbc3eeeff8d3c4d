"""Batches drawn from a dataset that already sits on the training device, augmented there.

No worker processes: the whole uint8 dataset lives on the device and each batch is indexed,
converted to float and augmented with tensor ops, so a GPU never waits on Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from eaviz.data.dataset import VOID, ImageDataset

FLIPS = ("random", "alternating")


def translate(images: torch.Tensor, generator: torch.Generator, pad: int) -> torch.Tensor:
    """Random translation of each image by up to ``pad`` pixels each way (reflect padding).

    images: (B, C, H, W) float -> (B, C, H, W) float.
    """
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    dy, dx = (torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=generator.device)).to(images.device)
    rows = (torch.arange(h, device=images.device)[None] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w, device=images.device)[None] + dx[:, None])[:, None, None, :]
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def flip_where(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images whose ``flip`` entry is True: (B, C, H, W), (B,) bool -> (B, C, H, W)."""
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def pad_crop_flip(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (reflect padding) and horizontal flip.

    images: (B, C, H, W) float -> (B, C, H, W) float.
    """
    out = translate(images, generator, pad)
    flip = (torch.rand(len(images), generator=generator, device=generator.device) < 0.5).to(images.device)
    return flip_where(out, flip)


def alternating_flips(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Which of ``n`` images to mirror in ``epoch``: (n,) bool.

    A random half in epoch 0, then each image's choice switches every epoch, so every pair of
    consecutive epochs shows every image both ways (airbench's "alternating flip": fewer
    repeated views than flipping at random each time).
    """
    first = torch.rand(n, generator=torch.Generator().manual_seed(seed + 104_729)) < 0.5
    return first ^ bool(epoch % 2)


def scale_crop_flip(
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    crop_size: int,
    scale: tuple[float, float] = (0.75, 1.5),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint random scale, crop and flip of images and label maps.

    images: (B, 3, H, W) float, labels: (B, H, W) int64 -> (B, 3, c, c), (B, c, c).
    One scale per batch keeps it a single interpolation; crops and flips are per image.
    Where the scaled image is smaller than the crop it is padded: black pixels, void labels.
    """
    b, _, h, w = images.shape
    device, draw = images.device, generator.device
    s = scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=generator, device=draw).item()
    size = (round(h * s), round(w * s))
    images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    pad_h, pad_w = max(0, crop_size - size[0]), max(0, crop_size - size[1])
    images = F.pad(images, (0, pad_w, 0, pad_h))
    labels = F.pad(labels, (0, pad_w, 0, pad_h), value=VOID)
    height, width = images.shape[-2:]
    top = torch.randint(0, height - crop_size + 1, (b,), generator=generator, device=draw).to(device)
    left = torch.randint(0, width - crop_size + 1, (b,), generator=generator, device=draw).to(device)
    flip = (torch.rand(b, generator=generator, device=draw) < 0.5).to(device)
    offsets = torch.arange(crop_size, device=device)
    rows = top[:, None] + offsets  # (B, c)
    cols = left[:, None] + torch.where(flip[:, None], offsets.flip(0), offsets)  # reversed columns = flip
    batch = torch.arange(b, device=device)[:, None, None]
    labels = labels[batch, rows[:, :, None], cols[:, None, :]]
    channel = torch.arange(images.shape[1], device=device)[None, :, None, None]
    images = images[batch[:, None], channel, rows[:, None, :, None], cols[:, None, None, :]]
    return images, labels


class BatchLoader:
    """Iterate over ``dataset`` in batches of (images float in [0, 1], targets), on ``device``.

    images: (B, 3, H, W) float32 (channels_last if asked); targets: (B,) or (B, H, W) int64.
    ``augment=True`` applies pad-crop-flip (classification: a translation by up to
    ``translate`` pixels, and a mirror drawn at random or, with ``flip="alternating"``, by
    :func:`alternating_flips`) or scale-crop-flip to ``crop_size`` (segmentation).
    ``rank``/``world_size`` give each DDP process its shard.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        device: torch.device | str = "cpu",
        seed: int = 0,
        drop_last: bool = False,
        crop_size: int | None = None,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        translate: int = 4,
        flip: str = "random",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {batch_size}")
        if flip not in FLIPS:
            raise ValueError(f"expected flip to be one of {FLIPS}, got {flip!r}")
        if isinstance(translate, bool) or not isinstance(translate, int) or translate < 0:
            raise ValueError(f"expected translate to be an int >= 0 (pixels), got {translate!r}")
        if augment and dataset.task == "segmentation" and crop_size is None:
            raise ValueError("expected crop_size for augmenting a segmentation dataset, got None")
        self.dataset = dataset.to(device)
        self.batch_size = batch_size
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        self.crop_size, self.channels_last = crop_size, channels_last
        self.translate, self.flip = translate, flip
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.seed = seed
        # Augmentation draws differ between ranks; the shuffle order (below) is the same on all.
        self.generator = torch.Generator(device=self.device if self.device.type == "cuda" else "cpu")
        self.generator.manual_seed(seed + 7919 * rank)
        self.epoch = 0

    def _shard(self) -> torch.Tensor:
        """This process's sample indices for the current epoch."""
        n = len(self.dataset)
        if self.shuffle:
            order_generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=order_generator)
        else:
            order = torch.arange(n)
        per_rank = n // self.world_size if self.world_size > 1 else n
        return order[self.rank * per_rank : (self.rank + 1) * per_rank] if self.world_size > 1 else order

    def __len__(self) -> int:
        n = len(self._shard())
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._shard().to(self.device)
        flips = None
        if self.flip == "alternating":
            flips = alternating_flips(len(self.dataset), self.seed, self.epoch).to(self.device)
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            if self.drop_last and len(index) < self.batch_size:
                break
            images = self.dataset.images[index].float().div_(255)
            targets = self.dataset.targets[index]
            if self.augment and self.dataset.task == "segmentation":
                images, targets = scale_crop_flip(images, targets, self.generator, self.crop_size)
            elif self.augment and flips is not None:
                images = flip_where(translate(images, self.generator, self.translate), flips[index])
            elif self.augment:
                images = pad_crop_flip(images, self.generator, self.translate)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, targets
