"""Datasets as in-memory tensors (CIFAR, Pascal VOC, built-in synthetic sets) and device-side batches.

``DATASETS`` is the one table of datasets by name: each entry holds its loader, called as
``loader(split, *, root=None, download=False, limit=None, **options)``, and its task. A new
dataset is a loader with that signature and one line in the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from eaviz._checks import check_choice
from eaviz.data.cifar import load_cifar
from eaviz.data.dataset import DATA_ENV, ImageDataset, data_root
from eaviz.data.loader import BatchLoader
from eaviz.data.synthetic import load_shapes, load_shapes_segmentation, make_shapes, make_shapes_segmentation
from eaviz.data.voc import load_voc

__all__ = [
    "DATA_ENV",
    "DATASETS",
    "BatchLoader",
    "DatasetEntry",
    "ImageDataset",
    "data_root",
    "load_cifar",
    "load_dataset",
    "load_shapes",
    "load_shapes_segmentation",
    "load_voc",
    "make_shapes",
    "make_shapes_segmentation",
]

TASKS = ("classification", "segmentation")


@dataclass(frozen=True)
class DatasetEntry:
    """A table entry: ``loader(split, *, root, download, limit, **options) -> ImageDataset`` and its task."""

    loader: Callable[..., ImageDataset]
    task: str

    def __post_init__(self) -> None:
        check_choice(self.task, TASKS, "task")


def built_in(make: Callable[..., ImageDataset]) -> Callable[..., ImageDataset]:
    """A synthetic set's loader in the table's signature: it needs no files, and ``limit`` is its size ``n``."""

    def loader(split: str = "train", *, root=None, download: bool = False, limit: int | None = None, **options):
        return make(split, n=limit, **options)

    return loader


DATASETS: dict[str, DatasetEntry] = {
    "cifar10": DatasetEntry(partial(load_cifar, "cifar10"), "classification"),
    "cifar100": DatasetEntry(partial(load_cifar, "cifar100"), "classification"),
    "voc": DatasetEntry(load_voc, "segmentation"),
    "shapes": DatasetEntry(built_in(load_shapes), "classification"),
    "shapes_seg": DatasetEntry(built_in(load_shapes_segmentation), "segmentation"),
}


def load_dataset(name: str, split: str = "train", **kwargs) -> ImageDataset:
    """Load a dataset of ``DATASETS`` by name: "cifar10", "cifar100", "voc", "shapes" or "shapes_seg".

    Keyword arguments go to the loader (``root``, ``download``, ``limit``, ...). A named
    dataset that is missing raises an error that says how to get it; it is never replaced
    by a synthetic one behind your back.
    """
    return DATASETS[check_choice(name, tuple(DATASETS), "dataset")].loader(split, **kwargs)
