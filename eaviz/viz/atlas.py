"""A memory atlas: for every memory unit, the dataset images that excite it most.

External attention's memories are shared by the whole dataset, so each unit can be read
like a feature detector: run the data through once and keep, per unit, the images where it
fires hardest.

Score of unit ``s`` on an image: its **peak attention weight after the layer's
normalisation**, ``max_n A[n, s]``. With double normalisation every token's weights sum to
1 over the S units, so the score is comparable across images: 1 means some token of the
image gives all of its attention to unit ``s``. The argmax position is kept as the region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch import nn

from eaviz._checks import check_positive_int
from eaviz.data.dataset import ImageDataset
from eaviz.viz.maps import check_layer, check_units
from eaviz.viz.overlay import overlay
from eaviz.viz.plots import PANEL_INCHES, hide_ticks, mark_cell
from eaviz.viz.record import attention_batches, reduce_heads

SCORE = "peak attention weight max_n A[n, s] after the layer's normalisation"


@dataclass
class MemoryAtlas:
    """Top images per memory unit of one layer, best first.

    indices: (S, k) dataset indices; scores: (S, k) peak weights; positions: (S, k, 2) the
    (row, col) token of the peak on the ``grid = (h, w)`` token grid. ``k = min(top_k, n)``.
    """

    layer: str
    indices: torch.Tensor
    scores: torch.Tensor
    positions: torch.Tensor
    grid: tuple[int, int]
    score: str = SCORE

    @property
    def memory_units(self) -> int:
        return self.indices.shape[0]

    @property
    def top_k(self) -> int:
        return self.indices.shape[1]

    def top(self, unit: int) -> list[tuple[int, float, tuple[int, int]]]:
        """``[(dataset index, score, (row, col)), ...]`` for ``unit``, best first."""
        (unit,) = check_units(unit, self.memory_units, self.layer)
        return [
            (int(i), float(v), (int(p[0]), int(p[1])))
            for i, v, p in zip(self.indices[unit], self.scores[unit], self.positions[unit])
        ]


Top = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def merge_top_k(best: Top | None, new: Top, k: int) -> Top:
    """Keep the ``k`` highest scores per unit of (scores (S, m), indices (S, m), positions (S, m, 2))."""
    scores, indices, positions = new if best is None else (torch.cat(pair, dim=1) for pair in zip(best, new))
    top = scores.topk(min(k, scores.shape[1]), dim=1)
    return top.values, indices.gather(1, top.indices), positions.gather(1, top.indices[..., None].expand(-1, -1, 2))


def build_memory_atlas(
    model: nn.Module,
    dataset: ImageDataset,
    layer: str | None = None,
    *,
    top_k: int = 8,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    head: int | None = None,
    progress: bool = True,
) -> MemoryAtlas:
    """One pass over ``dataset`` keeping the ``top_k`` images per memory unit of ``layer``.

    ``layer``: an external-attention layer (default: the deepest). Multi-head maps are
    averaged over heads unless ``head`` picks one. Memory stays O(S * top_k): each batch's
    scores are merged into the running top-k with ``torch.topk``.
    """
    check_positive_int(top_k, "top_k")
    check_positive_int(batch_size, "batch_size")
    layer = check_layer(model, layer, "external")
    best: Top | None = None
    batches = attention_batches(
        model, dataset, layer, batch_size=batch_size, device=device, progress=progress, desc="atlas"
    )
    for batch in batches:
        attn = reduce_heads(batch.attn, head).float().cpu()  # (B, N, S)
        grid = batch.grid
        peak, where = attn.max(dim=1)  # (B, S)
        positions = torch.stack((where // grid[1], where % grid[1]), dim=-1)  # (B, S, 2)
        new = (peak.t(), batch.index[None].expand(peak.shape[1], -1), positions.transpose(0, 1))
        best = merge_top_k(best, new, top_k)
    scores, indices, positions = best
    return MemoryAtlas(layer, indices, scores, positions, grid)


def _default_units(atlas: MemoryAtlas, count: int = 8) -> list[int]:
    """The ``count`` units with the highest top-1 scores: the most decided detectors."""
    order = atlas.scores[:, 0].argsort(descending=True)
    return order[:count].tolist()


def plot_memory_atlas(
    atlas: MemoryAtlas,
    dataset: ImageDataset,
    units: int | Sequence[int] | None = None,
    *,
    top: int | None = None,
    show_scores: bool = True,
) -> Figure:
    """Rows: memory units; columns: their top images, best first, peak token outlined.

    ``units`` default: the 8 units with the highest top-1 scores. ``top`` limits the
    columns (default: all ``atlas.top_k``). Titles give the class (for classification
    sets) and the score.
    """
    units = _default_units(atlas) if units is None else check_units(units, atlas.memory_units, atlas.layer)
    top = atlas.top_k if top is None else min(check_positive_int(top, "top"), atlas.top_k)
    if int(atlas.indices.max()) >= len(dataset):
        raise ValueError(
            f"the atlas refers to image {int(atlas.indices.max())} but the dataset has {len(dataset)}; "
            "pass the dataset the atlas was built from"
        )
    size = tuple(dataset.images.shape[-2:])
    figsize = (PANEL_INCHES * 0.8 * top + 0.6, PANEL_INCHES * len(units) + 0.4)  # room for 2-line titles
    fig = Figure(figsize=figsize, layout="constrained")
    named = dataset.task == "classification" and bool(dataset.classes)
    axes = fig.subplots(len(units), top, squeeze=False)
    for row, unit in enumerate(units):
        for col, (index, score, cell) in enumerate(atlas.top(unit)[:top]):
            ax = axes[row, col]
            image, target = dataset[index]
            overlay(image, ax=ax)
            mark_cell(ax, cell, atlas.grid, size)
            hide_ticks(ax)
            label = dataset.classes[int(target)] if named else f"#{index}"
            ax.set_title(f"{label}\n{score:.2f}" if show_scores else label, fontsize=9)
        axes[row, 0].set_ylabel(f"unit {unit}", fontsize=9)
    fig.suptitle(f"top images per memory unit of {atlas.layer}", fontsize=10)
    return fig
