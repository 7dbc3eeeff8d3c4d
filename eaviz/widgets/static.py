"""Static explorers for the website: one precomputed PNG frame per memory unit or query position.

Python callbacks do nothing on a static page, so a slider is linked in the browser
(``jslink``) to a ``Stack`` of images; saved with the notebook's widget state, it stays
interactive with no kernel.
"""

from __future__ import annotations

from collections.abc import Iterable

import ipywidgets as widgets
import torch
from torch import nn

from eaviz._checks import check_positive_int
from eaviz.viz.maps import check_image_batch, check_layer, check_query, check_units, query_map, unit_maps
from eaviz.viz.record import capture_attention, reduce_heads
from eaviz.widgets.frames import check_cmap, draw_panel, outline, png, strip


class StaticExplorer(widgets.VBox):
    """A slider that flips through precomputed PNG frames in the browser, with no kernel.

    ``slider`` (IntSlider) is ``jslink``-ed (``link``) to ``stack.selected_index``; every
    child of ``stack`` is an ``ipywidgets.Image`` holding one of ``frames`` (PNG bytes).
    Saved with the notebook's widget state, it stays interactive on the static website.
    """

    def __init__(self, frames: list[bytes], *, description: str, caption: str) -> None:
        super().__init__()
        self.frames = frames
        self.stack = widgets.Stack([widgets.Image(value=frame, format="png") for frame in frames], selected_index=0)
        self.slider = widgets.IntSlider(value=0, min=0, max=len(frames) - 1, description=description)
        self.link = widgets.jslink((self.slider, "value"), (self.stack, "selected_index"))
        self.children = [widgets.HBox([self.slider, widgets.Label(caption)]), self.stack]


def static_unit_explorer(
    model: nn.Module,
    images: torch.Tensor,
    layer: str | None = None,
    units: int | Iterable[int] | None = None,
    *,
    head: int | None = None,
    cmap: str = "inferno",
    alpha: float = 0.6,
    panel: int = 72,
) -> StaticExplorer:
    """One frame per memory unit: all ``images`` in a row with that unit's map over them.

    images: (B, 3, H, W) in [0, 1], a handful (4-8); ``units``: default all S of ``layer``
    (the deepest external-attention layer by default). Each frame is a PNG about
    ``panel`` pixels high, captioned with its unit, of roughly 5-20 KB: 64 units of 6
    images weigh about 1 MB in the notebook, so pass a subset for a lighter page.
    """
    images = check_image_batch(images)
    layer = check_layer(model, layer, "external")
    check_cmap(cmap)
    record, _ = capture_attention(model, images, [layer])
    attn = reduce_heads(record[layer], head).cpu()
    chosen = check_units(units, attn.shape[-1], layer)
    maps = unit_maps(attn, record.grids[layer], chosen, tuple(images.shape[-2:]))  # (B, K, H, W)
    frames = []
    for k, unit in enumerate(chosen):
        panels = [draw_panel(images[i], maps[i, k], height=panel, cmap=cmap, alpha=alpha) for i in range(len(images))]
        frames.append(png(strip(panels, f"unit {unit} of {layer}"), small=True))
    description = "unit" if chosen == list(range(len(chosen))) else "frame"
    caption = f"{len(chosen)} memory units of {layer}: drag to flip"
    return StaticExplorer(frames, description=description, caption=caption)


def static_query_explorer(
    model: nn.Module,
    images: torch.Tensor,
    layer: str | None = None,
    *,
    step: int = 1,
    head: int | None = None,
    cmap: str = "inferno",
    alpha: float = 0.6,
    panel: int = 72,
) -> StaticExplorer:
    """One frame per query position (row-major, every ``step``-th row and column).

    images: (B, 3, H, W) in [0, 1]; ``layer``: a self-attention layer (default: the
    deepest). Each frame shows the images with the query's patch outlined and its
    attention over them; an 8x8 grid gives 64 frames, ``step=2`` gives 16.
    """
    images = check_image_batch(images)
    check_positive_int(step, "step")
    layer = check_layer(model, layer, "self")
    check_cmap(cmap)
    record, _ = capture_attention(model, images, [layer])
    attn = reduce_heads(record[layer], head).cpu()
    grid = record.grids[layer]
    queries = [(r, c) for r in range(0, grid[0], step) for c in range(0, grid[1], step)]
    frames = []
    for query in queries:
        maps = query_map(attn, grid, check_query(query, grid), tuple(images.shape[-2:]))  # (B, H, W)
        panels = [
            outline(draw_panel(images[i], maps[i], height=panel, cmap=cmap, alpha=alpha), query, grid)
            for i in range(len(images))
        ]
        frames.append(png(strip(panels, f"query (row {query[0]}, col {query[1]}) of {layer}"), small=True))
    caption = f"{len(queries)} query positions of {layer}, row by row: drag to flip"
    return StaticExplorer(frames, description="frame", caption=caption)
