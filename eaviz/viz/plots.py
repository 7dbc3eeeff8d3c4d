"""Figures of attention maps laid over their images: rows are images, columns are maps.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so a notebook
shows it once (as the cell's value, or with ``display(fig)``) and loops leave no open
figures behind.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from eaviz._checks import check_choice
from eaviz.viz.maps import check_image_batch, check_query
from eaviz.viz.overlay import image_to_numpy, overlay  # noqa: F401 - image_to_numpy: notebooks import it here

SCALES = ("per_map", "shared")
PANEL_INCHES = 1.6
TEXT_POINTS = 10  # titles, row labels and colour bar: readable once a wide grid is shrunk to the page


def hide_ticks(ax: Axes) -> None:
    """No ticks or tick labels on an image panel; axis labels stay usable."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def mark_cell(
    ax: Axes, cell: tuple[int, int], grid: tuple[int, int], size: tuple[int, int], color: str = "cyan"
) -> None:
    """Outline the image patch of token ``cell = (row, col)`` on a ``grid = (h, w)`` token grid."""
    (row, col), (h, w), (height, width) = cell, grid, size
    cell_h, cell_w = height / h, width / w
    corner = (col * cell_w - 0.5, row * cell_h - 0.5)  # pixel centres sit on integers
    ax.add_patch(Rectangle(corner, cell_w, cell_h, fill=False, edgecolor=color, linewidth=1.5))


def _check_maps(maps: torch.Tensor, images: torch.Tensor, name: str, ndim: int) -> torch.Tensor:
    """maps must be (B, H, W) (ndim=3) or (B, K, H, W) (ndim=4) matching the images."""
    b, _, h, w = images.shape
    expected = f"(B={b}, H={h}, W={w})" if ndim == 3 else f"(B={b}, K, H={h}, W={w})"
    matches = isinstance(maps, torch.Tensor) and maps.ndim == ndim and maps.shape[0] == b
    if not matches or tuple(maps.shape[-2:]) != (h, w):
        given = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"expected {name} of shape {expected} to match the images, got {given}")
    return maps.detach().float().cpu()


def _map_grid(
    images: torch.Tensor,
    columns: list[tuple[str, torch.Tensor]],
    *,
    cmap: str,
    alpha: float,
    scale: str,
    row_labels: Sequence[str] | None,
    marker: tuple[tuple[int, int], tuple[int, int]] | None = None,
    marked_columns: Sequence[int] = (),
    title: str | None = None,
) -> Figure:
    """Rows: images. Column 0: the image; column j > 0: ``columns[j - 1]`` maps (B, H, W) overlaid.

    ``marker = (cell, grid)`` outlines one token's patch in the image column and in the
    columns listed in ``marked_columns`` (1-based, like the figure's columns).
    """
    check_choice(scale, SCALES, "scale")
    b = images.shape[0]
    if row_labels is not None and len(row_labels) != b:
        raise ValueError(f"expected {b} row_labels (one per image), got {len(row_labels)}")
    size = tuple(images.shape[-2:])
    n_cols = len(columns) + 1
    colorbar_inches = 0.8 if scale == "shared" else 0.0
    fig = Figure(figsize=(PANEL_INCHES * n_cols + colorbar_inches, PANEL_INCHES * b + 0.4), layout="constrained")
    axes = fig.subplots(b, n_cols, squeeze=False)
    vmax = max(float(maps.max()) for _, maps in columns) if scale == "shared" else None
    low = 0.0 if vmax is not None else None
    for i in range(b):
        for j, ax in enumerate(axes[i]):
            heat = columns[j - 1][1][i] if j > 0 else None
            overlay(images[i], heat, cmap=cmap, alpha=alpha, vmin=low, vmax=vmax, ax=ax)
            hide_ticks(ax)
            if marker is not None and (j == 0 or j in marked_columns):
                mark_cell(ax, marker[0], marker[1], size)
            if i == 0:
                ax.set_title("image" if j == 0 else columns[j - 1][0], fontsize=TEXT_POINTS)
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=TEXT_POINTS)
    if vmax is not None:
        colors = ScalarMappable(Normalize(0.0, max(vmax, 1e-12)), cmap)
        bar = fig.colorbar(colors, ax=axes, shrink=0.8)
        bar.set_label("attention weight", fontsize=TEXT_POINTS)
        bar.ax.tick_params(labelsize=TEXT_POINTS)
    if title:
        fig.suptitle(title, fontsize=TEXT_POINTS + 1)
    return fig


