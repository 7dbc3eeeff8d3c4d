"""Small trained checkpoints shipped inside the package, each with a card.

``load_pretrained("cifar10-external")`` returns a ready model in eval mode and its card (a
dict: data, split, epochs, validation metrics, device, date, the exact command). The recipes
that produced them live here too, so ``python -m eaviz pretrained train NAME`` retrains one.
"""

from __future__ import annotations

import datetime
import json
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from eaviz import __version__
from eaviz._io import atomic_write_text
from eaviz.fast_recipe import FastRecipeConfig
from eaviz.models import ClassifierConfig, FastClassifierConfig, SegmenterConfig, build_model
from eaviz.profile import describe_device, resolve_device
from eaviz.train import TrainConfig, load_checkpoint, save_checkpoint, train

CHECKPOINTS = Path(__file__).parent / "checkpoints"


@dataclass(frozen=True)
class Recipe:
    """Everything needed to reproduce one shipped checkpoint."""

    dataset: str
    model: ClassifierConfig | FastClassifierConfig | SegmenterConfig
    train: TrainConfig | FastRecipeConfig  # FastRecipeConfig: trained by eaviz.fast_recipe
    data_size: int | None = None  # VOC: images are resized and cropped to this size


def _cifar(mixer: str, recipe: FastRecipeConfig) -> Recipe:
    return Recipe("cifar10", FastClassifierConfig(mixer=mixer), recipe)


# The flagship trained for 2,278 s (the time left when the shared CPU was free); the others the comparison's 80 s.
CIFAR_FLAGSHIP = FastRecipeConfig(epochs=30, batch_size=512, time_budget_s=2278)
CIFAR_SHORT = FastRecipeConfig(epochs=3, batch_size=256, time_budget_s=80)


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
    "cifar10-external": _cifar("external", CIFAR_FLAGSHIP),
    "cifar10-self": _cifar("self", CIFAR_SHORT),
    "cifar10-multihead_external": _cifar("multihead_external", CIFAR_SHORT),
    "cifar10-none": _cifar("none", CIFAR_SHORT),
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
    return json.loads(path.read_text())


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
    if isinstance(recipe.train, FastRecipeConfig):
        from eaviz.fast_recipe import run, ship, train_command

        model, summary = run(recipe.model.mixer, recipe.train, root=root, out=Path(out) / name)
        return ship(name, model, recipe.train, summary, train_command(recipe.model.mixer, recipe.train, name))
    extra = {"size": recipe.data_size} if recipe.data_size else {}
    train_set = load_dataset(recipe.dataset, "train", root=root, **extra)
    val_set = load_dataset(recipe.dataset, "val", root=root, **extra)
    torch.manual_seed(recipe.train.seed)
    model = build_model(recipe.model)
    device = resolve_device(recipe.train.device)
    started = time.perf_counter()
    history = train(model, train_set, val_set, recipe.train, out=Path(out) / name)
    seconds = time.perf_counter() - started
    peak_memory = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    metrics = history.last["val_metrics"]
    card = {
        "name": name,
        "task": train_set.task,
        "dataset": recipe.dataset,
        "split": {
            "train": len(train_set),
            "val": len(val_set),
            "rule": train_set.info.get("split_rule", "see eaviz.data: held-out part of the training set"),
        },
        "model": recipe.model.to_dict(),
        "train": asdict(recipe.train),
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": recipe.train.epochs,
        "val_metrics": metrics,
        "history": [{k: v for k, v in row.items() if k != "val_metrics"} for row in history.epochs],
        "train_seconds": round(seconds, 1),
        "images_per_s": round(sum(r["images_per_s"] for r in history.epochs) / len(history.epochs), 1),
        "peak_memory_mib": round(peak_memory, 1),
        "device": describe_device(device),
        "date": datetime.date.today().isoformat(),
        "command": f"python -m eaviz pretrained train {name}",
        "eaviz_version": __version__,
        "torch_version": torch.__version__,
    }
    CHECKPOINTS.mkdir(exist_ok=True)
    save_checkpoint(
        CHECKPOINTS / f"{name}.pt",
        {
            "model": {k: v.cpu() for k, v in model.state_dict().items()},
            "config": recipe.model.to_dict(),
            "metrics": metrics,
        },
    )
    atomic_write_text(json.dumps(card, indent=2) + "\n", CHECKPOINTS / f"{name}.json")
    return card
