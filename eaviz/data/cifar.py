"""CIFAR-10 and CIFAR-100: the official download, or a local image folder / .tar.gz of one.

Local layout (as in ``$EAVIZ_DATA/cifar10-train.tar.gz``)::

    cifar10-train/<class>/NNNN.jpg      (an extracted folder, or the same inside a .tar.gz)

Our split of a training set: the first 4,500 images of each class (in file-name order, or
in the official order) are ``"train"``, the last 500 ``"val"``. ``"test"`` is the official test
set, which only the download has.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from eaviz._checks import check_number
from eaviz._io import atomic_save, read_checkpoint, remove_stale_temp_files
from eaviz.data.dataset import ImageDataset, data_root, draw_across_classes

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
VAL_PER_CLASS = {"cifar10": 500, "cifar100": 50}
SPLITS = ("train", "val", "test")
CACHE = Path.home() / ".cache" / "eaviz"
CACHE_VERSION = 2  # raise when the cached tensors change meaning


def _decode(data: bytes, where: str) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(data)).convert("RGB")
    except Exception as error:  # PIL raises several types for broken files
        raise RuntimeError(f"could not decode image {where}: {error}; the file is corrupt, re-extract it") from error
    if image.size != (32, 32):
        raise RuntimeError(f"expected a 32x32 CIFAR image at {where}, got {image.size[0]}x{image.size[1]}")
    return np.asarray(image)


def _class_of(member: str) -> str:
    """'cifar10-train/cat/0001.jpg' -> 'cat'."""
    return Path(member).parent.name


def read_image_folder(source: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """An ImageFolder tree or a .tar.gz of one -> images (n, 3, 32, 32) uint8, labels (n,), classes.

    Classes are sorted by name unless they are exactly CIFAR-10's, which keep torchvision's order.
    """
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        items = [(str(p.relative_to(source)), p.read_bytes, str(p)) for p in files]
    else:
        try:
            archive = tarfile.open(source)
            members = sorted(
                (m for m in archive.getmembers() if m.isfile() and Path(m.name).suffix.lower() in {".jpg", ".png"}),
                key=lambda m: m.name,
            )
        except (tarfile.TarError, OSError, EOFError) as error:
            raise RuntimeError(f"could not read the archive {source}: {error}; download it again") from error
        items = [(m.name, lambda m=m: archive.extractfile(m).read(), f"{source}:{m.name}") for m in members]
    if not items:
        raise RuntimeError(f"found no .jpg or .png images in {source}; expected <class>/<image>.jpg inside")
    names = sorted({_class_of(name) for name, _, _ in items})
    classes = CIFAR10_CLASSES if sorted(CIFAR10_CLASSES) == names else names
    index = {name: i for i, name in enumerate(classes)}
    images = np.stack([_decode(read(), where) for _, read, where in tqdm(items, desc=f"decoding {source.name}")])
    labels = torch.tensor([index[_class_of(name)] for name, _, _ in items])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels, classes


def _checksum(images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> str:
    """BLAKE2b of the cached tensors and class names: a changed byte changes it."""
    digest = hashlib.blake2b(digest_size=16)
    for tensor in (images, labels):
        digest.update(tensor.contiguous().numpy().data)
    digest.update("\n".join(classes).encode())
    return digest.hexdigest()


def _read_cache(cache: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """The cached tensors, or None (with a warning) when the file is unreadable, stale or altered."""
    try:
        saved = read_checkpoint(cache)
        if saved.get("version") != CACHE_VERSION:
            raise ValueError(f"it has version {saved.get('version')}, this eaviz writes {CACHE_VERSION}")
        images, labels, classes = saved["images"], saved["labels"], saved["classes"]
        if saved.get("checksum") != _checksum(images, labels, classes):
            raise ValueError("its checksum does not match its contents")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        warnings.warn(f"rebuilding the cache {cache}: {error}", stacklevel=3)
        return None
    return images, labels, classes


def _cached_image_folder(source: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """read_image_folder, cached as one uint8 tensor file keyed by the source's path, size and time.

    The cache records its format version and a checksum; a file that does not match either
    (an older eaviz, a half-written or damaged file) is rebuilt from the source.
    """
    stat = source.stat()
    key = hashlib.sha1(f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    cache = CACHE / f"{source.name.split('.')[0]}-{key}.pt"
    if CACHE.is_dir():
        remove_stale_temp_files(CACHE)
    if cache.exists() and (cached := _read_cache(cache)) is not None:
        return cached
    images, labels, classes = read_image_folder(source)
    payload = {"images": images, "labels": labels, "classes": classes}
    atomic_save({**payload, "version": CACHE_VERSION, "checksum": _checksum(images, labels, classes)}, cache)
    return images, labels, classes


def split_per_class(labels: torch.Tensor, val_per_class: int, split: str) -> torch.Tensor:
    """Indices of ``split``: the last ``val_per_class`` of each class are "val", the rest "train"."""
    keep = []
    for c in labels.unique():
        members = (labels == c).nonzero().flatten()
        keep.append(members[-val_per_class:] if split == "val" else members[:-val_per_class])
    return torch.cat(keep).sort().values


def _official(name: str, root: Path, train: bool, download: bool):
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    return cls(root=str(root), train=train, download=download)


def load_cifar(
    name: str = "cifar10",
    split: str = "train",
    *,
    root: str | Path | None = None,
    download: bool = False,
    limit: int | None = None,
) -> ImageDataset:
    """CIFAR-10/100 as an :class:`ImageDataset` of uint8 images (n, 3, 32, 32).

    Looks under ``root`` (or ``$EAVIZ_DATA``) for ``{name}-train/`` or ``{name}-train.tar.gz``
    first, then for the official ``cifar-10-batches-py`` / ``cifar-100-python``; with
    ``download=True`` torchvision fetches the official files. ``limit`` keeps ``limit``
    images drawn at random (seed 0) one class at a time: see :func:`draw_across_classes`.
    """
    if name not in VAL_PER_CLASS:
        raise ValueError(f"expected name to be one of {sorted(VAL_PER_CLASS)}, got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"expected split to be one of {SPLITS}, got {split!r}")
    if limit is not None:
        check_number(limit, "limit", low=1, integer=True)
    base = data_root(root)
    local = [base / f"{name}-train", base / f"{name}-train.tar.gz"]
    official = base / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    source = next((p for p in local if p.exists()), None)
    if source is not None and split != "test":
        images, labels, classes = _cached_image_folder(source)
    elif official.exists() or download:
        data = _official(name, base, train=split != "test", download=download)
        images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()
        labels, classes = torch.tensor(data.targets), list(data.classes)
        source = official
    else:
        wanted = (
            "the official test set (only the download has it)"
            if split == "test"
            else f"{local[0].name}/ or {local[1].name}"
        )
        raise FileNotFoundError(
            f"no {name} data found in {base}: looked for {wanted} and {official.name}/. "
            f"Fix: pass download=True (online), set $EAVIZ_DATA or root= to the folder that holds it, "
            f"or use the built-in synthetic set: load_dataset('shapes')"
        )
    if split != "test":
        index = split_per_class(labels, VAL_PER_CLASS[name], split)
        images, labels = images[index], labels[index]
    if limit is not None and limit < len(labels):
        drawn = draw_across_classes(labels, limit)
        images, labels = images[drawn], labels[drawn]
    return ImageDataset(images, labels, classes, name=name, info={"split": split, "source": str(source)})
