"""Figures of segmentation results: label overlays, a confusion matrix, per-class IoU over models and seeds.

Label maps are coloured with the PASCAL VOC palette (:func:`voc_palette`; void, 255, in
cream) and laid over their photos by :func:`~eaviz.viz.overlay.overlay`, like every map in
the book. The numbers come from :class:`eaviz.metrics.ConfusionMatrix`: its ``counts`` for
:func:`plot_confusion_matrix`, its ``iou()`` per seed for :func:`plot_class_iou`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from eaviz._checks import check_images
from eaviz.data.dataset import VOID
from eaviz.viz.overlay import overlay
from eaviz.viz.page import PAGE_INCHES


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colours: (256, 3) uint8, row ``c`` for label ``c`` (255, void: cream).

    Class ``c``'s colour spreads the bits of ``c`` over red, green and blue, most significant
    bit first, as in the VOC development kit.
    """
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(256):
        c, colour = label, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                colour[channel] |= ((c >> channel) & 1) << shift
            c >>= 3
        palette[label] = colour
    palette[VOID] = (224, 224, 192)
    return palette


def label_colormap() -> ListedColormap:
    """The VOC palette as a colormap that maps label ``v`` to row ``v`` on the scale [-0.5, 255.5]."""
    return ListedColormap(voc_palette() / 255, name="voc")


def rare_classes(pixels_per_class: Sequence[int] | torch.Tensor, fraction: float = 0.01) -> list[int]:
    """Classes with less than ``fraction`` of the labelled pixels (e.g. ``dataset.info["pixels_per_class"]``)."""
    pixels = torch.as_tensor(pixels_per_class, dtype=torch.float64)
    if pixels.ndim != 1 or (pixels < 0).any() or pixels.sum() <= 0:
        raise ValueError(f"expected pixels_per_class as (C,) non-negative counts, got {pixels.tolist()}")
    return (pixels / pixels.sum() < fraction).nonzero().flatten().tolist()


