"""CIFAR loading from an image folder or a .tar.gz of one, written here in the real layout."""

import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

import eaviz.data.cifar as cifar
from eaviz.data import load_dataset
from eaviz.data.cifar import CIFAR10_CLASSES, load_cifar
from eaviz.data.dataset import draw_across_classes


@pytest.fixture(autouse=True)
def small_folders(tmp_path, monkeypatch):
    """A private cache, and a validation split of 1 image per class to fit the tiny folders."""
    monkeypatch.setattr(cifar, "CACHE", tmp_path / "cache")
    monkeypatch.setitem(cifar.VAL_PER_CLASS, "cifar10", 1)


def write_folder(root, per_class=3, classes=CIFAR10_CLASSES, size=32):
    folder = root / "cifar10-train"
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((size, size, 3), 20 * label, dtype=np.uint8) + rng.integers(
                0, 5, (size, size, 3), dtype=np.uint8
            )
            Image.fromarray(pixels).save(folder / name / f"{i:04d}.png")
    return folder


def test_image_folder_gives_uint8_images_in_torchvision_class_order(tmp_path):
    write_folder(tmp_path)
    data = load_cifar("cifar10", "train", root=tmp_path)
    assert len(data) == 20  # 3 per class, the last one held out for "val"
    assert data.images.dtype == torch.uint8 and data.images.shape[1:] == (3, 32, 32)
    assert data.classes == CIFAR10_CLASSES
    # Pixels were written as 20 * label (+ small noise): labels follow torchvision's order.
    assert (data.images.float().mean(dim=(1, 2, 3)) // 20 == data.targets.float()).all()


def test_tar_gz_of_a_folder_reads_like_the_folder(tmp_path):
    folder = write_folder(tmp_path / "src")
    with tarfile.open(tmp_path / "cifar10-train.tar.gz", "w:gz") as archive:
        archive.add(folder, arcname="cifar10-train")
    from_tar = load_cifar("cifar10", "train", root=tmp_path)
    from_folder = load_cifar("cifar10", "train", root=tmp_path / "src")
    assert len(from_tar) == 20 and torch.equal(from_tar.images, from_folder.images)
    assert torch.equal(from_tar.targets, from_folder.targets)


def test_split_holds_out_the_last_images_of_each_class(monkeypatch, tmp_path):
    write_folder(tmp_path, per_class=5)
    monkeypatch.setitem(cifar.VAL_PER_CLASS, "cifar10", 2)
    train, val = load_cifar("cifar10", "train", root=tmp_path), load_cifar("cifar10", "val", root=tmp_path)
    assert len(train) == 30 and len(val) == 20
    assert torch.equal(val.targets.bincount(), torch.full((10,), 2))
    assert not set(map(bytes, train.images.numpy())) & set(map(bytes, val.images.numpy()))


def test_environment_variable_points_at_the_data(tmp_path, monkeypatch):
    write_folder(tmp_path)
    monkeypatch.setenv("EAVIZ_DATA", str(tmp_path))
    assert len(load_dataset("cifar10", "val", limit=4)) == 4


def test_missing_data_says_where_it_looked_and_how_to_fix_it(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_cifar("cifar10", "train", root=tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message and "download=True" in message and "EAVIZ_DATA" in message and "shapes" in message


def test_corrupt_image_is_named(tmp_path):
    folder = write_folder(tmp_path, per_class=1)
    (folder / "cat" / "0000.png").write_bytes(b"not a png")
    with pytest.raises(RuntimeError, match="cat/0000.png"):
        load_cifar("cifar10", "train", root=tmp_path)


def test_unknown_split_and_name_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_cifar("cifar10", "validation", root=tmp_path)
    with pytest.raises(ValueError, match="cifar10"):
        load_cifar("cifar1000", root=tmp_path)
    with pytest.raises(ValueError, match="shapes"):
        load_dataset("imagenet")


def test_limit_draws_at_random_one_class_at_a_time(tmp_path):
    write_folder(tmp_path, per_class=4)
    data = load_cifar("cifar10", "train", root=tmp_path, limit=20)  # 30 images, sorted by class
    assert data.targets.tolist() == list(range(10)) * 2
    again = load_cifar("cifar10", "train", root=tmp_path, limit=20)
    assert torch.equal(data.images, again.images)  # seeded


def test_draw_across_classes_is_a_seeded_shuffle_within_each_class():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    drawn = draw_across_classes(labels, 100)
    assert sorted(drawn.tolist()) == list(range(100))  # every index once, uneven classes included
    assert labels[drawn[:60]].tolist() == [0, 1, 2] * 20  # each prefix covers the classes evenly
    assert drawn[:3].tolist() != [0, 50, 80]  # not the first member of each class
    assert torch.equal(drawn, draw_across_classes(labels, 100))
    assert not torch.equal(drawn, draw_across_classes(labels, 100, seed=1))
