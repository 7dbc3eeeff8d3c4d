"""Batches drawn from a dataset that already sits on the training device, augmented there.

No worker processes: the whole uint8 dataset lives on the device and each batch is indexed,
converted to float and augmented with tensor ops, so a GPU never waits on Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from eaviz.data.dataset import ImageDataset

VOID = 255


def pad_crop_flip(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (reflect padding) and horizontal flip.

    images: (B, C, H, W) float -> (B, C, H, W) float.
    """
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    dy, dx = (torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=generator.device)).to(images.device)
    rows = (torch.arange(h, device=images.device)[None] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w, device=images.device)[None] + dx[:, None])[:, None, None, :]
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    out = padded[batch, channel, rows, cols]
    flip = (torch.rand(b, generator=generator, device=generator.device) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def scale_crop_flip(
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    crop_size: int,
    scale: tuple[float, float] = (0.75, 1.5),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint random scale, crop and flip of images and label maps (void = 255 where padded).

    images: (B, 3, H, W) float, labels: (B, H, W) int64 -> (B, 3, c, c), (B, c, c).
    One scale per batch keeps it a single interpolation; crops and flips are per image.
    """
    b, _, h, w = images.shape
    s = scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=generator, device=generator.device).item()
    size = (max(crop_size, round(h * s)), max(crop_size, round(w * s)))
    images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    top = torch.randint(0, size[0] - crop_size + 1, (b,), generator=generator, device=generator.device).tolist()
    left = torch.randint(0, size[1] - crop_size + 1, (b,), generator=generator, device=generator.device).tolist()
    flips = (torch.rand(b, generator=generator, device=generator.device) < 0.5).tolist()
    out_images, out_labels = [], []
    for i in range(b):
        image = images[i, :, top[i] : top[i] + crop_size, left[i] : left[i] + crop_size]
        label = labels[i, top[i] : top[i] + crop_size, left[i] : left[i] + crop_size]
        out_images.append(image.flip(-1) if flips[i] else image)
        out_labels.append(label.flip(-1) if flips[i] else label)
    return torch.stack(out_images), torch.stack(out_labels)


class BatchLoader:
    """Iterate over ``dataset`` in batches of (images float in [0, 1], targets), on ``device``.

    images: (B, 3, H, W) float32 (channels_last if asked); targets: (B,) or (B, H, W) int64.
    ``augment=True`` applies pad-crop-flip (classification) or scale-crop-flip to
    ``crop_size`` (segmentation). ``rank``/``world_size`` give each DDP process its shard.
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
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {batch_size}")
        if augment and dataset.task == "segmentation" and crop_size is None:
            raise ValueError("expected crop_size for augmenting a segmentation dataset, got None")
        self.dataset = dataset.to(device)
        self.batch_size = batch_size
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        self.crop_size, self.channels_last = crop_size, channels_last
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator(device=self.device if self.device.type == "cuda" else "cpu")
        self.generator.manual_seed(seed)
        self.epoch = 0

    def _shard(self) -> torch.Tensor:
        """This process's sample indices for the current epoch."""
        n = len(self.dataset)
        if self.shuffle:
            order_generator = torch.Generator().manual_seed(int(self.generator.initial_seed()) + self.epoch)
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
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            if self.drop_last and len(index) < self.batch_size:
                break
            images = self.dataset.images[index].float().div_(255)
            targets = self.dataset.targets[index]
            if self.augment and self.dataset.task == "segmentation":
                images, targets = scale_crop_flip(images, targets, self.generator, self.crop_size)
            elif self.augment:
                images = pad_crop_flip(images, self.generator)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, targets
