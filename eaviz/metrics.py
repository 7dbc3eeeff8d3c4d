"""Metrics: top-1 accuracy and the segmentation confusion matrix (pixel accuracy, IoU, mIoU)."""

from __future__ import annotations

import torch

from eaviz.data.dataset import VOID


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """logits: (B, C), targets: (B,) -> fraction of correct top-1 predictions."""
    return (logits.argmax(dim=1) == targets).float().mean().item()


class ConfusionMatrix:
    """Accumulates a (C, C) matrix ``counts[true, predicted]`` over pixels, ignoring void (255).

    IoU of class c = TP / (TP + FP + FN); mIoU averages it over the classes present in the
    ground truth, because a class with no pixels has no defined IoU.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.long)

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        """predictions, targets: (B, H, W) int class ids; targets may hold 255 (void)."""
        if predictions.shape != targets.shape:
            raise ValueError(
                f"expected predictions and targets of the same shape, got {tuple(predictions.shape)} "
                f"and {tuple(targets.shape)}"
            )
        c = self.num_classes
        valid = targets != VOID
        if (valid & ((targets < 0) | (targets >= c))).any():
            raise ValueError(f"expected targets in 0..{c - 1} or {VOID}, got {targets[valid].unique().tolist()}")
        if ((predictions < 0) | (predictions >= c)).any():
            raise ValueError(f"expected predictions in 0..{c - 1}; does the model have num_classes={c}?")
        # Void pixels go to an extra bin that is dropped, so counting stays on the device.
        index = torch.where(valid, targets.long() * c + predictions.long(), c * c).flatten()
        self.counts += torch.bincount(index, minlength=c * c + 1)[:-1].view(c, c).cpu()

    @property
    def present(self) -> torch.Tensor:
        """(C,) bool: classes with at least one ground-truth pixel."""
        return self.counts.sum(dim=1) > 0

    def pixel_accuracy(self) -> float:
        """Fraction of non-void pixels whose predicted class is right."""
        total = self.counts.sum()
        return (self.counts.diag().sum() / total).item() if total else float("nan")

    def iou(self) -> torch.Tensor:
        """(C,) IoU per class; NaN for classes absent from both ground truth and predictions."""
        tp = self.counts.diag().double()
        union = self.counts.sum(dim=0) + self.counts.sum(dim=1) - self.counts.diag()
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))

    def miou(self) -> float:
        """Mean IoU over the classes present in the ground truth."""
        present = self.present
        return self.iou()[present].mean().item() if present.any() else float("nan")

    def summary(self, classes: list[str] | None = None) -> dict:
        """The numbers a card or a table needs, with class names where given."""
        names = classes or [str(c) for c in range(self.num_classes)]
        iou = self.iou()
        return {
            "pixel_accuracy": self.pixel_accuracy(),
            "miou": self.miou(),
            "iou": {names[c]: iou[c].item() for c in range(self.num_classes) if self.present[c]},
            "present_classes": [names[c] for c in range(self.num_classes) if self.present[c]],
        }
