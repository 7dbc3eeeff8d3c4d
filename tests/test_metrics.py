"""Accuracy and the segmentation confusion matrix against hand-computed numbers."""

import math

import pytest
import torch

from eaviz.metrics import ConfusionMatrix, accuracy


def test_accuracy_counts_top1_hits():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)


def test_miou_matches_a_hand_computed_example():
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 255]])
    prediction = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 2]])
    cm = ConfusionMatrix(3)
    cm.update(prediction[None], target[None])
    # class 0: TP 3, FP 1 (a 1 predicted 0), FN 1 (a 0 predicted 1) -> 3/5
    # class 1: TP 2, FP 1, FN 1 -> 2/4; class 2: absent from the ground truth (void pixel ignored)
    assert cm.iou()[0].item() == pytest.approx(3 / 5) and cm.iou()[1].item() == pytest.approx(1 / 2)
    assert math.isnan(cm.iou()[2].item())
    assert cm.miou() == pytest.approx((3 / 5 + 1 / 2) / 2)
    assert cm.pixel_accuracy() == pytest.approx(5 / 7)
    assert cm.summary(["bg", "cat", "dog"])["present_classes"] == ["bg", "cat"]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        ConfusionMatrix(2).update(torch.zeros(1, 2, 2), torch.zeros(1, 3, 3))


def test_labels_outside_the_classes_are_an_error_that_names_them():
    with pytest.raises(ValueError, match=r"0\.\.1 or 255, got \[0, 7\]"):
        ConfusionMatrix(2).update(torch.zeros(1, 1, 2, dtype=torch.long), torch.tensor([[[0, 7]]]))
    with pytest.raises(ValueError, match="num_classes=2"):
        ConfusionMatrix(2).update(torch.tensor([[[0, 5]]]), torch.zeros(1, 1, 2, dtype=torch.long))
