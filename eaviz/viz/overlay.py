"""A heat map laid over its image: the one way eaviz colours a map over a picture.

:func:`overlay` returns an RGB array; the figures show it with ``ax.imshow`` and the widgets
encode it as PNG, so a map looks the same in a figure, an explorer and a static page.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from matplotlib.axes import Axes
from matplotlib.colors import Colormap


def image_to_numpy(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) numpy array for ``imshow``."""
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, h, w) -> (C, *size), bilinear (antialiased when it shrinks)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def overlay(
    image: torch.Tensor,
    heat: torch.Tensor | np.ndarray | None = None,
    *,
    cmap: str | Colormap = "inferno",
    alpha: float = 0.6,
    vmin: float | None = None,
    vmax: float | None = None,
    gray: bool = False,
    size: tuple[int, int] | None = None,
    ax: Axes | None = None,
) -> np.ndarray | None:
    """Lay ``heat`` (h, w) over ``image`` (3, H, W) in [0, 1]: on ``ax``, or as an RGB array.

    The map is coloured with ``cmap`` (a name or a Colormap, e.g. the VOC palette of
    :mod:`eaviz.viz.segmentation`) on [vmin, vmax] (default: its own min and max) with
    weight ``alpha``: ``(1 - alpha) * image + alpha * colour``. ``gray`` lays it over a grey
    copy of the image; ``heat=None`` gives the image alone.

    With ``ax``: draws the image, then the map as a second ``imshow`` (so the figure keeps its
    colour scale for a colorbar) stretched over the whole image, cell by cell when it is
    coarser (an 8x8 token map); returns None. Without: returns a (rows, cols, 3) float array
    in [0, 1] of ``size = (rows, cols)`` (default (H, W); image and map resized bilinearly),
    for PNG frames.
    """
    picture = image.detach().float().clamp(0, 1).cpu()
    if gray:
        picture = picture.mean(dim=0, keepdim=True).repeat(3, 1, 1)
    if heat is not None:
        heat = torch.as_tensor(heat).detach().float().cpu()
        low = float(heat.min()) if vmin is None else vmin
        high = max(float(heat.max()) if vmax is None else vmax, low + 1e-12)
    if ax is not None:
        height, width = picture.shape[-2:]
        ax.imshow(rearrange(picture, "c h w -> h w c").numpy())
        if heat is not None:
            extent = (-0.5, width - 0.5, height - 0.5, -0.5)
            ax.imshow(heat.numpy(), cmap=cmap, alpha=alpha, vmin=low, vmax=high, extent=extent, interpolation="nearest")
        return None
    size = tuple(picture.shape[-2:]) if size is None else tuple(size)
    picture = rearrange(_resize(picture, size), "c h w -> h w c").numpy()
    if heat is None:
        return picture
    values = _resize(heat[None], size)[0].numpy()
    colormap = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    colours = colormap(((values - low) / (high - low)).clip(0, 1))[..., :3]
    return ((1 - alpha) * picture + alpha * colours).clip(0, 1)


def to_uint8(picture: np.ndarray) -> np.ndarray:
    """A float RGB array in [0, 1] -> uint8, for PNG frames."""
    return (picture.clip(0, 1) * 255).round().astype(np.uint8)
