"""Figures of explanations: maps next to their images, and faithfulness curves."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from eaviz._checks import check_images
from eaviz.explain.faithfulness import MODES, Curve, mode_title
from eaviz.viz.overlay import overlay


def _as_maps(maps: object, name: str) -> torch.Tensor:
    """A (B, h, w) float tensor from a tensor or array."""
    if not isinstance(maps, torch.Tensor):
        try:
            maps = torch.as_tensor(maps)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"expected {name} to be a tensor or array of shape (B, h, w), got {type(maps).__name__}"
            ) from None
    maps = maps.detach()
    if not maps.is_floating_point():
        maps = maps.float()
    if maps.ndim != 3:
        raise ValueError(f"expected {name} of shape (B, h, w), got {tuple(maps.shape)}")
    return maps


def plot_explanations(
    images: torch.Tensor,
    columns: Mapping[str, torch.Tensor],
    *,
    cmap: str = "inferno",
    alpha: float = 0.6,
    colorbar: bool = True,
    panel: float = 1.8,
) -> Figure:
    """Images in the first column, then one overlaid column per named map set.

    images: (B, 3, H, W) in [0, 1]; columns: {title: (B, h, w)} tensors or arrays, e.g.
    ``{"EA unit 7": ea_maps[:, 0], "SA": sa_maps, **attribute(model, images)}``. Maps may
    be coarser than the image (an 8 x 8 token map) and are stretched over it, on a grey copy
    of the image. Each map is min-max scaled per image, so colours compare *where* a map is
    high, not how high; ``colorbar`` adds a bar that says so (from "its lowest" to "its highest").
    ``panel``: the side of one panel in inches; keep ``panel * (1 + len(columns))`` within the
    page's 8.5 in, so that the 11-point titles stay that size on the page.
    """
    images = check_images(images).detach().cpu()
    columns = {title: _as_maps(maps, f"columns[{title!r}]").cpu() for title, maps in columns.items()}
    for title, maps in columns.items():
        if maps.shape[0] != images.shape[0]:
            raise ValueError(
                f"expected columns[{title!r}] to hold one map per image, (B={images.shape[0]}, h, w), "
                f"got {tuple(maps.shape)}"
            )
    rows, cols = images.shape[0], 1 + len(columns)
    fig = Figure(figsize=(panel * cols, panel * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i in range(rows):
        overlay(images[i], ax=axes[i, 0])
        for j, maps in enumerate(columns.values(), start=1):
            overlay(images[i], maps[i], cmap=cmap, alpha=alpha, gray=True, ax=axes[i, j])
    for j, title in enumerate(["image", *columns]):
        axes[0, j].set_title(title, fontsize=11)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if colorbar:
        bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=axes, shrink=0.6, aspect=30, ticks=[0, 1])
        bar.ax.set_yticklabels(["its lowest", "its highest"], fontsize=10)
        bar.set_label("each map on its own range", fontsize=10)
    return fig


LINE_STYLES = ("-", "--", ":", "-.")


def plot_faithfulness(
    curves: Mapping[str, Curve | Mapping[str, Curve]], *, scored: str = "the predicted class"
) -> Figure:
    """One panel per mode, stacked, the batch-mean curve of every method, its mean AUC in the legend.

    curves: the output of :func:`faithfulness_curves`, or {method: Curve}. Each method keeps
    its colour and line style in both panels; the legends sit beside the panels, off the curves.
    scored: the class whose probability the curves follow, for the y label (the curves'
    default target is the prediction on the intact images).
    """
    panels: dict[str, list[tuple[str, Curve]]] = {}
    for name, value in curves.items():
        for curve in [value] if isinstance(value, Curve) else value.values():
            if not isinstance(curve, Curve):
                raise TypeError(
                    f"expected curves[{name!r}] to be a Curve or a dict of Curves, got {type(curve).__name__}"
                )
            panels.setdefault(curve.mode, []).append((name, curve))
    if not panels:
        raise ValueError("expected at least one curve, got none")
    modes = [m for m in MODES if m in panels]
    methods = list(dict.fromkeys(name for mode in modes for name, _ in panels[mode]))
    styles = {
        name: {"color": f"C{k % 10}", "linestyle": LINE_STYLES[k % len(LINE_STYLES)]} for k, name in enumerate(methods)
    }
    fig = Figure(figsize=(8.0, 3.2 * len(modes)), layout="constrained")
    axes = fig.subplots(len(modes), 1, squeeze=False)
    for ax, mode in zip(axes[:, 0], modes):
        for name, curve in panels[mode]:
            ax.plot(
                curve.fractions.cpu(),
                curve.scores.mean(dim=0).cpu(),
                label=f"{name} (AUC {curve.auc.mean().item():.3f})",
                linewidth=1.8,
                **styles[name],
            )
        ax.set_title(mode_title(mode), fontsize=11)
        ax.set_xlabel(f"fraction of pixels {'removed' if mode == 'deletion' else 'inserted'}", fontsize=10)
        ax.set_ylabel(f"probability of {scored}", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.02, 0.5), handlelength=2.8, frameon=False)
    return fig
