"""Pascal VOC 2012 semantic segmentation, decoded once into square uint8 tensors.

Splits. The official segmentation lists are ``train`` (1,464 images) and ``val`` (1,449).
The local copy under ``$EAVIZ_DATA`` holds 3,131 training pairs and no val list, so we hold
out part of the train list ourselves and never tune on it:

* ``"train"``: the sorted ids of the train list, all but every tenth;
* ``"val"``: every tenth sorted id (positions 9, 19, 29, ...; disjoint from ``"train"``);
* ``"official_val"``: the official val list; needs the full download (about 2 GB).

:func:`eval_split` picks ``"official_val"`` where that list is present (online, after the
download) and ``"val"`` otherwise.

Every image is resized so its shorter side is ``size`` (bilinear; masks nearest, so labels
stay labels) and center-cropped to ``size x size``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from einops import rearrange
from PIL import Image
from torchvision.datasets import VOCSegmentation
from torchvision.transforms import InterpolationMode
from tqdm.auto import tqdm

from eaviz._checks import check_positive_int
from eaviz.data.dataset import DATA_ENV, VOID, ImageDataset, data_root

VOC_CLASSES: list[str] = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
SPLITS = ("train", "val", "official_val")
HOLD_OUT_EVERY = 10  # every tenth sorted id of the train list is held out as "val"
# The classes with at least 0.2 M pixels in the local data (see its README); the others are
# barely seen in training, so their IoU says little: report them apart.
VOC_COMMON_CLASSES: list[str] = [
    "background", "cat", "dog", "horse", "person", "sheep", "cow", "sofa", "chair", "car",
    "pottedplant", "tvmonitor", "diningtable",
]  # fmt: skip
SPLIT_RULES = {
    "train": "the segmentation train list, sorted, without every tenth id",
    "val": "every tenth id of the sorted segmentation train list (held out, never tuned on)",
    "official_val": "the official segmentation val list",
}
VOC_DOWNLOAD = "Pascal VOC 2012 (VOCtrainval_11-May-2012.tar, about 2 GB)"

_FIX = (
    f"Set {DATA_ENV} (or pass root=) to the folder that holds VOCdevkit/VOC2012, pass "
    "download=True when online to fetch Pascal VOC 2012 (2 GB) with torchvision, or use "
    'the built-in synthetic set instead: load_dataset("shapes_seg").'
)


def _open_voc(root: Path, image_set: str, download: bool) -> VOCSegmentation:
    """torchvision's view of the tree: the id list and the paths of images and masks."""
    voc_dir = root / "VOCdevkit" / "VOC2012"
    try:
        # torchvision fetches the archive again whenever the .tar is gone, even if it was
        # extracted before: only ask for a download when there is nothing to read.
        fetch = download and not voc_dir.is_dir()
        if fetch:
            print(f"Downloading {VOC_DOWNLOAD} into {root}; torchvision shows the progress.", flush=True)
        return VOCSegmentation(root=root, year="2012", image_set=image_set, download=fetch)
    except FileNotFoundError as err:
        hint = " (a train-only subset has no val list: use split 'val')" if image_set == "val" else ""
        raise FileNotFoundError(f"Pascal VOC 2012 in {voc_dir} has no list {err.filename}{hint}. {_FIX}") from err
    except (RuntimeError, OSError) as err:
        if download:
            raise RuntimeError(f"could not download Pascal VOC 2012 into {root} ({err}). {_FIX}") from err
        raise FileNotFoundError(f"Pascal VOC 2012 not found: looked in {voc_dir} ({err}). {_FIX}") from err


def _split_ids(ids: list[str], split: str) -> list[str]:
    """Our train/val split of a sorted id list (see the module docstring)."""
    if split == "official_val":
        return ids
    held_out = [i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1 for i in range(len(ids))]
    return [name for name, out in zip(ids, held_out) if out == (split == "val")]


def eval_split(root: str | os.PathLike | None = None) -> str:
    """The split to evaluate on: ``"official_val"`` when its list is under ``root``, else ``"val"``."""
    val_list = data_root(root) / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt"
    return "official_val" if val_list.is_file() else "val"


