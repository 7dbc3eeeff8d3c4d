"""Device-side batches and augmentation."""

import torch

from eaviz.data import BatchLoader, ImageDataset
from eaviz.data.loader import scale_crop_flip


def classification_set(n=10, size=8):
    images = torch.arange(n * 3 * size * size, dtype=torch.long).remainder(256).to(torch.uint8).view(n, 3, size, size)
    return ImageDataset(images, torch.arange(n), [str(i) for i in range(n)])


def segmentation_set(n=4, size=16):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    targets = torch.randint(0, 3, (n, size, size), generator=g)
    targets[:, 0] = 255
    return ImageDataset(images, targets, ["background", "a", "b"])


def test_batches_cover_the_dataset_once_in_float_in_unit_range():
    loader = BatchLoader(classification_set(), 4, shuffle=True, seed=1)
    seen = torch.cat([targets for _, targets in loader])
    assert sorted(seen.tolist()) == list(range(10)) and len(loader) == 3
    images, _ = next(iter(loader))
    assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1


def test_pad_crop_flip_keeps_shape_and_range_and_changes_pixels():
    data = classification_set(n=64)
    plain, augmented = BatchLoader(data, 64), BatchLoader(data, 64, augment=True, seed=0)
    (x, _), (y, _) = next(iter(plain)), next(iter(augmented))
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert not torch.equal(x, y)


def test_segmentation_augmentation_moves_images_and_labels_together():
    data = segmentation_set()
    # Blocky label maps, painted into the red channel, so a joint transform keeps them aligned.
    blocks = torch.randint(0, 3, (4, 4, 4), generator=torch.Generator().manual_seed(1))
    data.targets = blocks.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)
    data.images[:, 0] = (data.targets * 100).to(torch.uint8)
    images, labels = next(iter(BatchLoader(data, 4, augment=True, crop_size=12, seed=3)))
    assert images.shape == (4, 3, 12, 12) and labels.shape == (4, 12, 12)
    agree = ((images[:, 0] * 255 / 100).round().long() == labels).float().mean()
    assert agree > 0.8  # only pixels on block edges are blurred by the bilinear rescale


def test_same_seed_gives_same_batches():
    data = classification_set(n=32)
    first = [x for x, _ in BatchLoader(data, 8, shuffle=True, augment=True, seed=5)]
    second = [x for x, _ in BatchLoader(data, 8, shuffle=True, augment=True, seed=5)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_ranks_take_disjoint_shards():
    data = classification_set(n=10)
    shards = [torch.cat([t for _, t in BatchLoader(data, 2, shuffle=True, rank=r, world_size=2)]) for r in (0, 1)]
    assert not set(shards[0].tolist()) & set(shards[1].tolist()) and len(shards[0]) == len(shards[1]) == 5


def test_crops_larger_than_the_scaled_image_are_padded_with_void_labels():
    data = segmentation_set(n=2, size=8)
    generator = torch.Generator().manual_seed(0)
    images, labels = scale_crop_flip(data.images.float() / 255, data.targets, generator, crop_size=16, scale=(1.0, 1.0))
    assert images.shape == (2, 3, 16, 16) and labels.shape == (2, 16, 16)
    assert (labels == 255).sum() >= 2 * (16 * 16 - 8 * 8)  # the padding, plus the void row of the data


def test_ranks_draw_different_augmentations_but_the_same_shuffle():
    data = classification_set(n=8)
    first, second = (BatchLoader(data, 4, shuffle=True, augment=True, rank=r, world_size=2) for r in (0, 1))
    assert not torch.equal(first.generator.get_state(), second.generator.get_state())
    assert torch.equal(torch.cat([first._shard(), second._shard()]).sort().values, torch.arange(8))
