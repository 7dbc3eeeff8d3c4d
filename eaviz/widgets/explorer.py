"""The live attention explorer: pick an image, a layer and memory units (or a query) and see the maps."""

from __future__ import annotations

import hashlib
import io
import statistics
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import contextmanager

import ipywidgets as widgets
import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from eaviz._checks import check_choice, check_positive_int
from eaviz.data.dataset import ImageDataset
from eaviz.viz.atlas import MemoryAtlas
from eaviz.viz.maps import check_units, query_map, unit_maps
from eaviz.viz.record import AttentionRecord, capture_attention, layer_kind, mixer_names, reduce_heads
from eaviz.widgets.frames import CMAPS, check_cmap, draw_panel, outline, png, strip


class AttentionExplorer:
    """Pick an image, a layer and memory units (or a query position) and see the maps.

    ``model``: any eaviz model with attention layers; ``dataset``: the images to browse
    (an ``ImageDataset``); ``atlas``: a :class:`~eaviz.viz.atlas.MemoryAtlas` of one layer
    to show each unit's top images; ``units``: the units shown first (default: 0 to 3).
    Display ``explorer.widget`` (or the explorer itself).

    Forward passes are cached per image (LRU of ``cache_size``), so after the first look at
    an image every control only reslices the cached maps and renders a PNG.
    ``current_maps`` holds the displayed maps: (K, H, W) for K units, or (1, H, W) for a
    query position, at the image's resolution.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: ImageDataset,
        *,
        atlas: MemoryAtlas | None = None,
        layer: str | None = None,
        units: Sequence[int] | None = None,
        cmap: str = "inferno",
        alpha: float = 0.6,
        panel: int = 128,
        cache_size: int = 32,
    ) -> None:
        if not isinstance(dataset, ImageDataset):
            raise TypeError(f"expected dataset to be an eaviz ImageDataset, got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError("expected a non-empty dataset, got 0 images")
        layers = mixer_names(model)
        if not layers:
            raise ValueError(f"{type(model).__name__} has no attention layers to explore")
        layer = layers[-1] if layer is None else check_choice(layer, layers, "layer")
        self.model, self.dataset, self.atlas = model, dataset, atlas
        self._kinds = {name: layer_kind(model, name) for name in layers}
        self.panel = check_positive_int(panel, "panel")
        self.cache_size = check_positive_int(cache_size, "cache_size")
        self.current_maps = np.zeros((0, *dataset.images.shape[-2:]), dtype=np.float32)
        self._cache: OrderedDict[tuple, tuple[AttentionRecord, torch.Tensor]] = OrderedDict()
        self._uploaded: torch.Tensor | None = None
        self._upload_key = ""
        self._atlas_strips: dict[int, bytes] = {}
        self._holding = 0
        self._order = list(range(len(dataset)))

        present = set(dataset.targets.unique().tolist()) if dataset.task == "classification" else set()
        named_classes = [(c, i) for i, c in enumerate(dataset.classes) if i in present]
        class_options = [("all classes", -1), *named_classes]
        self.class_filter = widgets.Dropdown(options=class_options, value=-1, description="class")
        self.index = widgets.IntSlider(min=0, max=len(dataset) - 1, description="image", continuous_update=False)
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="your image")
        self.layer = widgets.Dropdown(options=layers, value=layer, description="layer")
        self.units = widgets.SelectMultiple(description="units", rows=6)
        self.row = widgets.IntSlider(min=0, max=0, description="query row")
        self.col = widgets.IntSlider(min=0, max=0, description="query col")
        self.alpha = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="alpha")
        self.cmap = widgets.Dropdown(options=sorted({*CMAPS, check_cmap(cmap)}), value=cmap, description="colormap")
        self.image = widgets.Image(format="png")
        self.caption = widgets.HTML()
        self.atlas_image = widgets.Image(format="png")
        self.atlas_caption = widgets.HTML()
        self.unit_box = widgets.VBox([self.units])
        self.query_box = widgets.VBox([self.row, self.col])
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.class_filter, self.index, self.upload]),
                widgets.HBox([self.layer, self.alpha, self.cmap]),
                widgets.HBox([self.unit_box, self.query_box]),
                self.image,
                self.caption,
                self.atlas_caption,
                self.atlas_image,
            ]
        )
        self._configure_layer(units)
        self.class_filter.observe(self._on_class, names="value")
        self.index.observe(self._on_index, names="value")
        self.upload.observe(self._on_upload, names="value")
        self.layer.observe(self._on_layer, names="value")
        for control in (self.units, self.row, self.col, self.alpha, self.cmap):
            control.observe(self._render, names="value")
        self._render()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    @contextmanager
    def _hold(self):
        """Change several controls and render once, when the outermost hold ends."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
        if not self._holding:
            self._render()

    @property
    def kind(self) -> str:
        """ "external" or "self": what the chosen layer's map is over."""
        return self._kinds[self.layer.value]

    def _configure_layer(self, units: Sequence[int] | None = None) -> None:
        """Unit choices for an external-attention layer, query sliders for self-attention.

        ``units`` are checked against the layer; without them the current choice is kept
        where the new layer has those units, else the first four units are shown.
        """
        record, _ = self._forward()
        name = self.layer.value
        grid = record.grids[name]
        if self.kind == "external":
            memory_units = record[name].shape[-1]
            if units is None:
                units = [u for u in self.units.value if u < memory_units] or range(min(4, memory_units))
            chosen = check_units(units, memory_units, name)
            self.units.options = [(f"unit {s}", s) for s in range(memory_units)]
            self.units.value = tuple(chosen)
            self.unit_box.layout.display, self.query_box.layout.display = None, "none"
        else:
            self.row.max, self.col.max = grid[0] - 1, grid[1] - 1
            self.row.value, self.col.value = grid[0] // 2, grid[1] // 2
            self.unit_box.layout.display, self.query_box.layout.display = "none", None

    def _key(self) -> tuple:
        return ("upload", self._upload_key) if self._uploaded is not None else ("index", self.current_index)

    @property
    def current_index(self) -> int | None:
        """The dataset index on display (None while an uploaded image is shown)."""
        return None if self._uploaded is not None else self._order[self.index.value]

    @property
    def current_image(self) -> torch.Tensor:
        """The image on display: (3, H, W) in [0, 1]."""
        return self._uploaded if self._uploaded is not None else self.dataset[self.current_index][0]

    def _forward(self) -> tuple[AttentionRecord, torch.Tensor]:
        """All layers' maps and the output for the current image, through the LRU cache."""
        key = self._key()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        record, output = capture_attention(self.model, self.current_image[None])
        cpu = AttentionRecord()
        cpu.update({name: attn.cpu() for name, attn in record.items()})
        cpu.grids.update(record.grids)
        self._cache[key] = (cpu, output.cpu())
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return self._cache[key]

    def _on_class(self, change) -> None:
        chosen = change["new"]
        everything = list(range(len(self.dataset)))
        self._order = everything if chosen < 0 else (self.dataset.targets == chosen).nonzero()[:, 0].tolist()
        with self._hold():
            self._uploaded = None
            self.index.max = max(len(self._order) - 1, 0)
            self.index.value = 0

    def _on_index(self, change) -> None:
        with self._hold():
            self._uploaded = None

    def _on_upload(self, change) -> None:
        if not change["new"]:
            return
        file = change["new"][-1]
        try:
            picture = Image.open(io.BytesIO(bytes(file["content"]))).convert("RGB")
        except OSError as error:
            self.caption.value = f"<b>could not read {file['name']}</b>: {error}"
            return
        height, width = self.dataset.images.shape[-2:]
        fitted = ImageOps.fit(picture, (width, height), method=Image.Resampling.LANCZOS)
        with self._hold():
            self._uploaded = torch.from_numpy(np.asarray(fitted).copy()).permute(2, 0, 1).float() / 255
            self._upload_key = hashlib.sha1(self._uploaded.numpy().tobytes()).hexdigest()

    def _on_layer(self, change) -> None:
        with self._hold():
            self._configure_layer()

    def _render(self, change=None) -> None:
        """Slice the cached map for the current controls and draw it."""
        if self._holding:
            return
        record, output = self._forward()
        name, image = self.layer.value, self.current_image
        grid, size = record.grids[name], tuple(image.shape[-2:])
        attn = reduce_heads(record[name])
        if self.kind == "external":
            units, query = list(self.units.value), None
            maps = unit_maps(attn, grid, units, size)[0] if units else torch.zeros(0, *size)
            titles = ", ".join(f"unit {u}" for u in units) or "no unit chosen: pick one or more"
        else:
            query = (self.row.value, self.col.value)
            maps = query_map(attn, grid, query, size)
            titles = f"query {query}"
        cmap, alpha = self.cmap.value, self.alpha.value
        panels = [draw_panel(image, heat, height=self.panel, cmap=cmap, alpha=alpha) for heat in (None, *maps)]
        if query is not None:
            panels = [outline(panel, query, grid) for panel in panels]
        self.current_maps = maps.numpy()
        self.image.value = png(strip(panels))
        self.caption.value = f"{self._describe(output)} &middot; {name}: image, then {titles}"
        self._render_atlas()

    def _describe(self, output: torch.Tensor) -> str:
        """Which image, and what the model predicts for it (classifiers)."""
        where = "your image" if self._uploaded is not None else f"image #{self.current_index}"
        if output.ndim != 2:
            return where
        probabilities = output.softmax(dim=-1)[0]
        best = int(probabilities.argmax())
        label = self.dataset.classes[best] if best < len(self.dataset.classes) else str(best)
        return f"{where} &middot; predicted <b>{label}</b> ({float(probabilities[best]):.0%})"

    def _render_atlas(self) -> None:
        """Top images of the first chosen unit, from the atlas of the same layer."""
        atlas = self.atlas
        if atlas is None or self.kind != "external" or atlas.layer != self.layer.value or not self.units.value:
            self.atlas_image.layout.display = "none"
            self.atlas_caption.value = "" if atlas is None else f"(the memory atlas is for layer {atlas.layer})"
            return
        unit = self.units.value[0]
        if unit not in self._atlas_strips:
            thumbs = []
            for index, _, cell in atlas.top(unit):
                thumb = draw_panel(self.dataset[index][0], height=self.panel // 2)
                thumbs.append(outline(thumb, cell, atlas.grid))
            self._atlas_strips[unit] = png(strip(thumbs))
        self.atlas_image.value = self._atlas_strips[unit]
        self.atlas_image.layout.display = None
        self.atlas_caption.value = f"images of the dataset that excite unit {unit} most (peak token outlined)"

    def measure_latency(self, repeats: int = 10) -> dict[str, float]:
        """Median milliseconds per interaction, measured by setting the controls from Python.

        ``interaction_ms``: a control change on an image already seen (alpha, colormap,
        units or query); ``new_image_ms``: moving to an image that is not cached (one
        forward pass plus the render). The controls are put back afterwards.
        """
        controls = (self.index, self.alpha, self.cmap, self.units, self.row, self.col)
        saved = tuple(control.value for control in controls)
        interaction, new_image = [], []
        for _ in range(repeats):
            next_cmap = CMAPS[(CMAPS.index(self.cmap.value) + 1) % len(CMAPS)] if self.cmap.value in CMAPS else CMAPS[0]
            changes = [(self.alpha, 0.3 if self.alpha.value != 0.3 else 0.7), (self.cmap, next_cmap)]
            if self.kind == "external":
                changes.append((self.units, ((self.units.value[0] + 1) % len(self.units.options),)))
            else:
                changes.append((self.row, (self.row.value + 1) % (self.row.max + 1)))
            for control, value in changes:
                start = time.perf_counter()
                control.value = value
                interaction.append(1000 * (time.perf_counter() - start))
        for r in range(min(repeats, len(self._order) - 1)):
            target = (saved[0] + 1 + r) % len(self._order)
            self._cache.pop(("index", self._order[target]), None)
            start = time.perf_counter()
            self.index.value = target
            new_image.append(1000 * (time.perf_counter() - start))
        with self._hold():
            for control, value in zip(controls, saved):
                control.value = value
        return {
            "interaction_ms": statistics.median(interaction),
            "new_image_ms": statistics.median(new_image) if new_image else float("nan"),
        }