def _read(path: Path, modes: tuple[str, ...]) -> Image.Image:
    """Decode one file fully, with an error that names it."""
    try:
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path} is missing; the VOC tree is incomplete. {_FIX}") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise RuntimeError(f"could not decode {path} ({err}); the file is corrupt, replace it. {_FIX}") from err
    if image.mode not in modes:
        raise RuntimeError(f"expected {path} in mode {' or '.join(modes)}, got {image.mode}. {_FIX}")
    return image


def _resize_crop(image: Image.Image, size: int, interpolation: InterpolationMode) -> np.ndarray:
    """Shorter side to ``size``, then the central ``size x size`` square."""
    image = TF.resize(image, size, interpolation=interpolation)
    return np.asarray(TF.center_crop(image, [size, size]))


def _decode_pair(image_path: Path, mask_path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """-> image (size, size, 3) uint8 and labels (size, size) uint8 in 0..20 or 255."""
    image = _read(image_path, ("RGB", "L", "CMYK")).convert("RGB")
    mask = _read(mask_path, ("P", "L"))
    if image.size != mask.size:
        raise RuntimeError(f"expected {mask_path} to match the size of {image_path} ({image.size}), got {mask.size}")
    labels = _resize_crop(mask, size, InterpolationMode.NEAREST)
    unknown = (labels >= len(VOC_CLASSES)) & (labels != VOID)
    if unknown.any():
        raise RuntimeError(
            f"expected labels 0..{len(VOC_CLASSES) - 1} or {VOID} in {mask_path}, "
            f"got {sorted(np.unique(labels[unknown]).tolist())}"
        )
    return _resize_crop(image, size, InterpolationMode.BILINEAR), labels


def load_voc(
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    size: int = 160,
    download: bool = False,
    limit: int | None = None,
    progress: bool = True,
) -> ImageDataset:
    """Pascal VOC 2012 segmentation as an :class:`ImageDataset`.

    split: "train" / "val" (all but every tenth / every tenth sorted train id) or "official_val".
    root: the folder that holds ``VOCdevkit/VOC2012`` (default: see ``data_root``).
    download: fetch the dataset with torchvision when it is not under ``root`` (online only).
    limit: keep only the first ``limit`` ids of the split.
    progress: show a progress bar while the pairs are decoded.
    -> images (n, 3, size, size) uint8, targets (n, size, size) int64 in 0..20 or 255 (void),
       masks (n, size, size) bool = object pixels (neither background nor void),
       info {"split", "ids", "pixels_per_class" (21 ints, void not counted),
       "present_classes" (indices into ``classes`` with at least one pixel)}.
    """
    if split not in SPLITS:
        raise ValueError(f"expected split to be one of {list(SPLITS)}, got {split!r}")
    check_positive_int(size, "size")
    if limit is not None:
        check_positive_int(limit, "limit")
    root = data_root(root)
    voc = _open_voc(root, "val" if split == "official_val" else "train", download)
    pairs = {Path(image).stem: (Path(image), Path(mask)) for image, mask in zip(voc.images, voc.targets)}
    ids = _split_ids(sorted(pairs), split)[:limit]
    if not ids:
        raise RuntimeError(f"split {split!r} of {root / 'VOCdevkit' / 'VOC2012'} has no images. {_FIX}")

    images, targets = [], []
    for name in tqdm(ids, desc=f"VOC {split}", unit="img", disable=not progress):
        image, labels = _decode_pair(*pairs[name], size)
        images.append(rearrange(torch.from_numpy(image.copy()), "h w c -> c h w"))
        targets.append(torch.from_numpy(labels.astype(np.int64)))
    images_t, targets_t = torch.stack(images), torch.stack(targets)

    pixels = torch.bincount(targets_t.flatten(), minlength=VOID + 1)[: len(VOC_CLASSES)]
    return ImageDataset(
        images=images_t,
        targets=targets_t,
        classes=list(VOC_CLASSES),
        masks=(targets_t != 0) & (targets_t != VOID),
        name="voc",
        info={
            "split": split,
            "split_rule": SPLIT_RULES[split],
            "ids": ids,
            "pixels_per_class": pixels.tolist(),
            "present_classes": pixels.nonzero().flatten().tolist(),
        },
    )
