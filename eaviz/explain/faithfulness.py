"""Deletion and insertion curves (Petsiuk et al., RISE 2018): is a map faithful to the model?"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import nn

from eaviz._checks import check_choice, check_float_tensor, check_images, check_positive_int
from eaviz.explain.attribution import Target, class_logits, frozen_eval, target_classes

MODES = ("deletion", "insertion")
BASELINES = ("blur", "zero", "mean")


def mode_title(mode: str) -> str:
    """``"deletion (lower AUC is better)"`` or ``"insertion (higher AUC is better)"``."""
    return f"{mode} ({'lower' if mode == 'deletion' else 'higher'} AUC is better)"


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
    check_choice(baseline, BASELINES, "baseline")
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
    check_choice(mode, MODES, "mode")
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
    with frozen_eval(model), torch.no_grad():
        target = target_classes(model, images, target)
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
            probs = class_logits(model, perturbed).softmax(dim=-1)
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
