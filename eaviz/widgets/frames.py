"""Frames for the explorers: image panels with a map over them, outlined tokens, PNG and JPEG strips.

Panels are uint8 (rows, cols, 3) arrays drawn by :func:`eaviz.viz.overlay.overlay` and
joined with PIL, which is fast enough to redraw on every slider move.
"""

from __future__ import annotations

import functools
import io

import matplotlib
import numpy as np
import torch
from matplotlib import font_manager
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from eaviz.viz.overlay import overlay, to_uint8

CMAPS = ("inferno", "viridis", "magma", "jet", "gray")
FONT_PX = 13  # text baked into a frame: readable where the page shows the frame at its own size
CAPTION_PX = FONT_PX + 5


@functools.cache
def caption_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans (shipped with matplotlib) at :data:`FONT_PX`; PIL's own font if it cannot be found."""
    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=False), FONT_PX)
    except (OSError, ValueError):
        return ImageFont.load_default(size=FONT_PX)


def check_cmap(cmap: str) -> str:
    if cmap not in matplotlib.colormaps:
        raise ValueError(f"expected cmap to be a matplotlib colormap name such as {CMAPS}, got {cmap!r}")
    return cmap


def draw_panel(
    image: torch.Tensor,
    heat: torch.Tensor | None = None,
    *,
    height: int,
    cmap: str = "inferno",
    alpha: float = 0.6,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """image (3, H, W) in [0, 1] with ``heat`` (H, W) over it -> uint8 (height, W', 3), aspect ratio kept.

    ``vmin``/``vmax``: the colour scale (default: the map's own min and max).
    """
    rows, cols = image.shape[-2:]
    size = (height, max(1, round(height * cols / rows)))
    return to_uint8(overlay(image, heat, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax, size=size))


def outline(panel: np.ndarray, cell: tuple[int, int], grid: tuple[int, int], colour=(0, 255, 255)) -> np.ndarray:
    """Draw the outline of token ``cell = (row, col)`` of a ``grid = (h, w)`` on a panel."""
    picture = Image.fromarray(panel)
    rows, cols = panel.shape[:2]
    (row, col), (h, w) = cell, grid
    top, left = row * rows / h, col * cols / w
    ImageDraw.Draw(picture).rectangle(
        (left, top, left + cols / w - 1, top + rows / h - 1), outline=colour, width=max(1, rows // 48)
    )
    return np.asarray(picture)


def fit_lines(text: str, width: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> list[str]:
    """``text`` broken at spaces into lines at most ``width`` pixels wide (a longer word keeps its own line)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def strip(
    panels: list[np.ndarray], caption: str | None = None, gap: int = 2, labels: list[str] | None = None
) -> Image.Image:
    """Panels side by side on white, with an optional caption line above them and a label under each.

    A label wider than its panel is broken into lines, so that it never runs under the next one.
    """
    rows = panels[0].shape[0]
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    font = caption_font()
    wrapped = [fit_lines(label, panel.shape[1] - 4, font) for label, panel in zip(labels, panels)] if labels else []
    top = CAPTION_PX if caption else 0
    bottom = CAPTION_PX * max(map(len, wrapped)) if wrapped else 0
    canvas = Image.new("RGB", (width, top + rows + bottom), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for k, panel in enumerate(panels):
        canvas.paste(Image.fromarray(panel), (x, top))
        for line, text in enumerate(wrapped[k] if wrapped else []):
            draw.text((x + 2, top + rows + 2 + line * CAPTION_PX), text, fill="black", font=font)
        x += panel.shape[1] + gap
    if caption:
        draw.text((2, 2), caption, fill="black", font=font)
    return canvas


def png(picture: Image.Image) -> bytes:
    """PNG bytes, fast to write: for frames drawn live in a kernel."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def jpeg(picture: Image.Image, quality: int = 85) -> bytes:
    """JPEG bytes: for frames stored in a page, photos under smooth heat maps, about half the
    bytes of a 128-colour PNG of the same frame."""
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def colourbar_png(cmap: str, vmin: float, vmax: float, *, height: int, label: str) -> bytes:
    """A vertical colour bar for the scale [vmin, vmax] of ``cmap``, about ``height`` pixels high, as PNG bytes."""
    fig = Figure(figsize=(1.2, max(height, 96) / 100), dpi=100, layout="constrained")
    ax = fig.subplots()
    fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), cax=ax)
    ax.set_ylabel(label, fontsize=9)
    ax.tick_params(labelsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
