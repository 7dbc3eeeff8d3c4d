"""The in-memory dataset type."""

import pytest
import torch

from eaviz.data import DATASETS, ImageDataset, load_dataset


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


def test_every_dataset_in_the_table_has_a_task():
    assert {name: entry.task for name, entry in DATASETS.items()} == {
        "cifar10": "classification",
        "cifar100": "classification",
        "voc": "segmentation",
        "shapes": "classification",
        "shapes_seg": "segmentation",
    }


@pytest.mark.parametrize("name", ["shapes", "shapes_seg"])
def test_built_in_sets_take_the_table_signature_and_their_task_matches_the_data(name):
    data = load_dataset(name, "val", root="/nowhere", download=False, limit=3)
    assert len(data) == 3 and data.task == DATASETS[name].task


def test_an_unknown_dataset_lists_the_table():
    with pytest.raises(ValueError, match=r"expected dataset to be one of \(.cifar10., .*\), got .imagenet."):
        load_dataset("imagenet")
