"""Static explorers for the website: one precomputed JPEG frame per memory unit or query position.

Python callbacks do nothing on a static page, so a slider is linked in the browser
(``jslink``) to a ``Stack`` of images; saved with the notebook's widget state, it stays
interactive with no kernel. :func:`static_memory_explorer` puts one such slider per mixer
layer in a second ``Stack`` behind a layer menu, so every memory unit of the model is one
click and one drag away; :func:`page_weight` says how much it adds to the page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import torch
from ipywidgets.embed import dependency_state
from torch import nn

from eaviz._checks import check_positive_int
from eaviz.viz.maps import check_image_batch, check_layer, check_query, check_units, query_map, unit_maps
from eaviz.viz.record import capture_attention, layer_kind, mixer_names, reduce_heads
from eaviz.widgets.frames import check_cmap, colourbar_png, draw_panel, jpeg, outline, strip

MENU_EXTRA_CH = 16  # a dropdown's width beyond its longest option: the description and the arrow


class StaticExplorer(widgets.VBox):
    """A slider that flips through precomputed JPEG frames in the browser, with no kernel.

    ``slider`` (IntSlider) is ``jslink``-ed (``link``) to ``stack.selected_index``; every
    child of ``stack`` is an ``ipywidgets.Image`` holding one of ``frames`` (JPEG bytes).
    Saved with the notebook's widget state, it stays interactive on the static website.
    """

    def __init__(
        self, frames: list[bytes], *, description: str, caption: str, side: widgets.Widget | None = None
    ) -> None:
        super().__init__()
        self.frames = frames
        self.stack = widgets.Stack([widgets.Image(value=frame, format="jpeg") for frame in frames], selected_index=0)
        self.slider = widgets.IntSlider(value=0, min=0, max=len(frames) - 1, description=description)
        self.link = widgets.jslink((self.slider, "value"), (self.stack, "selected_index"))
        shown = self.stack if side is None else widgets.HBox([self.stack, side])
        self.children = [widgets.HBox([self.slider, widgets.Label(caption)]), shown]


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
    (the deepest external-attention layer by default). Each frame is a JPEG about
    ``panel`` pixels high, captioned with its unit, of roughly 3-12 KB: 64 units of 6
    images weigh about half a MB in the notebook, so pass a subset for a lighter page.
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
        frames.append(jpeg(strip(panels, f"unit {unit} of {layer}")))
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
        frames.append(jpeg(strip(panels, f"query (row {query[0]}, col {query[1]}) of {layer}")))
    caption = f"{len(queries)} query positions of {layer}, row by row: drag to flip"
    return StaticExplorer(frames, description="frame", caption=caption)


class MemoryExplorer(widgets.VBox):
    """A layer menu over one :class:`StaticExplorer` per mixer layer, all linked in the browser.

    ``menu`` (Dropdown) has its ``index`` ``jslink``-ed (``link``) to ``layers.selected_index``;
    ``explorers[layer]`` is that layer's unit slider and frames (slider value = unit index), with
    its colour bar beside them. ``scales[layer] = (vmin, vmax)`` is the colour scale shared by all
    units of the layer.
    """

    def __init__(
        self, explorers: dict[str, StaticExplorer], scales: dict[str, tuple[float, float]], titles: list[str]
    ) -> None:
        super().__init__()
        self.explorers = explorers
        self.scales = scales
        options = [(title, k) for k, title in enumerate(titles)]
        width = f"{max(map(len, titles), default=0) + MENU_EXTRA_CH}ch"  # the longest title, whole
        self.menu = widgets.Dropdown(options=options, value=0, description="layer", layout=widgets.Layout(width=width))
        self.layers = widgets.Stack(list(explorers.values()), selected_index=0)
        self.link = widgets.jslink((self.menu, "index"), (self.layers, "selected_index"))
        self.children = [self.menu, self.layers]


def _panel_labels(
    labels: Sequence[int] | torch.Tensor | None, classes: Sequence[str] | None, output: torch.Tensor, batch: int
) -> list[str] | None:
    """One line per image: its class name, and the model's prediction when it differs."""
    if labels is None:
        return None
    labels = torch.as_tensor(labels).long().cpu()
    if labels.shape != (batch,):
        raise ValueError(f"expected labels to hold one class per image, ({batch},), got {tuple(labels.shape)}")
    if classes is None:
        return [str(int(label)) for label in labels]
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(f"expected labels in [0, {len(classes)}) to index classes, got {labels.tolist()}")
    names = [classes[int(label)] for label in labels]
    if output.ndim == 2 and tuple(output.shape) == (batch, len(classes)):
        predicted = output.argmax(dim=-1).cpu()
        names = [name if p == t else f"{name}, pred {classes[int(p)]}" for name, p, t in zip(names, predicted, labels)]
    return names


