"""The shipped checkpoints: each loads, carries a complete card, and its numbers are reproducible."""

import os

import pytest
import torch

from eaviz.data import load_dataset
from eaviz.pretrained import RECIPES, available, load_card, load_pretrained
from eaviz.train import evaluate

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


def test_unknown_name_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="cifar10-external"):
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
