"""Small trained checkpoints shipped inside the package, each with a card.

``load_pretrained("cifar10-external")`` returns a ready model in eval mode and its card (a
dict: data, split, epochs, validation metrics, device, date, the exact command). The recipes
that produced them live here too, so ``python -m eaviz pretrained train NAME`` retrains one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from eaviz._checks import check_device
from eaviz._io import atomic_save
from eaviz.card import make_card, read_card, write_card
from eaviz.models import ClassifierConfig, SegmenterConfig, build_model
from eaviz.train import TrainConfig, load_checkpoint, train

CHECKPOINTS = Path(__file__).parent / "checkpoints"


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


def available() -> list[str]:
    """Names of the checkpoints shipped with this copy of the package."""
    return sorted(p.stem for p in CHECKPOINTS.glob("*.pt"))


def load_card(name: str) -> dict:
    """The card of a shipped checkpoint, without loading its weights."""
    path = CHECKPOINTS / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no card for {name!r} in {CHECKPOINTS}; available: {available()}")
    return read_card(path)


def load_pretrained(name: str, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """A shipped model in eval mode on ``device``, and its card."""
    if name not in RECIPES:
        raise ValueError(f"unknown pretrained model {name!r}; expected one of {sorted(RECIPES)}")
    path = CHECKPOINTS / f"{name}.pt"
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {path} is missing; available: {available()}. "
            f"Train it with: python -m eaviz pretrained train {name}"
        )
    model, _ = load_checkpoint(path, device=device)
    return model, load_card(name)


def train_recipe(name: str, *, root: str | Path | None = None, out: str | Path = "runs") -> dict:
    """Train the recipe ``name`` on real data and write ``eaviz/checkpoints/{name}.pt`` and its card."""
    from eaviz.data import load_dataset

    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {sorted(RECIPES)}")
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
    atomic_save({"model": weights, "config": card["model"], "metrics": card["val_metrics"]}, CHECKPOINTS / f"{name}.pt")
    write_card(card, CHECKPOINTS / f"{name}.json")
    return card
