"""Small trained checkpoints shipped inside the package, each with a card.

``load_pretrained("cifar10-external")`` returns a ready model in eval mode and its card (a
dict: data, split, epochs, validation metrics, device, date, the exact command). The recipes
that produced them live here too, so ``python -m eaviz pretrained train NAME`` retrains one.

The shipped files are package data (``eaviz/checkpoints/``). A retrained checkpoint goes to a
folder you own (``~/.cache/eaviz/checkpoints`` unless told otherwise), never into the
installed package; ``load_pretrained(name, folder=...)`` loads it from there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib.resources import as_file
from pathlib import Path

import torch
from torch import nn

from eaviz._checks import check_device
from eaviz._io import atomic_save
from eaviz.card import make_card, read_card, write_card
from eaviz.models import ClassifierConfig, SegmenterConfig, build_model
from eaviz.paths import shipped, user_dir, writable_folder
from eaviz.train import TrainConfig, load_checkpoint, train


@dataclass(frozen=True)
class Recipe:
    """Everything needed to reproduce one shipped checkpoint."""

    dataset: str
    model: ClassifierConfig | SegmenterConfig
    train: TrainConfig
    data_size: int | None = None  # VOC: images are resized and cropped to this size


def _cifar(mixer: str) -> Recipe:
    return Recipe(
        "cifar10",
        ClassifierConfig(mixer=mixer),
        TrainConfig(epochs=5, batch_size=256, lr=2e-3, optimizer="adamw", weight_decay=0.05, warmup_epochs=1),
    )


def _voc(head: str) -> Recipe:
    return Recipe(
        "voc",
        SegmenterConfig(head=head),
        TrainConfig(
            epochs=30, batch_size=16, lr=2e-3, optimizer="adamw", weight_decay=0.01, warmup_epochs=2, crop_size=128
        ),
        data_size=160,
    )


RECIPES: dict[str, Recipe] = {
    "cifar10-external": _cifar("external"),
    "cifar10-self": _cifar("self"),
    "cifar10-multihead_external": _cifar("multihead_external"),
    "voc-external": _voc("external"),
    "voc-nonlocal": _voc("nonlocal"),
    "voc-none": _voc("none"),
}


def checkpoints_dir() -> Path:
    """Where ``pretrained train`` writes: ``$EAVIZ_HOME/checkpoints``, else ``~/.cache/eaviz/checkpoints``."""
    return user_dir("checkpoints")


def _folder(folder: str | Path | None):
    """The shipped checkpoints (package data) when ``folder`` is None, else that folder."""
    return shipped("checkpoints") if folder is None else Path(folder)


def available(folder: str | Path | None = None) -> list[str]:
    """Names of the checkpoints shipped with this copy of the package (or found in ``folder``)."""
    return sorted(file.name.removesuffix(".pt") for file in _folder(folder).iterdir() if file.name.endswith(".pt"))


def load_card(name: str, *, folder: str | Path | None = None) -> dict:
    """The card of a shipped checkpoint (or of one in ``folder``), without loading its weights."""
    card = _folder(folder) / f"{name}.json"
    if not card.is_file():
        where = "shipped with eaviz" if folder is None else f"in {folder}"
        raise FileNotFoundError(f"no card for {name!r} {where}; available: {available(folder)}")
    return read_card(card)


def load_pretrained(
    name: str, *, device: str | torch.device = "cpu", folder: str | Path | None = None
) -> tuple[nn.Module, dict]:
    """A shipped model in eval mode on ``device``, and its card.

    folder: load a retrained checkpoint from this folder instead, e.g. :func:`checkpoints_dir`.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown pretrained model {name!r}; expected one of {sorted(RECIPES)}")
    checkpoint = _folder(folder) / f"{name}.pt"
    if not checkpoint.is_file():
        where = "shipped with eaviz" if folder is None else f"in {folder}"
        raise FileNotFoundError(
            f"no checkpoint {name!r} {where}; available: {available(folder)}. "
            f"Train it with: python -m eaviz pretrained train {name}"
        )
    with as_file(checkpoint) as path:  # a real file even when the package is zipped
        model, _ = load_checkpoint(path, device=device)
    return model, load_card(name, folder=folder)


def train_recipe(
    name: str, *, root: str | Path | None = None, out: str | Path = "runs", folder: str | Path | None = None
) -> dict:
    """Train the recipe ``name`` on real data and write ``{name}.pt`` and its card ``{name}.json``.

    root: the data folder (default ``$EAVIZ_DATA``). out: the run folder (``out/name/last.pt``).
    folder: where the checkpoint and card go (default :func:`checkpoints_dir`); to ship a
    model, give ``eaviz/checkpoints`` of a checkout. Both folders are checked before training.
    """
    from eaviz.data import load_dataset

    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {sorted(RECIPES)}")
    folder = writable_folder(checkpoints_dir() if folder is None else folder, argument="folder (--checkpoint-dir)")
    writable_folder(Path(out) / name, argument="out (--out)")
    recipe = RECIPES[name]
    extra = {"size": recipe.data_size} if recipe.data_size else {}
    train_set = load_dataset(recipe.dataset, "train", root=root, **extra)
    val_set = load_dataset(recipe.dataset, "val", root=root, **extra)
    torch.manual_seed(recipe.train.seed)
    model = build_model(recipe.model)
    started = time.perf_counter()
    history = train(model, train_set, val_set, recipe.train, out=Path(out) / name)
    card = make_card(
        name=name,
        model=model,
        train_set=train_set,
        val_set=val_set,
        train_config=recipe.train,
        history=history,
        seconds=time.perf_counter() - started,
        device=check_device(recipe.train.device),
        command=f"python -m eaviz pretrained train {name}",
    )
    weights = {k: v.cpu() for k, v in model.state_dict().items()}
    atomic_save({"model": weights, "config": card["model"], "metrics": card["val_metrics"]}, folder / f"{name}.pt")
    write_card(card, folder / f"{name}.json")
    return card
