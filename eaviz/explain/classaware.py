"""Class-aware external-attention maps, and a centre prior to compare every map against.

A column ``alpha[:, s]`` of external attention says where memory unit ``s`` is read; it says
nothing about the class the model predicts. Two maps bring the class (or the output) in, for
any mixer whose class declares ``kind = "external"`` (multi-head maps: heads averaged):

- :func:`unit_grad_cam` weights the units by the gradient of the class logit, as Grad-CAM
  weights channels: ``w_s = mean_n d logit / d alpha[n, s]``, ``map = relu(sum_s w_s alpha[:, s])``.
- :func:`value_norm_map` is ``|| alpha[n] @ M_v ||``, the size of what the mixer writes at
  position ``n``: where the memory changes the features most, whatever the class.

:func:`centre_prior` is the map that knows nothing but "objects sit in the middle of photos";
a map that does not beat it has not shown that it finds the object.
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce
from torch import nn

from eaviz._checks import check_positive_int
from eaviz.explain.attribution import Target, class_logits, frozen_eval, target_classes
from eaviz.viz.maps import check_image_batch, check_layer
from eaviz.viz.record import capture_attention, model_device, record_attention, resolve_layer


def _by_head(attn: torch.Tensor) -> torch.Tensor:
    """(B, N, S) or (B, heads, N, S) -> (B, heads, N, S)."""
    return attn[:, None] if attn.ndim == 3 else attn


def _to_grid(values: torch.Tensor, grid: tuple[int, int] | None, layer: str) -> torch.Tensor:
    """(B, N) -> (B, h, w) on the layer's token grid."""
    if grid is None:
        raise ValueError(f"layer {layer!r} saw a token count that is not a grid; cannot draw its map")
    return rearrange(values, "b (h w) -> b h w", h=grid[0], w=grid[1])


def unit_grad_cam(
    model: nn.Module, images: torch.Tensor, target: Target = None, *, layer: str | None = None
) -> torch.Tensor:
    """Grad-CAM over memory units: images (B, 3, H, W) in [0, 1] -> (B, h, w) on the layer's token grid.

    ``w_s = mean_n d logit_c / d alpha[n, s]`` and ``map[n] = relu(sum_s w_s alpha[n, s])``, with
    ``c`` = ``target`` (default: the predicted class) and (head, unit) pairs counted as units
    of a multi-head map, averaged over heads. ``layer``: an external-attention layer of
    ``mixer_names(model)`` (default: the deepest). The model must be a classifier,
    (B, 3, H, W) -> (B, classes); it runs in eval mode with frozen parameters.
    """
    images = check_image_batch(images).detach().to(model_device(model))
    layer = check_layer(model, layer, "external")
    with frozen_eval(model):
        target = target_classes(model, images, target)
        # The parameters are frozen, so the input carries the graph through to the map.
        with torch.enable_grad(), record_attention(model, [layer], detach=False) as record:
            logits = class_logits(model, images.clone().requires_grad_())
            attn = record[layer]
            (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), attn, allow_unused=True)
    if grad is None:
        raise ValueError(
            f"the output of {type(model).__name__} does not depend on the map that layer {layer!r} returns; "
            "its mixer must compute y from the attn it returns"
        )
    attn, grad = _by_head(attn.detach()), _by_head(grad)
    weights = reduce(grad, "b h n s -> b h 1 s", "mean")
    cam = reduce(weights * attn, "b h n s -> b n", "sum") / attn.shape[1]
    return _to_grid(cam.clamp_min(0), record.grids[layer], layer).float()


def value_memory(model: nn.Module, layer: str) -> torch.Tensor:
    """``M_v`` of an external-attention layer: (S, e), so that ``alpha @ M_v`` is the mixer's output per head.

    Found as the ``nn.Linear`` called ``mv`` (S -> e) in the layer or inside it, as in
    :class:`~eaviz.attention.ExternalAttention` and the blocks built on it.
    """
    module = resolve_layer(model, check_layer(model, layer, "external"))
    units = module.memory_units
    for name, sub in module.named_modules():
        if name.rsplit(".", 1)[-1] == "mv" and isinstance(sub, nn.Linear) and sub.in_features == units:
            return sub.weight.t()
    raise ValueError(
        f"layer {layer!r} ({type(module).__name__}) has no value memory: expected an nn.Linear called 'mv' "
        f"from its {units} memory units, as in eaviz.attention.ExternalAttention"
    )


def value_norm_map(model: nn.Module, images: torch.Tensor, *, layer: str | None = None) -> torch.Tensor:
    """``|| alpha[n] @ M_v ||`` per position: images (B, 3, H, W) in [0, 1] -> (B, h, w) on the token grid.

    What the memory writes at each position, before the layer's output projection; averaged
    over heads. Class-agnostic like the unit maps, but it weighs each unit by its value vector.
    """
    images = check_image_batch(images)
    layer = check_layer(model, layer, "external")
    record, _ = capture_attention(model, images, [layer])
    attn = _by_head(record[layer]).float()
    with torch.no_grad():
        values = value_memory(model, layer).to(attn)
        norms = reduce((attn @ values).norm(dim=-1), "b h n -> b n", "mean")
    return _to_grid(norms, record.grids[layer], layer).cpu()


def centre_prior(batch: int, size: tuple[int, int], *, sigma: float = 0.25) -> torch.Tensor:
    """A Gaussian centred on the image, the same for every image: -> (batch, H, W) with a peak of 1.

    ``sigma`` is in units of the image side (0.25: a quarter of the height and of the width).
    """
    check_positive_int(batch, "batch")
    if len(size) != 2:
        raise ValueError(f"expected size as (H, W), got {size!r}")
    height, width = (check_positive_int(side, "size") for side in size)
    if not sigma > 0:
        raise ValueError(f"expected sigma > 0 (a fraction of the image side), got {sigma}")
    rows = ((torch.arange(height) + 0.5) / height - 0.5) ** 2
    cols = ((torch.arange(width) + 0.5) / width - 0.5) ** 2
    prior = torch.exp(-(rows[:, None] + cols[None, :]) / (2 * sigma**2))
    return prior.expand(batch, height, width).clone()
