"""Explanations next to attention maps: captum attributions and deletion / insertion curves.

An attention map says where a layer *looked*; an attribution says which pixels *changed the
prediction*. :func:`attribute` computes four classic attributions through captum, in the same
form as the attention maps, ``(B, H, W)`` and non-negative:

=======================  ======================================================  ===============
method                   what it measures                                        made positive by
=======================  ======================================================  ===============
``integrated_gradients`` path integral of gradients from a black image           abs, sum over RGB
``saliency``             gradient of the class logit w.r.t. the pixels           abs, max over RGB
``grad_cam``             channel-weighted activations of ``model.token_grid``    ReLU (the paper's)
``occlusion``            drop of the class logit when a patch is blacked out     ReLU
=======================  ======================================================  ===============

Whether any map -- attention or attribution -- is *faithful* to the model is measured by the
deletion and insertion curves of Petsiuk et al. (RISE, 2018): remove the most important
pixels first and watch the class probability fall (a low area under the curve is good), or
insert them into a blurred image and watch it rise (a high area is good).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from captum.attr import (
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Occlusion,
    Saliency,
)
from einops import rearrange, reduce, repeat
from matplotlib.figure import Figure
from torch import nn

from eaviz._checks import check_float_tensor, check_images, check_positive_int

METHODS = ("integrated_gradients", "saliency", "grad_cam", "occlusion")
MODES = ("deletion", "insertion")
BASELINES = ("blur", "zero", "mean")

Target = int | Sequence[int] | torch.Tensor | None  # one class for all images, one per image, or the prediction


@contextmanager
def _frozen_eval(model: nn.Module) -> Iterator[None]:
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


def _logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """images: (B, 3, H, W) -> logits: (B, num_classes), with a clear error for other models."""
    logits = model(images)
    if logits.ndim != 2 or logits.shape[0] != images.shape[0]:
        raise ValueError(
            "expected a classifier whose output has shape (B, num_classes), "
            f"got output of shape {tuple(logits.shape)} for images {tuple(images.shape)}"
        )
    return logits


def _targets(model: nn.Module, images: torch.Tensor, target: Target) -> torch.Tensor:
    """The class to explain for each image: (B,) int64; ``None`` means the predicted class."""
    with torch.no_grad():
        logits = _logits(model, images)
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
    with _frozen_eval(model):
        target = _targets(model, images, target)
        forward = partial(_logits, model)
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


def _as_maps(maps: object, name: str) -> torch.Tensor:
    """A (B, h, w) float tensor from a tensor or array."""
    if not isinstance(maps, torch.Tensor):
        try:
            maps = torch.as_tensor(maps)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"expected {name} to be a tensor or array of shape (B, h, w), got {type(maps).__name__}"
            ) from None
    maps = maps.detach()
    if not maps.is_floating_point():
        maps = maps.float()
    if maps.ndim != 3:
        raise ValueError(f"expected {name} of shape (B, h, w), got {tuple(maps.shape)}")
    return maps


def plot_explanations(
    images: torch.Tensor,
    columns: Mapping[str, torch.Tensor],
    *,
    cmap: str = "inferno",
    alpha: float = 0.6,
) -> Figure:
    """Images in the first column, then one overlaid column per named map set.

    images: (B, 3, H, W) in [0, 1]; columns: {title: (B, h, w)} tensors or arrays, e.g.
    ``{"EA unit 7": ea_maps[:, 0], "SA": sa_maps, **attribute(model, images)}``. Maps may
    be coarser than the image (an 8 x 8 token map) and are stretched over it, on a grey copy
    of the image. Each map is min-max scaled per image, so colours compare *where* a map is
    high, not how high.
    """
    images = check_images(images).detach().cpu()
    columns = {title: _as_maps(maps, f"columns[{title!r}]").cpu() for title, maps in columns.items()}
    for title, maps in columns.items():
        if maps.shape[0] != images.shape[0]:
            raise ValueError(
                f"expected columns[{title!r}] to hold one map per image, (B={images.shape[0]}, h, w), "
                f"got {tuple(maps.shape)}"
            )
    rows, cols = images.shape[0], 1 + len(columns)
    height, width = images.shape[-2:]
    fig = Figure(figsize=(1.8 * cols, 1.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i in range(rows):
        picture = rearrange(images[i], "c h w -> h w c").numpy()
        axes[i, 0].imshow(picture)
        for j, (title, maps) in enumerate(columns.items(), start=1):
            m = maps[i]
            m = (m - m.min()) / (m.max() - m.min()).clamp_min(1e-12)
            axes[i, j].imshow(picture.mean(axis=-1), cmap="gray", vmin=0, vmax=1)
            axes[i, j].imshow(
                m.numpy(),
                cmap=cmap,
                alpha=alpha,
                vmin=0,
                vmax=1,
                extent=(-0.5, width - 0.5, height - 0.5, -0.5),
                interpolation="nearest",
            )
            if i == 0:
                axes[i, j].set_title(title, fontsize=9)
        if i == 0:
            axes[i, 0].set_title("image", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve for a batch of images.

    fractions: (K,) share of the map's cells removed (deletion) or inserted (insertion), 0 to 1;
    scores: (B, K) softmax probability of the target class at each fraction;
    auc: (B,) trapezoid area under each image's curve; mode: "deletion" or "insertion".
    """

    fractions: torch.Tensor
    scores: torch.Tensor
    auc: torch.Tensor
    mode: str


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with edge replication: (B, C, H, W) -> (B, C, H, W)."""
    radius = max(1, math.ceil(2 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, repeat(kernel, "k -> c 1 1 k", c=channels), groups=channels)
    return F.conv2d(rows, repeat(kernel, "k -> c 1 k 1", c=channels), groups=channels)


def baseline_images(images: torch.Tensor, baseline: str) -> torch.Tensor:
    """What removed pixels become: (B, 3, H, W) -> (B, 3, H, W).

    "blur": a Gaussian blur with sigma = max(H, W) / 8 (4 px on CIFAR), as in RISE;
    "zero": black; "mean": each image's mean colour.
    """
    if baseline not in BASELINES:
        raise ValueError(f"expected baseline to be one of {BASELINES}, got {baseline!r}")
    if baseline == "zero":
        return torch.zeros_like(images)
    if baseline == "mean":
        return reduce(images, "b c h w -> b c 1 1", "mean").expand_as(images)
    return gaussian_blur(images, sigma=max(images.shape[-2:]) / 8)


def deletion_curve(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    target: Target = None,
    *,
    steps: int = 32,
    mode: str = "deletion",
    baseline: str = "blur",
    batch_size: int = 256,
) -> Curve:
    """Deletion (or insertion) curve of importance maps (Petsiuk et al., 2018).

    images: (B, 3, H, W) in [0, 1]; maps: (B, h, w) with h dividing H and w dividing W (a
    coarse map moves whole blocks of H/h x W/w pixels) -> :class:`Curve` with K = steps + 1.

    Cells are ranked by map value, highest first (ties by position). At step k the top
    round(k / steps * h * w) cells are replaced by the baseline ("deletion": a good map makes
    the score fall fast, low AUC) or copied from the image into the baseline ("insertion":
    a good map makes it rise fast, high AUC). The score is the softmax probability of
    ``target`` (default: the class predicted on the clean images).
    """
    if mode not in MODES:
        raise ValueError(f"expected mode to be one of {MODES}, got {mode!r}")
    check_positive_int(steps, "steps")
    check_positive_int(batch_size, "batch_size")
    images = check_images(images).detach()
    maps = check_float_tensor(maps, "maps").detach().to(images.device)
    batch, _, height, width = images.shape
    if maps.ndim != 3 or maps.shape[0] != batch or height % maps.shape[1] or width % maps.shape[2]:
        raise ValueError(
            f"expected maps of shape ({batch}, h, w) with h dividing {height} and w dividing {width} "
            f"(one map per image), got {tuple(maps.shape)}"
        )
    if not torch.isfinite(maps).all():
        raise ValueError("expected maps with finite values, got NaN or inf")
    h, w = maps.shape[1:]
    cells = h * w
    order = maps.flatten(1).argsort(dim=1, descending=True, stable=True)
    rank = order.argsort(dim=1)  # (B, h*w): where each cell comes in the order
    counts = torch.round(torch.linspace(0, cells, steps + 1, dtype=torch.float64)).long()  # cells moved at each step
    fractions = (counts / cells).float().to(images.device)
    counts = counts.to(images.device)
    fill = baseline_images(images, baseline)
    source, replacement = (images, fill) if mode == "deletion" else (fill, images)
    scores = []
    with _frozen_eval(model), torch.no_grad():
        target = _targets(model, images, target)
        for chunk in counts.split(max(1, batch_size // batch)):
            moved = rearrange(rank, "b n -> 1 b n") < rearrange(chunk, "k -> k 1 1")  # (k, B, h*w)
            moved = rearrange(moved, "k b (h w) -> (k b) 1 h w", h=h).float()
            moved = F.interpolate(moved, size=(height, width), mode="nearest").bool()
            k = len(chunk)
            perturbed = torch.where(
                moved,
                repeat(replacement, "b c h w -> (k b) c h w", k=k),
                repeat(source, "b c h w -> (k b) c h w", k=k),
            )
            probs = _logits(model, perturbed).softmax(dim=-1)
            picked = probs.gather(1, repeat(target, "b -> (k b) 1", k=k))
            scores.append(rearrange(picked, "(k b) 1 -> b k", k=k))
    scores = torch.cat(scores, dim=1).float()
    return Curve(fractions, scores, torch.trapezoid(scores, fractions, dim=1), mode)


def faithfulness_curves(
    model: nn.Module,
    images: torch.Tensor,
    maps_by_method: Mapping[str, torch.Tensor],
    target: Target = None,
    *,
    steps: int = 32,
    baseline: str = "blur",
) -> dict[str, dict[str, Curve]]:
    """{method: (B, h, w) maps} -> {method: {"deletion": Curve, "insertion": Curve}}.

    Add ``"random": torch.rand_like(maps)`` to the methods for the chance level.
    """
    return {
        name: {
            mode: deletion_curve(model, images, maps, target, steps=steps, mode=mode, baseline=baseline)
            for mode in MODES
        }
        for name, maps in maps_by_method.items()
    }


def faithfulness_table(
    model: nn.Module,
    images: torch.Tensor,
    maps_by_method: Mapping[str, torch.Tensor],
    target: Target = None,
    *,
    steps: int = 32,
    baseline: str = "blur",
) -> dict[str, tuple[float, float]]:
    """{method: (B, h, w) maps} -> {method: (mean deletion AUC, mean insertion AUC)}.

    Lower deletion and higher insertion AUC mean a more faithful map.
    """
    curves = faithfulness_curves(model, images, maps_by_method, target, steps=steps, baseline=baseline)
    return {
        name: (pair["deletion"].auc.mean().item(), pair["insertion"].auc.mean().item()) for name, pair in curves.items()
    }


def plot_faithfulness(curves: Mapping[str, Curve | Mapping[str, Curve]]) -> Figure:
    """One panel per mode, the batch-mean curve of every method, its mean AUC in the legend.

    curves: the output of :func:`faithfulness_curves`, or {method: Curve}.
    """
    panels: dict[str, list[tuple[str, Curve]]] = {}
    for name, value in curves.items():
        for curve in [value] if isinstance(value, Curve) else value.values():
            if not isinstance(curve, Curve):
                raise TypeError(
                    f"expected curves[{name!r}] to be a Curve or a dict of Curves, got {type(curve).__name__}"
                )
            panels.setdefault(curve.mode, []).append((name, curve))
    if not panels:
        raise ValueError("expected at least one curve, got none")
    modes = [m for m in MODES if m in panels]
    fig = Figure(figsize=(4.5 * len(modes), 3.4), layout="constrained")
    axes = fig.subplots(1, len(modes), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for name, curve in panels[mode]:
            ax.plot(
                curve.fractions.cpu(),
                curve.scores.mean(dim=0).cpu(),
                label=f"{name} (AUC {curve.auc.mean().item():.3f})",
            )
        better = "lower" if mode == "deletion" else "higher"
        ax.set_title(f"{mode} ({better} AUC is better)")
        ax.set_xlabel(f"fraction of pixels {'removed' if mode == 'deletion' else 'inserted'}")
        ax.set_ylabel("probability of the class")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    return fig
