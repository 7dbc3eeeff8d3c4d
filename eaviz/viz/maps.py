"""Attention maps as images: where each memory unit looks, where a query position looks.

External attention gives a map ``A: (N, S)``. Column ``s`` of ``A`` says how much each of
the N positions attends to memory unit ``s``: reshaped to the token grid and upsampled, it
is a heat map over the image. Self-attention gives ``(N, N)``: row ``q`` is where the token
at position ``q`` looks.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from eaviz._checks import check_images
from eaviz.viz.record import (
    AttentionRecord,
    capture_attention,
    layer_kind,
    mixer_names,
    reduce_heads,
    resolve_layer,
)


def default_layer(model: nn.Module, kind: str) -> str:
    """The deepest attention layer of ``kind`` ("external" or "self") in ``model``."""
    names = [name for name in mixer_names(model) if layer_kind(model, name) == kind]
    if not names:
        raise ValueError(
            f"{type(model).__name__} has no {kind}-attention layer; its attention layers are {mixer_names(model)}"
        )
    return names[-1]


def check_layer(model: nn.Module, layer: str | None, kind: str) -> str:
    """``layer`` if it is an attention layer of ``kind``, the deepest such layer if None."""
    if layer is None:
        return default_layer(model, kind)
    module = resolve_layer(model, layer)
    if layer_kind(model, layer) != kind:
        hint = "self_attention_maps" if kind == "external" else "memory_unit_maps"
        what = "memory units" if kind == "external" else "positions (a query map)"
        others = [name for name in mixer_names(model) if layer_kind(model, name) == kind]
        alternatives = f", or pick one of {others}" if others else ""
        raise ValueError(
            f"layer {layer!r} is {type(module).__name__}, which has no map over {what}; use {hint} for it{alternatives}"
        )
    return layer


def layer_memory_units(model: nn.Module, layer: str) -> int:
    """S, the number of memory units of the external-attention layer ``layer`` (its ``memory_units``)."""
    return resolve_layer(model, check_layer(model, layer, "external")).memory_units


def check_image_batch(images: object, name: str = "images") -> torch.Tensor:
    """A float image batch (B, 3, H, W) in [0, 1]; one (3, H, W) image gets a hint to add B."""
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        raise ValueError(
            f"expected {name} of shape (B, 3, H, W), got {tuple(images.shape)}; "
            f"for a single image add the batch axis: {name}[None]"
        )
    return check_images(images, name)


def check_units(units: int | Iterable[int] | None, memory_units: int, layer: str = "") -> list[int]:
    """``units`` as a list of ints in [0, memory_units); None means all of them."""
    if units is None:
        return list(range(memory_units))
    chosen = [units] if isinstance(units, int) else list(units)
    where = f" of layer {layer!r}" if layer else ""
    for unit in chosen:
        if isinstance(unit, bool) or not isinstance(unit, int):
            raise TypeError(f"expected units to be ints, got {unit!r} ({type(unit).__name__})")
        if not 0 <= unit < memory_units:
            raise ValueError(
                f"unit {unit} is out of range{where}: it has S={memory_units} memory units, "
                f"expected 0 <= unit < {memory_units}"
            )
    if not chosen:
        raise ValueError("expected at least one unit, got an empty list")
    return chosen


def check_query(query: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    """``query`` as (row, col) inside a grid of ``grid = (h, w)`` token positions."""
    h, w = grid
    if (
        not isinstance(query, (tuple, list))
        or len(query) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in query)
    ):
        raise TypeError(f"expected query as (row, col) ints, got {query!r}")
    row, col = query
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(
            f"query {tuple(query)} is outside the {h}x{w} token grid; expected 0 <= row < {h}, 0 <= col < {w}"
        )
    return row, col


def _grid(record: AttentionRecord, layer: str) -> tuple[int, int]:
    grid = record.grids[layer]
    if grid is None:
        raise ValueError(f"layer {layer!r} saw a token count that is not a grid; cannot draw its map")
    return grid


def unit_maps(attn: torch.Tensor, grid: tuple[int, int], units: list[int], size: tuple[int, int]) -> torch.Tensor:
    """attn (B, N, S) -> maps (B, len(units), *size): each unit's column as an image.

    Bilinear upsampling keeps the maps non-negative (each pixel mixes grid values).
    """
    maps = rearrange(attn[..., units], "b (h w) k -> b k h w", h=grid[0], w=grid[1])
    return F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False)


def query_map(attn: torch.Tensor, grid: tuple[int, int], query: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """attn (B, N, N) -> (B, *size): the weights of position ``query = (row, col)`` over all positions."""
    row, col = query
    weights = rearrange(attn[:, row * grid[1] + col], "b (h w) -> b 1 h w", h=grid[0], w=grid[1])
    return F.interpolate(weights.float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def memory_unit_maps(
    model: nn.Module,
    images: torch.Tensor,
    layer: str | None = None,
    units: int | Iterable[int] | None = None,
    *,
    head: int | None = None,
) -> torch.Tensor:
    """Where each memory unit attends: images (B, 3, H, W) -> maps (B, S_sel, H, W).

    ``layer``: an external-attention layer from ``mixer_names(model)`` (default: the deepest).
    ``units``: an int or a list (default: all S). Multi-head maps (B, heads, N, S) are
    averaged over heads unless ``head`` picks one. Values are the attention weights after
    the layer's normalisation, upsampled bilinearly to the image size (on the CPU).
    """
    images = check_image_batch(images)
    layer = check_layer(model, layer, "external")
    record, _ = capture_attention(model, images, [layer])
    attn = reduce_heads(record[layer], head).cpu()
    chosen = check_units(units, attn.shape[-1], layer)
    return unit_maps(attn, _grid(record, layer), chosen, tuple(images.shape[-2:]))


def self_attention_maps(
    model: nn.Module,
    images: torch.Tensor,
    layer: str | None = None,
    query: tuple[int, int] = (0, 0),
    *,
    head: int | None = None,
) -> torch.Tensor:
    """Where one position looks: images (B, 3, H, W) -> maps (B, H, W).

    ``layer``: a self-attention layer (default: the deepest). ``query = (row, col)`` on the
    layer's token grid (8x8 for the CIFAR classifiers). Heads are averaged unless ``head``
    picks one; the map is the query's softmax row, upsampled bilinearly to the image size.
    """
    images = check_image_batch(images)
    layer = check_layer(model, layer, "self")
    record, _ = capture_attention(model, images, [layer])
    grid = _grid(record, layer)
    query = check_query(query, grid)
    attn = reduce_heads(record[layer], head).cpu()
    return query_map(attn, grid, query, tuple(images.shape[-2:]))
