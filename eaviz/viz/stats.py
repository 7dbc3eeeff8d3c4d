"""Numbers about the memory: which classes each unit serves, whether it looks at objects,
and how peaked the attention is under each normalisation.

Every statistic comes as numbers (a tensor or a dataclass of tensors) and has a plot
function that takes those numbers, so a chapter can print the values it discusses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from eaviz._checks import check_choice, check_float_tensor, check_positive_int
from eaviz.data.dataset import ImageDataset
from eaviz.viz.maps import check_layer, layer_memory_units
from eaviz.viz.page import PAGE_INCHES
from eaviz.viz.record import attention_batches, reduce_heads

NORMALIZE = ("unit", "none")


def token_labels(targets: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The class of each token: targets (B,) or (B, H, W) -> (B, N).

    A classification label applies to every token; a segmentation map gives each token the
    label of the pixel at the centre of its patch (255 = void stays 255).
    """
    h, w = grid
    if targets.ndim == 1:
        return targets[:, None].expand(-1, h * w)
    rows = ((torch.arange(h) + 0.5) * targets.shape[-2] / h).long()
    cols = ((torch.arange(w) + 0.5) * targets.shape[-1] / w).long()
    return rearrange(targets[:, rows][:, :, cols], "b h w -> b (h w)")


def token_object_fraction(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """masks (B, H, W) bool -> (B, N): the fraction of each token's patch covered by the object."""
    covered = F.adaptive_avg_pool2d(masks.float()[:, None], grid)
    return rearrange(covered, "b 1 h w -> b (h w)")


def unit_class_mass(
    model: nn.Module,
    dataset: ImageDataset,
    layer: str | None = None,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    head: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Attention mass per memory unit per class: (S, C).

    ``mass[s, c]`` is the mean weight that a token of class ``c`` gives unit ``s`` (tokens
    take their image's label, or their pixel's label in segmentation sets; void is skipped).
    Each token's weights sum to 1 over the units, so every column sums to 1; a class that
    never occurs gets NaN. ``layer``: an external-attention layer (default: the deepest).
    Double normalisation's softmax runs over the positions of one image, so a unit earns
    mass by standing out *within* an image; with image labels, background tokens count
    for the image's class too.
    """
    check_positive_int(batch_size, "batch_size")
    layer = check_layer(model, layer, "external")
    num_classes = dataset.num_classes
    mass = torch.zeros(layer_memory_units(model, layer), num_classes)
    count = torch.zeros(num_classes)
    batches = attention_batches(
        model, dataset, layer, batch_size=batch_size, device=device, progress=progress, desc="class mass"
    )
    for batch in batches:
        attn = reduce_heads(batch.attn, head).float().cpu()  # (B, N, S)
        labels = token_labels(batch.targets.cpu(), batch.grid)  # (B, N)
        valid = (labels >= 0) & (labels < num_classes)
        onehot = F.one_hot(labels.where(valid, 0), num_classes).float() * valid[..., None]  # (B, N, C)
        mass += torch.einsum("bns,bnc->sc", attn, onehot)
        count += onehot.sum(dim=(0, 1))
    return mass / count.where(count > 0, torch.nan)


def plot_unit_class_heatmap(
    mass: torch.Tensor,
    classes: Sequence[str],
    *,
    normalize: str = "unit",
    sort: bool = True,
    cmap: str = "viridis",
    title: str | None = None,
) -> Figure:
    """Heat map of :func:`unit_class_mass`: classes down, memory units across.

    ``normalize="unit"`` divides each unit's row by its total over classes, so a column shows
    how one unit shares its attention among classes (1 / C everywhere = no preference);
    ``"none"`` shows the raw mean weights. ``sort`` orders units by preferred class, then by
    how strongly they prefer it, so class-selective units line up in blocks.
    """
    mass = check_float_tensor(mass, "mass").detach().cpu()
    if mass.ndim != 2 or mass.shape[1] != len(classes):
        raise ValueError(f"expected mass of shape (S, C={len(classes)}), got {tuple(mass.shape)}")
    check_choice(normalize, NORMALIZE, "normalize")
    values = mass / mass.nansum(dim=1, keepdim=True) if normalize == "unit" else mass
    units = torch.arange(mass.shape[0])
    if sort:
        share = values.nan_to_num(-1.0)
        best, preferred = share.max(dim=1)
        order = sorted(units.tolist(), key=lambda s: (int(preferred[s]), -float(best[s])))
        units = torch.tensor(order)
    grid = values[units].t().numpy()  # (C, S)
    fig = Figure(figsize=(PAGE_INCHES, 1.4 + 0.3 * len(classes)), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(classes)), classes, fontsize=9)
    step = _tick_step(len(units))
    ax.set_xticks(range(0, len(units), step), [str(int(u)) for u in units[::step]], fontsize=9, rotation=90)
    notes = (["sorted by preferred class"] if sort else []) + ([f"one in {step} labelled"] if step > 1 else [])
    ax.set_xlabel("memory unit" + (f" ({', '.join(notes)})" if notes else ""))
    label = "share of the unit's mass" if normalize == "unit" else "mean weight per token"
    fig.colorbar(image, ax=ax, label=label, fraction=0.04, pad=0.01)
    ax.set_title(title or "attention mass per memory unit and class", fontsize=10)
    return fig


def _axis_top(top: float) -> float:
    """Where a y axis of shares ends: the next multiple of 0.05 above ``top`` plus 15% room, at most 1."""
    return min(1.0, max(1, math.ceil(top * 1.15 / 0.05)) / 20)


def _tick_step(count: int, most: int = 32) -> int:
    """Label every unit up to ``most`` of them, else every 2nd, 3rd, ...: 9-point labels that fit a page."""
    return max(1, math.ceil(count / most))


@dataclass
class ObjectAttention:
    """Does each memory unit look at the object?

    on_object: (S,) fraction of unit ``s``'s attention mass that falls on object pixels;
    chance: (S,) the fraction it would get by spreading the same mass uniformly over each
    image (the object's area fraction, weighted by the unit's mass per image). ``lift`` > 1
    means the unit seeks the object, < 1 that it avoids it.
    """

    layer: str
    on_object: torch.Tensor
    chance: torch.Tensor

    @property
    def lift(self) -> torch.Tensor:
        return self.on_object / self.chance


def object_attention_fraction(
    model: nn.Module,
    dataset: ImageDataset,
    layer: str | None = None,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    head: int | None = None,
    progress: bool = True,
) -> ObjectAttention:
    """Per memory unit: attention on the object versus chance, over a dataset with masks.

    ``dataset.masks`` (n, H, W) says where the object is (the synthetic shapes, VOC). Each
    token counts the covered fraction of its patch, so ``on_object[s] =
    sum A[n, s] * covered[n] / sum A[n, s]`` summed over all images and tokens.
    """
    if dataset.masks is None:
        raise ValueError(
            f"expected a dataset with object masks, got {dataset.name or 'a dataset'} with masks=None; "
            "use a set that knows where its objects are (e.g. 'shapes' or 'voc')"
        )
    check_positive_int(batch_size, "batch_size")
    layer = check_layer(model, layer, "external")
    on, total, expected = (torch.zeros(layer_memory_units(model, layer)) for _ in range(3))
    batches = attention_batches(
        model, dataset, layer, batch_size=batch_size, device=device, progress=progress, desc="object attention"
    )
    for batch in batches:
        attn = reduce_heads(batch.attn, head).float().cpu()  # (B, N, S)
        covered = token_object_fraction(batch.masks.cpu(), batch.grid)  # (B, N)
        per_image = attn.sum(dim=1)  # (B, S): each unit's mass in each image
        on += torch.einsum("bns,bn->s", attn, covered)
        total += per_image.sum(dim=0)
        expected += torch.einsum("bs,b->s", per_image, covered.mean(dim=1))
    return ObjectAttention(layer, on / total, expected / total)


def plot_object_attention(result: ObjectAttention, *, sort: bool = True, title: str | None = None) -> Figure:
    """Bars: each unit's on-object fraction; black ticks: the chance level for that unit.

    ``sort`` orders units by lift (on-object / chance), object-seekers first.
    """
    units = result.lift.argsort(descending=True) if sort else torch.arange(result.on_object.shape[0])
    x = np.arange(len(units))
    fig = Figure(figsize=(min(PAGE_INCHES, 1.5 + 0.2 * len(units)), 3.2), layout="constrained")
    ax = fig.subplots()
    ax.bar(x, result.on_object[units].numpy(), color="tab:orange", label="attention on the object")
    chance = result.chance[units].numpy()
    ax.scatter(x, chance, marker="_", s=80, color="black", label="chance (object area)", zorder=3)
    step = _tick_step(len(units))
    ax.set_xticks(x[::step], [str(int(u)) for u in units[::step]], fontsize=9, rotation=90)
    ax.set_xlim(-0.7, len(units) - 0.3)
    top = max(float(result.on_object.max()), float(result.chance.max()))
    ax.set_ylim(0, _axis_top(top))
    ax.set_xlabel("memory unit" + (" (sorted by on-object / chance)" if sort else ""))
    ax.set_ylabel("fraction of attention mass")
    ax.legend(fontsize=10, loc="upper right")
    ax.set_title(title or f"where the memory units of {result.layer} look", fontsize=11)
    return fig


@dataclass
class AttentionEntropy:
    """Entropies (nats) of an attention map ``A: (..., N, S)``.

    token: (..., N) entropy of each token's weights over the S units (at most log S);
    unit: (..., S) entropy of each unit's column over the N positions, normalised to sum 1
    (at most log N). Low = peaked, log S or log N = uniform.
    """

    token: torch.Tensor
    unit: torch.Tensor
    memory_units: int
    positions: int

    def summary(self) -> dict[str, float]:
        """Mean entropies and their uniform maxima, as plain floats."""
        return {
            "token_mean": float(self.token.mean()),
            "token_max": math.log(self.memory_units),
            "unit_mean": float(self.unit.mean()),
            "unit_max": math.log(self.positions),
        }


def _entropy(p: torch.Tensor, dim: int) -> torch.Tensor:
    p = p / p.sum(dim=dim, keepdim=True).clamp_min(1e-12)
    return -torch.special.xlogy(p, p).sum(dim=dim)


def attention_entropy(attn: torch.Tensor) -> AttentionEntropy:
    """attn (..., N, S), non-negative -> entropies per token (..., N) and per unit (..., S).

    Rows and columns are renormalised to sum to 1 before taking ``-sum p log p``, so the
    same function compares the double normalisation with a plain softmax over S.
    """
    attn = check_float_tensor(attn, "attn").detach().float()
    if attn.ndim < 2:
        raise ValueError(f"expected attn of shape (..., N, S), got {tuple(attn.shape)}")
    if attn.numel() and attn.min() < 0:
        raise ValueError(f"expected non-negative attention weights, got a minimum of {attn.min().item():.3g}")
    return AttentionEntropy(_entropy(attn, -1), _entropy(attn, -2), attn.shape[-1], attn.shape[-2])


def entropy_by_norm(
    models: Mapping[str, nn.Module],
    dataset: ImageDataset,
    *,
    layer: str | None = None,
    limit: int | None = 512,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, AttentionEntropy]:
    """Entropies of external attention per model, e.g. ``{"double": m1, "softmax": m2}``.

    Runs each model over the first ``limit`` images (None: all) and collects
    :func:`attention_entropy` of ``layer`` (default: each model's deepest external-attention
    layer) for every image and head: ``token`` is (M, N), ``unit`` is (M, S).
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError("expected models as a non-empty dict name -> model, e.g. {'double': m1, 'softmax': m2}")
    if limit is not None:
        dataset = dataset.subset(slice(0, check_positive_int(limit, "limit")))
    result = {}
    for name, model in models.items():
        chosen = check_layer(model, layer, "external")
        tokens, units = [], []
        batches = attention_batches(
            model, dataset, chosen, batch_size=batch_size, device=device, progress=progress, desc=f"entropy {name}"
        )
        for batch in batches:
            attn = batch.attn.float().cpu()
            entropy = attention_entropy(attn.reshape(-1, *attn.shape[-2:]))
            tokens.append(entropy.token)
            units.append(entropy.unit)
        token, unit = torch.cat(tokens), torch.cat(units)
        result[name] = AttentionEntropy(token, unit, unit.shape[-1], token.shape[-1])
    return result


def plot_entropy_by_norm(result: Mapping[str, AttentionEntropy], *, bins: int = 40) -> Figure:
    """Two histograms: token entropies over units, unit entropies over positions, per model.

    Dashed lines mark the uniform distribution (log S, log N).
    """
    fig = Figure(figsize=(8.0, 3.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    for name, entropy in result.items():
        left.hist(entropy.token.flatten().numpy(), bins=bins, alpha=0.6, label=name, density=True)
        right.hist(entropy.unit.flatten().numpy(), bins=bins, alpha=0.6, label=name, density=True)
    any_entropy = next(iter(result.values()))
    left.axvline(math.log(any_entropy.memory_units), color="black", linestyle="--", linewidth=1, label="uniform")
    right.axvline(math.log(any_entropy.positions), color="black", linestyle="--", linewidth=1, label="uniform")
    left.set_title("each token over the S units", fontsize=10)
    right.set_title("each unit over the N positions", fontsize=10)
    for ax in (left, right):
        ax.set_xlabel("entropy (nats)")
        ax.legend(fontsize=9)
    left.set_ylabel("density")
    return fig


def class_selectivity(mass: torch.Tensor) -> torch.Tensor:
    """Class selectivity of each memory unit (Morcos et al., 2018): mass (S, C) -> (S,) in [0, 1].

    ``(m_max - m_rest) / (m_max + m_rest)``, with ``m_max`` the unit's mass on its preferred
    class and ``m_rest`` its mean mass on the other classes (classes with NaN mass left out):
    0 when a unit serves every class alike, 1 when it serves one class only. Finite data give
    even random units some selectivity, so compare with an untrained copy of the model.
    """
    mass = check_float_tensor(mass, "mass").detach().cpu().double()
    if mass.ndim != 2 or mass.shape[1] < 2:
        raise ValueError(f"expected mass of shape (S, C) with C >= 2 classes, got {tuple(mass.shape)}")
    present = ~mass.isnan().all(dim=0)
    mass = mass[:, present]
    if mass.shape[1] < 2:
        raise ValueError("expected mass for at least 2 classes that occur in the data, got fewer")
    best = mass.max(dim=1).values
    rest = (mass.sum(dim=1) - best) / (mass.shape[1] - 1)
    return ((best - rest) / (best + rest).clamp_min(1e-12)).float()


def plot_class_selectivity(
    selectivity: Mapping[str, torch.Tensor], *, title: str | None = None, ax: Axes | None = None
) -> Figure:
    """Each model's units sorted by class selectivity, one line per model (e.g. untrained, one epoch, trained).

    selectivity: {name: (S,)} from :func:`class_selectivity`; the legend gives each median.
    ``ax``: draw into this axes (e.g. one panel of a row) and return its figure. The y axis
    runs from 0 to a little above the largest value (at most 1), so small selectivities stay visible.
    """
    if not isinstance(selectivity, Mapping) or not selectivity:
        raise TypeError("expected selectivity as a non-empty dict name -> (S,) tensor, e.g. {'trained': values}")
    if ax is None:
        fig = Figure(figsize=(5.5, 3.2), layout="constrained")
        ax = fig.subplots()
    top = 0.0
    for name, values in selectivity.items():
        values = check_float_tensor(values, f"selectivity[{name!r}]").detach().cpu().flatten()
        ranked = values.sort(descending=True).values.numpy()
        top = max(top, float(ranked[0]) if len(ranked) else 0.0)
        ax.plot(np.arange(1, len(ranked) + 1), ranked, marker=".", label=f"{name} (median {values.median():.2f})")
    ax.set_xlabel("memory unit, most selective first")
    ax.set_ylabel("class selectivity")
    ax.set_ylim(0, _axis_top(top))
    ax.legend(fontsize=10)
    ax.set_title(title or "how much each memory unit prefers one class", fontsize=11)
    return ax.figure
