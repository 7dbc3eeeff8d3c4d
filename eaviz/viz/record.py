"""Record the attention map of every mixer during a forward pass, without changing the model.

Every mixer in ``eaviz`` returns its map when called with ``return_attn=True``. The recorder
temporarily wraps each mixer's ``forward`` so the model's own call asks for the map, stores
it, and hands back only ``y``; on exit (also after an exception) the original ``forward``
methods are restored::

    with record_attention(model) as rec:
        logits = model(images)
    rec["blocks.0.mixer"]        # (B, N, S) for external attention
    rec.grids["blocks.0.mixer"]  # (h, w): the token grid, so maps reshape to images
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from eaviz._checks import check_choice
from eaviz.data.dataset import ImageDataset
from eaviz.registry import kind_of


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The attention layers of ``model`` by module name, outermost only.

    An attention layer is a module whose class declares ``kind = "external"`` or ``"self"``
    (see :mod:`eaviz.registry`). An :class:`~eaviz.attention2d.ExternalAttention2d` block is
    listed, its inner ``.ea`` is not: the block's map is the one the book draws.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected model to be a torch.nn.Module, got {type(model).__name__}")
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        inside_found = any(name.startswith(f"{outer}.") for outer in found)
        if kind_of(module) in ("external", "self") and not inside_found:
            found[name] = module
    return found


def mixer_names(model: nn.Module) -> list[str]:
    """Names of the attention layers of ``model``, e.g. ``["blocks.0.mixer", "blocks.1.mixer"]``."""
    return list(attention_modules(model))


def layer_kind(model: nn.Module, layer: str) -> str:
    """``"external"`` (maps over memory units) or ``"self"`` (maps over positions): what ``layer``'s class declares."""
    return kind_of(resolve_layer(model, layer))


def resolve_layer(model: nn.Module, layer: str) -> nn.Module:
    """The attention module called ``layer``; a ValueError lists the valid names otherwise."""
    modules = attention_modules(model)
    if not modules:
        raise ValueError(f"{type(model).__name__} has no attention layers (its mixers return no map)")
    return modules[check_choice(layer, list(modules), "layer")]


class AttentionRecord(dict):
    """Attention maps by layer name (``dict[str, Tensor]``) plus ``grids``: name -> (h, w).

    Shapes: external attention (B, N, S); multi-head external attention (B, heads, N, S);
    self-attention (B, heads, N, N); 2-D blocks (B, H*W, S) or (B, H*W, H*W). ``N = h * w``.
    ``grids[name]`` is None when a token count has no known grid (not a square, no
    ``model.grid_size``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.grids: dict[str, tuple[int, int] | None] = {}


def _grid_of(model: nn.Module, x: torch.Tensor) -> tuple[int, int] | None:
    """The spatial grid of a mixer's input: (H, W) of a feature map, or the token grid."""
    if x.ndim == 4:
        return int(x.shape[-2]), int(x.shape[-1])
    n = int(x.shape[-2])
    side = getattr(model, "grid_size", None)
    if isinstance(side, int) and side * side == n:
        return side, side
    root = math.isqrt(n)
    return (root, root) if root * root == n else None


@contextmanager
def record_attention(
    model: nn.Module, layers: Iterable[str] | None = None, *, detach: bool = True
) -> Iterator[AttentionRecord]:
    """Capture the attention map of each attention layer while the block runs.

    ``layers`` restricts recording to some names of :func:`mixer_names` (default: all).
    A layer called several times keeps the map of its last call. ``detach=False`` keeps the
    maps in the autograd graph, so a gradient can be taken with respect to them
    (:func:`eaviz.explain.unit_grad_cam` does).
    """
    modules = attention_modules(model)
    if layers is not None:
        layers = list(layers)
        for name in layers:
            resolve_layer(model, name)
        modules = {name: modules[name] for name in layers}
    record = AttentionRecord()
    saved: dict[str, object] = {}

    def wrap(name: str, module: nn.Module):
        original = module.forward

        def forward(x: torch.Tensor, return_attn: bool = False):
            y, attn = original(x, return_attn=True)
            if attn is not None:
                record[name] = attn.detach() if detach else attn
                record.grids[name] = _grid_of(model, x)
            return (y, attn) if return_attn else y

        return forward

    try:
        for name, module in modules.items():
            saved[name] = module.__dict__.get("forward")
            module.forward = wrap(name, module)
        yield record
    finally:
        for name, previous in saved.items():
            module = modules[name]
            del module.forward
            if previous is not None:
                module.forward = previous


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def capture_attention(
    model: nn.Module, images: torch.Tensor, layers: Iterable[str] | None = None
) -> tuple[AttentionRecord, torch.Tensor]:
    """One forward pass in eval mode without gradients: ``(record, model output)``.

    The model's train/eval mode is restored afterwards, so batch-norm statistics never move.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), record_attention(model, layers) as record:
            output = model(images.to(model_device(model)))
    finally:
        model.train(was_training)
    return record, output


def reduce_heads(attn: torch.Tensor, head: int | None = None) -> torch.Tensor:
    """(B, heads, N, K) or (B, N, K) -> (B, N, K): the mean over heads, or head ``head``."""
    if attn.ndim == 3:
        attn = attn[:, None]
    heads = attn.shape[1]
    if head is None:
        return attn.mean(dim=1)
    if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < heads:
        raise ValueError(f"expected head to be an int in [0, {heads}), got {head!r}")
    return attn[:, head]


@contextmanager
def on_device(model: nn.Module, device: str | torch.device | None) -> Iterator[nn.Module]:
    """Run ``model`` on ``device`` inside the block and move it back afterwards (None: stay)."""
    home = model_device(model)
    if device is not None:
        model.to(device)
    try:
        yield model
    finally:
        model.to(home)


@dataclass
class AttentionBatch:
    """One batch of a pass over a dataset: the layer's map and the samples it came from.

    attn: (B, N, K) or (B, heads, N, K) as the layer returns it; ``grid = (h, w)``, N = h * w;
    ``index``: (B,) dataset indices; ``targets`` and ``masks`` (or None) as in the dataset.
    """

    attn: torch.Tensor
    grid: tuple[int, int]
    index: torch.Tensor
    targets: torch.Tensor
    masks: torch.Tensor | None


def attention_batches(
    model: nn.Module,
    dataset: ImageDataset,
    layer: str,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "attention",
) -> Iterator[AttentionBatch]:
    """One pass over ``dataset`` recording ``layer``, batch by batch, with a tqdm bar.

    ``device``: where the model runs (default: where it is; it is moved back afterwards).
    Maps come back on that device; targets and masks as the dataset holds them.
    """
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"expected dataset to be an eaviz ImageDataset, got {type(dataset).__name__}")
    resolve_layer(model, layer)
    if len(dataset) == 0:
        raise ValueError("expected a non-empty dataset, got 0 images")
    with on_device(model, device):
        for start in tqdm(range(0, len(dataset), batch_size), desc=desc, disable=not progress):
            index = torch.arange(start, min(start + batch_size, len(dataset)))
            images = dataset.images[start : start + batch_size].to(model_device(model)).float() / 255
            record, _ = capture_attention(model, images, [layer])
            grid = record.grids[layer]
            if grid is None:
                raise ValueError(f"layer {layer!r} saw a token count that is not a grid; cannot map it to images")
            masks = None if dataset.masks is None else dataset.masks[start : start + batch_size]
            yield AttentionBatch(record[layer], grid, index, dataset.targets[start : start + batch_size], masks)
