"""Specs for the segmentation figures: VOC-coloured overlays, confusion matrix, per-class IoU over seeds."""

import numpy as np
import pytest
import torch
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from eaviz.viz.segmentation import (
    plot_class_iou,
    plot_confusion_matrix,
    plot_segmentations,
    rare_classes,
    voc_palette,
)

CLASSES = ["background", "aeroplane", "bicycle", "bird"]


def bar_containers(ax) -> list[BarContainer]:
    return [c for c in ax.containers if isinstance(c, BarContainer)]


def test_voc_palette_matches_the_development_kit():
    palette = voc_palette()
    assert palette.shape == (256, 3)
    assert palette[1].tolist() == [128, 0, 0] and palette[15].tolist() == [192, 128, 128]
    assert palette[20].tolist() == [0, 64, 128] and palette[255].tolist() == [224, 224, 192]


def test_overlays_have_a_column_per_model_and_a_legend_of_the_classes_shown():
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    targets = torch.zeros(2, 8, 8, dtype=torch.long)
    targets[:, 2:6, 2:6] = 3
    targets[0, 0, 0] = 255
    fig = plot_segmentations(images, targets, {"external": targets.clone(), "none": torch.ones_like(targets)}, CLASSES)
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 4
    assert [ax.get_title() for ax in fig.axes[:4]] == ["image", "ground truth", "external", "none"]
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend == ["background", "aeroplane", "bird", "void"]


def test_label_colours_in_the_overlay_are_the_palette_colours():
    images = torch.zeros(1, 3, 4, 4)
    targets = torch.full((1, 4, 4), 2)
    fig = plot_segmentations(images, targets, {}, CLASSES, alpha=1.0)
    label_layer = fig.axes[1].get_images()[1]
    rgba = label_layer.to_rgba(label_layer.get_array())
    assert (np.round(rgba[0, 0, :3] * 255) == voc_palette()[2]).all()


def test_predictions_of_the_wrong_shape_are_rejected():
    with pytest.raises(ValueError, match=r"predictions\['m'\] as integer labels of shape \(1, 4, 4\)"):
        targets = torch.zeros(1, 4, 4, dtype=torch.long)
        plot_segmentations(torch.zeros(1, 3, 4, 4), targets, {"m": torch.zeros(1, 4)}, CLASSES)


def test_confusion_matrix_rows_are_normalised_and_absent_classes_masked():
    counts = torch.tensor([[8, 2, 0, 0], [1, 3, 0, 0], [0, 0, 0, 0], [0, 0, 5, 5]])
    fig = plot_confusion_matrix(counts, CLASSES)
    shown = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(shown[0].data, [0.8, 0.2, 0, 0])
    assert shown.mask[2].all() and not shown.mask[3].any()
    assert len(fig.axes) == 2  # the matrix and its colour bar
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == CLASSES


def test_class_iou_bars_show_the_mean_and_sd_over_seeds():
    iou = {"external": torch.tensor([[0.9, 0.2, 0.5, 0.1], [0.7, 0.4, 0.5, float("nan")]]), "none": torch.rand(3, 4)}
    fig = plot_class_iou(iou, CLASSES, rare=[1])
    ax = fig.axes[0]
    bars = bar_containers(ax)[0]
    np.testing.assert_allclose([b.get_height() for b in bars], [0.8, 0.3, 0.5, 0.1])
    sd = bars.errorbar.lines[2][0].get_segments()
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in sd], [2 * 0.1414214, 2 * 0.1414214, 0, 0], atol=1e-6)


def test_class_iou_bars_of_the_models_share_each_class_slot():
    fig = plot_class_iou({"a": torch.rand(2, 4), "b": torch.rand(2, 4)}, CLASSES)
    widths = [bar.get_width() for bars in bar_containers(fig.axes[0]) for bar in bars]
    assert widths == pytest.approx([0.4] * 8)


def test_barely_seen_classes_are_hatched_and_named_in_the_legend():
    fig = plot_class_iou({"external": torch.rand(2, 4)}, CLASSES, rare=[1, 2])
    bars = bar_containers(fig.axes[0])[0]
    assert [b.get_hatch() for b in bars] == [None, "//", "//", None]
    assert "barely seen in training" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_rare_classes_are_those_under_the_pixel_fraction():
    assert rare_classes([900, 5, 80, 15], fraction=0.01) == [1]
    with pytest.raises(ValueError, match="pixels_per_class"):
        rare_classes([0, 0])
