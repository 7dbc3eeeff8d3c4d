"""Model cards: one JSON format for every trained model, from the CLI or a shipped recipe.

A card says what was trained on what, how well and how fast, and the command that redoes it::

    {"name", "task", "dataset", "split": {"train", "val", "rule"}, "model", "train", "parameters",
     "epochs", "val_metrics", "history", "train_seconds", "images_per_s", "peak_memory_mib",
     "device", "date", "command", "eaviz_version", "torch_version"}
"""

from __future__ import annotations

import datetime
import json
import os
import resource
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from eaviz import __version__
from eaviz._io import atomic_write_text, read_json
from eaviz.data.dataset import ImageDataset
from eaviz.profile import describe_device

SPLIT_RULE = "see eaviz.data: held-out part of the training set"


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory of this process so far: allocated GPU memory, or the CPU's resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_card(
    *,
    name: str,
    model: nn.Module,
    train_set: ImageDataset,
    val_set: ImageDataset | None,
    train_config,
    history,
    seconds: float,
    device: torch.device | str,
    command: str,
    **extra,
) -> dict:
    """The card of a finished run: ``history`` is :class:`eaviz.train.History`, ``seconds`` its wall time.

    ``extra``: what a recipe adds to the standard fields or says better (e.g. ``val_metrics``
    with derived numbers, ``split`` with the evaluation list, ``backbone``, ``loss``).
    """
    device = torch.device(device)
    rows = history.epochs
    card = {
        "name": name,
        "task": train_set.task,
        "dataset": train_set.name,
        "split": {
            "train": len(train_set),
            "val": len(val_set) if val_set is not None else 0,
            "rule": train_set.info.get("split_rule", SPLIT_RULE),
        },
        "model": model.config.to_dict(),
        "train": asdict(train_config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": len(rows),
        "val_metrics": history.last.get("val_metrics", {}),
        "history": [{k: v for k, v in row.items() if k != "val_metrics"} for row in rows],
        "train_seconds": round(seconds, 1),
        "images_per_s": round(sum(r["images_per_s"] for r in rows) / len(rows), 1) if rows else 0.0,
        "peak_memory_mib": round(peak_memory_mib(device), 1),
        "device": describe_device(device),
        "date": datetime.date.today().isoformat(),
        "command": command,
        "eaviz_version": __version__,
        "torch_version": torch.__version__,
    }
    return card | extra


def write_card(card: dict, path: str | os.PathLike) -> Path:
    """Write ``card`` as indented JSON, atomically (the folder is created if needed)."""
    return atomic_write_text(json.dumps(card, indent=2) + "\n", path)


def read_card(path: str | os.PathLike) -> dict:
    """A card from its JSON file; a broken file raises ValueError naming it."""
    return read_json(path)