def _labels(value: object, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    labels = torch.as_tensor(value).detach().cpu()
    if labels.is_floating_point() or tuple(labels.shape) != shape:
        raise ValueError(
            f"expected {name} as integer labels of shape {shape}, got {labels.dtype} {tuple(labels.shape)}"
        )
    return labels.long()


def plot_segmentations(
    images: torch.Tensor,
    targets: torch.Tensor,
    predictions: Mapping[str, torch.Tensor],
    classes: Sequence[str],
    *,
    alpha: float = 0.6,
    panel: float = 1.8,
) -> Figure:
    """One row per image: the photo, its ground truth, then each model's prediction, over the photo.

    images: (B, 3, H, W) in [0, 1]; targets: (B, H, W) labels (255 = void);
    predictions: {model name: (B, H, W) labels}. The legend names the colours of the classes
    that occur in the figure.
    """
    images = check_images(images).detach().cpu()
    batch, _, height, width = images.shape
    targets = _labels(targets, "targets", (batch, height, width))
    shape = (batch, height, width)
    predictions = {name: _labels(p, f"predictions[{name!r}]", shape) for name, p in predictions.items()}
    columns = {"ground truth": targets, **predictions}
    cmap, palette = label_colormap(), voc_palette()
    fig = Figure(figsize=(panel * (1 + len(columns)), panel * batch + 0.8), layout="constrained")
    axes = fig.subplots(batch, 1 + len(columns), squeeze=False)
    for i in range(batch):
        overlay(images[i], ax=axes[i, 0])
        for j, labels in enumerate(columns.values(), start=1):
            overlay(images[i], labels[i].float(), cmap=cmap, alpha=alpha, vmin=-0.5, vmax=255.5, ax=axes[i, j])
    for j, title in enumerate(["image", *columns]):
        axes[0, j].set_title(title, fontsize=11)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    seen = torch.cat([labels.flatten() for labels in columns.values()]).unique().tolist()
    names = {**dict(enumerate(classes)), VOID: "void"}
    # a dark edge sets the dark colours (cat, chair, background) apart in the legend
    handles = [
        Patch(facecolor=palette[c] / 255, edgecolor="0.3", label=names.get(c, str(c))) for c in seen
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize=11, frameon=False)
    return fig


def plot_confusion_matrix(
    counts: torch.Tensor, classes: Sequence[str], *, cmap: str = "Blues", title: str | None = None
) -> Figure:
    """Row-normalised confusion matrix: ``counts[true, predicted]`` (C, C) -> Figure.

    Row ``t`` shows where the pixels of class ``t`` went (it sums to 1; its diagonal cell is
    the class's recall). Classes with no pixels in the ground truth are greyed out.
    """
    counts = torch.as_tensor(counts).detach().cpu().double()
    if counts.ndim != 2 or counts.shape != (len(classes), len(classes)):
        size = len(classes)
        raise ValueError(f"expected counts of shape (C, C) = ({size}, {size}), got {tuple(counts.shape)}")
    totals = counts.sum(dim=1, keepdim=True)
    share = (counts / totals.where(totals > 0, torch.nan)).numpy()
    side = 1.5 + 0.28 * len(classes)  # 21 VOC classes: 7.4 in, within the page's 8.5 in with the bar
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.subplots()
    ax.set_facecolor("0.85")
    image = ax.imshow(np.ma.masked_invalid(share), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=90, fontsize=10)
    ax.set_yticks(ticks, classes, fontsize=10)
    ax.set_xlabel("predicted class", fontsize=11)
    ax.set_ylabel("true class", fontsize=11)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    bar.ax.tick_params(labelsize=10)
    bar.set_label("share of the true class's pixels", fontsize=11)
    ax.set_title(title or "confusion matrix (rows sum to 1; grey: class absent)", fontsize=11)
    return fig


def plot_class_iou(
    iou: Mapping[str, torch.Tensor],
    classes: Sequence[str],
    *,
    rare: Sequence[int] = (),
    title: str | None = None,
) -> Figure:
    """Per-class IoU of several models: bars at the mean over seeds, error bars of one sd.

    iou: {model name: (seeds, C)} IoU per seed and class (NaN where undefined, left out of the
    mean); rare: the classes barely seen in training (e.g. from :func:`rare_classes`), hatched
    on a grey band and named in the legend, so a reader does not read their zeros as a verdict.
    """
    tables = {}
    for name, values in iou.items():
        values = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
        values = values[None] if values.ndim == 1 else values
        if values.ndim != 2 or values.shape[1] != len(classes):
            raise ValueError(f"expected iou[{name!r}] of shape (seeds, C={len(classes)}), got {tuple(values.shape)}")
        tables[name] = values.numpy()
    if not tables:
        raise ValueError("expected IoU of at least one model, got none")
    rare = sorted(set(rare))
    if any(not 0 <= c < len(classes) for c in rare):
        raise ValueError(f"expected rare classes in [0, {len(classes)}), got {rare}")
    x = np.arange(len(classes))
    width = 0.8 / len(tables)
    # at most the page's width, so that the class names keep their size on the page
    inches = min(PAGE_INCHES, max(6.0, 0.45 * len(classes) * max(1, len(tables) / 2)))
    fig = Figure(figsize=(inches, 4.4), layout="constrained")
    ax = fig.subplots()
    for c in rare:
        ax.axvspan(c - 0.45, c + 0.45, color="0.9", zorder=0)
    for k, (name, values) in enumerate(tables.items()):
        seeds = np.isfinite(values).sum(axis=0)
        mean = np.where(seeds > 0, np.nansum(values, axis=0) / np.maximum(seeds, 1), np.nan)
        sd = np.array([np.std(col[np.isfinite(col)], ddof=1) if n > 1 else 0.0 for col, n in zip(values.T, seeds)])
        position = x - 0.4 + width * (k + 0.5)
        label = f"{name} ({values.shape[0]} seed{'s' if values.shape[0] > 1 else ''})"
        bars = ax.bar(position, np.nan_to_num(mean), width, yerr=sd, capsize=2, label=label, zorder=2)
        for c in rare:
            bars[c].set_hatch("//")
            bars[c].set_alpha(0.6)
    handles, _ = ax.get_legend_handles_labels()
    if rare:
        handles.append(Patch(facecolor="0.9", hatch="//", edgecolor="0.4", label="barely seen in training"))
    # above the bars, under the title: inside the axes it would cover them
    ax.legend(
        handles=handles, fontsize=10, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), frameon=False
    )
    ax.set_xticks(x, classes, rotation=90, fontsize=10)
    ax.set_xlim(-0.6, len(classes) - 0.4)
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU (mean ± sd over seeds)", fontsize=10)
    fig.suptitle(title or "IoU per class", fontsize=11)
    return fig
