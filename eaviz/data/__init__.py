"""Datasets as in-memory tensors (CIFAR, Pascal VOC, built-in synthetic sets) and device-side batches."""

from __future__ import annotations

from eaviz.data.cifar import load_cifar
from eaviz.data.dataset import DATA_ENV, ImageDataset, data_root
from eaviz.data.loader import BatchLoader
from eaviz.data.synthetic import load_shapes, load_shapes_segmentation, make_shapes, make_shapes_segmentation
from eaviz.data.voc import load_voc

__all__ = [
    "DATA_ENV",
    "DATASETS",
    "BatchLoader",
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

DATASETS = ("cifar10", "cifar100", "voc", "shapes", "shapes_seg")


def load_dataset(name: str, split: str = "train", **kwargs) -> ImageDataset:
    """Load a dataset by name: "cifar10", "cifar100", "voc", "shapes" or "shapes_seg".

    Keyword arguments go to the loader (``root``, ``download``, ``limit``, ...). A named
    dataset that is missing raises an error that says how to get it; it is never replaced
    by a synthetic one behind your back.
    """
    if name in ("cifar10", "cifar100"):
        return load_cifar(name, split, **kwargs)
    if name == "voc":
        return load_voc(split, **kwargs)
    if name in ("shapes", "shapes_seg"):
        # Built-in sets need no files: a root or download flag has nothing to act on.
        kwargs.pop("root", None)
        kwargs.pop("download", None)
        if kwargs.get("limit") is not None:
            kwargs["n"] = kwargs.pop("limit")
        kwargs.pop("limit", None)
        loader = load_shapes if name == "shapes" else load_shapes_segmentation
        return loader(split, **kwargs)
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
