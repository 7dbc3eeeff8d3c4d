"""Translate and alternating flip, the augmentation of the fast CIFAR recipe."""

import pytest
import torch

from eaviz.data import BatchLoader, ImageDataset
from eaviz.data.loader import alternating_flips, translate


def ramp_set(n: int = 8, size: int = 8) -> ImageDataset:
    """Images whose pixels grow left to right, so a mirror image is easy to tell apart."""
    row = torch.linspace(0, 255, size).round().to(torch.uint8)
    images = row.expand(n, 3, size, size).contiguous()
    return ImageDataset(images, torch.arange(n) % 2, ["a", "b"])


def test_translate_by_zero_pixels_is_the_identity():
    images = torch.rand(3, 3, 8, 8)
    assert torch.equal(translate(images, torch.Generator().manual_seed(0), 0), images)


def test_translate_moves_each_image_by_at_most_pad_pixels():
    images = torch.zeros(16, 1, 9, 9)
    images[:, :, 4, 4] = 1  # one bright pixel in the middle
    moved = translate(images, torch.Generator().manual_seed(0), 2)
    rows, cols = (moved[:, 0] == 1).nonzero()[:, 1:].T
    assert len(rows) == 16 and (rows - 4).abs().max() <= 2 and (cols - 4).abs().max() <= 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 1


def test_alternating_flips_switch_every_epoch_and_start_with_about_half():
    first, second, third = (alternating_flips(1000, seed=0, epoch=e) for e in range(3))
    assert torch.equal(second, ~first) and torch.equal(third, first)
    assert 400 < int(first.sum()) < 600


def test_loader_with_alternating_flip_shows_each_image_both_ways_over_two_epochs():
    loader = BatchLoader(ramp_set(), 8, augment=True, translate=0, flip="alternating", seed=3)
    epoch0, epoch1 = (next(iter(loader))[0] for _ in range(2))
    mirrored0 = epoch0[:, 0, 0, 0] > epoch0[:, 0, 0, -1]
    mirrored1 = epoch1[:, 0, 0, 0] > epoch1[:, 0, 0, -1]
    assert torch.equal(mirrored1, ~mirrored0)


def test_loader_rejects_an_unknown_flip():
    with pytest.raises(ValueError, match=r"expected flip to be one of \('random', 'alternating'\), got 'sometimes'"):
        BatchLoader(ramp_set(), 4, flip="sometimes")
