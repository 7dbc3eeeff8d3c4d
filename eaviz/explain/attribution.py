"""Captum attributions of a classifier, as (B, H, W) non-negative maps like the attention maps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency
from einops import rearrange, reduce
from torch import nn

from eaviz._checks import check_images, check_positive_int

METHODS = ("integrated_gradients", "saliency", "grad_cam", "occlusion")

Target = int | Sequence[int] | torch.Tensor | None  # one class for all images, one per image, or the prediction


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration; the caller's settings come back."""
    was_training = model.training
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        model.train(was_training)
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def _check_methods(methods: str | Iterable[str]) -> tuple[str, ...]:
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    if not methods:
        raise ValueError(f"expected at least one method from {METHODS}, got none")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; expected names from {METHODS}")
    return methods


def class_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """images: (B, 3, H, W) -> logits: (B, num_classes), with a clear error for other models."""
    logits = model(images)
    if logits.ndim != 2 or logits.shape[0] != images.shape[0]:
        raise ValueError(
            "expected a classifier whose output has shape (B, num_classes), "
            f"got output of shape {tuple(logits.shape)} for images {tuple(images.shape)}"
        )
    return logits


def target_classes(model: nn.Module, images: torch.Tensor, target: Target) -> torch.Tensor:
    """The class to explain for each image: (B,) int64; ``None`` means the predicted class."""
    with torch.no_grad():
        logits = class_logits(model, images)
    batch, classes = logits.shape
    if target is None:
        return logits.argmax(dim=-1)
    if isinstance(target, int) and not isinstance(target, bool):
        target = torch.full((batch,), target, dtype=torch.long)
    target = torch.as_tensor(target, device=images.device)
    if target.dtype.is_floating_point or target.dtype == torch.bool or target.shape != (batch,):
        raise ValueError(
            f"expected target to be None, an int or {batch} ints (one per image), "
            f"got {target.dtype} of shape {tuple(target.shape)}"
        )
    if target.min() < 0 or target.max() >= classes:
        raise ValueError(f"expected target classes in [0, {classes}), got {target.tolist()}")
    return target.long()


def _grad_cam_layer(model: nn.Module, layer: nn.Module | None) -> nn.Module:
    if layer is not None:
        return layer
    if isinstance(getattr(model, "token_grid", None), nn.Module):
        return model.token_grid
    raise ValueError(
        "grad_cam needs a layer whose output is a (B, C, h, w) feature map; this model has no "
        "`token_grid`, so pass layer=<that module>"
    )


def attribute(
    model: nn.Module,
    images: torch.Tensor,
    target: Target = None,
    methods: str | Iterable[str] = METHODS,
    *,
    layer: nn.Module | None = None,
    ig_steps: int = 32,
    window: int = 4,
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Captum attributions for a classifier, one ``(B, H, W)`` map per method.

    images: (B, 3, H, W) in [0, 1] -> {method: (B, H, W)}, float, non-negative, on images.device.

    target: the class explained for each image (an int, B ints, or None for the predicted class).
    methods: any of ``METHODS`` (see the module docstring for how each is made non-negative).
    layer: the feature layer for Grad-CAM; default ``model.token_grid`` (B, d, 8, 8) of a
        :class:`~eaviz.models.Classifier`. Its map is upsampled bilinearly to (H, W).
    ig_steps: points on the integrated-gradients path from a black image to ``images``.
    window: side of the square patch that occlusion blacks out (stride = window).
    batch_size: at most this many images go through the model at once (integrated gradients
        needs at least 2 B).

    The model runs in eval mode with its parameters frozen; its training mode and
    ``requires_grad`` flags are restored afterwards and no ``.grad`` is left on them.
    """
    methods = _check_methods(methods)
    images = check_images(images)
    check_positive_int(ig_steps, "ig_steps")
    check_positive_int(window, "window")
    check_positive_int(batch_size, "batch_size")
    images = images.detach()
    batch, _, height, width = images.shape
    maps: dict[str, torch.Tensor] = {}
    with frozen_eval(model):
        target = target_classes(model, images, target)
        forward = partial(class_logits, model)
        for method in methods:
            if method == "integrated_gradients":
                attr = IntegratedGradients(forward).attribute(
                    images,
                    baselines=0.0,
                    target=target,
                    n_steps=ig_steps,
                    internal_batch_size=max(batch_size, 2 * batch),
                )
                maps[method] = reduce(attr.abs(), "b c h w -> b h w", "sum")
            elif method == "saliency":
                attr = Saliency(forward).attribute(images.clone().requires_grad_(), target=target, abs=True)
                maps[method] = reduce(attr, "b c h w -> b h w", "max")
            elif method == "grad_cam":
                gradcam = LayerGradCam(forward, _grad_cam_layer(model, layer))
                cam = gradcam.attribute(images, target=target, relu_attributions=True)  # (B, 1, h, w)
                cam = LayerAttribution.interpolate(cam, (height, width), interpolate_mode="bilinear")
                maps[method] = rearrange(cam, "b 1 h w -> b h w")
            else:  # occlusion
                attr = Occlusion(forward).attribute(
                    images,
                    sliding_window_shapes=(3, window, window),
                    strides=(3, window, window),
                    baselines=0.0,
                    target=target,
                    perturbations_per_eval=max(1, batch_size // batch),
                )
                maps[method] = reduce(attr, "b c h w -> b h w", "mean").clamp_min(0)
    return {name: m.detach().float() for name, m in maps.items()}