def static_memory_explorer(
    model: nn.Module,
    images: torch.Tensor,
    labels: Sequence[int] | torch.Tensor | None = None,
    classes: Sequence[str] | None = None,
    *,
    layers: Iterable[str] | None = None,
    head: int | None = None,
    cmap: str = "inferno",
    alpha: float = 0.6,
    panel: int = 128,
    clip: float = 0.99,
) -> MemoryExplorer:
    """Every memory unit of every external-attention layer, browsable on the static website.

    images: (B, 3, H, W) in [0, 1], a handful (4-6); labels: (B,) class indices written under
    each image (with ``classes``, as names; for a classifier a wrong prediction is added as
    "cat, pred dog"). ``layers``: default all layers of kind "external" in ``mixer_names(model)``,
    found by the class's declared kind, so any model with such mixers works. Multi-head maps
    are averaged over heads unless ``head`` picks one.

    One frame per unit, ``panel`` pixels high per image. All units of a layer share one colour
    scale, from 0 to the ``clip`` quantile of the layer's weights (so one hot spot does not wash
    out the rest), shown by a colour bar; compare units within a layer, not across layers.
    Frames are JPEGs: :func:`page_weight` tells what the explorer adds to the page.
    """
    images = check_image_batch(images)
    check_cmap(cmap)
    check_positive_int(panel, "panel")
    if not 0 < clip <= 1:
        raise ValueError(f"expected clip to be a quantile in (0, 1], got {clip}")
    names = [name for name in mixer_names(model) if layer_kind(model, name) == "external"]
    chosen = [check_layer(model, name, "external") for name in layers] if layers is not None else names
    if not chosen:
        raise ValueError(f"{type(model).__name__} has no external-attention layer; its mixers are {mixer_names(model)}")
    record, output = capture_attention(model, images, chosen)
    texts = _panel_labels(labels, classes, output, len(images))
    explorers, scales, titles = {}, {}, []
    for layer in chosen:
        attn = reduce_heads(record[layer], head).float().cpu()  # (B, N, S)
        grid = record.grids[layer]
        if grid is None:
            raise ValueError(f"layer {layer!r} saw a token count that is not a grid; cannot draw its maps")
        values = attn.flatten()
        vmax = float(values.kthvalue(max(1, round(clip * values.numel()))).values)
        scales[layer] = (0.0, vmax)
        units = attn.shape[-1]
        maps = unit_maps(attn, grid, list(range(units)), tuple(images.shape[-2:]))  # (B, S, H, W)
        frames = []
        for unit in range(units):
            panels = [
                draw_panel(images[i], maps[i, unit], height=panel, cmap=cmap, alpha=alpha, vmin=0.0, vmax=vmax)
                for i in range(len(images))
            ]
            frames.append(jpeg(strip(panels, f"unit {unit} of {layer}", labels=texts)))
        bar = widgets.Image(value=colourbar_png(cmap, 0.0, vmax, height=panel, label="attention weight"), format="png")
        caption = f"{units} memory units, {grid[0]}x{grid[1]} positions: drag to flip"
        explorers[layer] = StaticExplorer(frames, description="unit", caption=caption, side=bar)
        titles.append(f"{layer} ({units} units, {grid[0]}x{grid[1]})")
    return MemoryExplorer(explorers, scales, titles)


@dataclass(frozen=True)
class PageWeight:
    """What a static widget adds to a page: ``images`` images of ``image_bytes`` in all, and
    ``state_bytes``, the JSON widget state that the notebook stores (images base64-encoded)."""

    images: int
    image_bytes: int
    state_bytes: int

    def __str__(self) -> str:
        return (
            f"{self.images} images, {self.image_bytes / 1e6:.2f} MB; "
            f"{self.state_bytes / 1e6:.2f} MB of widget state in the page"
        )


def _images(widget: widgets.Widget) -> Iterable[widgets.Image]:
    """Every Image inside ``widget``, depth first."""
    if isinstance(widget, widgets.Image):
        yield widget
    for child in getattr(widget, "children", ()):
        yield from _images(child)


def page_weight(widget: widgets.Widget) -> PageWeight:
    """The size of ``widget`` as saved in the notebook: every widget it refers to, and their links."""
    if not isinstance(widget, widgets.Widget):
        raise TypeError(f"expected an ipywidgets widget, got {type(widget).__name__}")
    state = dependency_state([widget])
    pictures = list(_images(widget))
    return PageWeight(
        images=len(pictures),
        image_bytes=sum(len(w.value) for w in pictures),
        state_bytes=len(json.dumps(state)),
    )