def plot_memory_maps(
    images: torch.Tensor,
    maps: torch.Tensor,
    units: Sequence[int],
    *,
    cmap: str = "inferno",
    alpha: float = 0.6,
    scale: str = "per_map",
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Memory-unit maps over their images: rows are images, columns the image then each unit.

    images: (B, 3, H, W) in [0, 1]; maps: (B, K, H, W) from :func:`memory_unit_maps` with
    ``units`` (K ints) naming the columns. ``scale="per_map"`` stretches every map to its
    own range (shape of each map); ``"shared"`` puts all on one scale from 0 with a
    colorbar (which unit is strongest). ``titles`` replaces the "unit k" column titles.
    """
    images = check_image_batch(images)
    maps = _check_maps(maps, images, "maps", ndim=4)
    units = list(units)
    if len(units) != maps.shape[1]:
        raise ValueError(f"expected one unit per map: maps has K={maps.shape[1]}, got {len(units)} units")
    titles = list(titles) if titles is not None else [f"unit {unit}" for unit in units]
    if len(titles) != len(units):
        raise ValueError(f"expected {len(units)} titles (one per unit), got {len(titles)}")
    columns = [(name, maps[:, k]) for k, name in enumerate(titles)]
    return _map_grid(images, columns, cmap=cmap, alpha=alpha, scale=scale, row_labels=row_labels, title=title)


def plot_self_attention(
    images: torch.Tensor,
    maps: torch.Tensor,
    query: tuple[int, int],
    grid: int | tuple[int, int],
    *,
    cmap: str = "inferno",
    alpha: float = 0.6,
    scale: str = "per_map",
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Where one query position looks: rows are images; the query's patch is outlined.

    images: (B, 3, H, W) in [0, 1]; maps: (B, H, W) from :func:`self_attention_maps` for
    ``query = (row, col)`` on a token grid of ``grid`` (int or (h, w); 8 for CIFAR).
    """
    images = check_image_batch(images)
    maps = _check_maps(maps, images, "maps", ndim=3)
    grid = (grid, grid) if isinstance(grid, int) else tuple(grid)
    query = check_query(query, grid)
    columns = [(f"query {query}", maps)]
    return _map_grid(
        images,
        columns,
        cmap=cmap,
        alpha=alpha,
        scale=scale,
        row_labels=row_labels,
        marker=(query, grid),
        marked_columns=(1,),
        title=title,
    )


def plot_side_by_side(
    images: torch.Tensor,
    self_maps: torch.Tensor,
    memory_maps: torch.Tensor,
    *,
    query: tuple[int, int],
    grid: int | tuple[int, int],
    units: Sequence[int],
    cmap: str = "inferno",
    alpha: float = 0.6,
    labels: tuple[str, str] = ("self-attention", "external attention"),
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Self-attention next to external attention on the same images.

    self_maps: (B, H, W), one query's map from a self-attention model; memory_maps:
    (B, K, H, W), K memory units of an external-attention model. Every map is stretched to
    its own range: the two kinds of weights live on different scales (a query's weights sum
    to 1 over positions; a token's weights sum to 1 over units).
    """
    images = check_image_batch(images)
    self_maps = _check_maps(self_maps, images, "self_maps", ndim=3)
    memory_maps = _check_maps(memory_maps, images, "memory_maps", ndim=4)
    units = list(units)
    if len(units) != memory_maps.shape[1]:
        raise ValueError(f"expected one unit per memory map: K={memory_maps.shape[1]}, got {len(units)} units")
    grid = (grid, grid) if isinstance(grid, int) else tuple(grid)
    query = check_query(query, grid)
    columns = [(f"{labels[0]}\nquery {query}", self_maps)]
    columns += [(f"{labels[1]}\nunit {unit}", memory_maps[:, k]) for k, unit in enumerate(units)]
    return _map_grid(
        images,
        columns,
        cmap=cmap,
        alpha=alpha,
        scale="per_map",
        row_labels=row_labels,
        marker=(query, grid),
        marked_columns=(1,),
        title=title,
    )
