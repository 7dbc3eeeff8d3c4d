"""The in-memory dataset type."""

import pytest
import torch

from eaviz.data import ImageDataset


def small(n=6):
    return ImageDataset(torch.zeros(n, 3, 4, 4, dtype=torch.uint8), torch.arange(n), list("abcdef"), name="toy")


def test_repr_is_one_short_line_not_the_pixels():
    text = repr(small())
    assert text == "ImageDataset(name='toy', task='classification', n=6, images=(6, 3, 4, 4), classes=6, masks=False)"


def test_subset_and_indexing_give_float_images_in_unit_range():
    data = small().subset([1, 3])
    image, target = data[1]
    assert len(data) == 2 and image.dtype == torch.float32 and target.item() == 3


def test_images_must_be_uint8_with_one_target_each():
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(torch.zeros(2, 3, 4, 4), torch.arange(2), ["a", "b"])
    with pytest.raises(ValueError, match="one target per image"):
        ImageDataset(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.arange(3), ["a", "b"])
