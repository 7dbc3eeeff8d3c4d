"""Is a map more faithful than a reference? Paired AUC differences, with bootstrap intervals.

Deletion and insertion AUCs vary a lot from image to image, so two maps are compared on
the same images: for image ``i``, ``d_i = AUC(map_i) - AUC(reference_i)``. The table gives the
mean of ``d`` and a percentile-bootstrap interval over images (seeded). A deletion
difference below 0 or an insertion difference above 0, with an interval that excludes 0,
says the map beats the reference on these images, and nothing more.

:func:`auc_differences` compares maps with random maps of their own shape;
:func:`curve_differences` compares curves already computed (by
:func:`~eaviz.explain.faithfulness_curves`) with any one of them, e.g. random maps or a
centre prior, so each curve is computed once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from eaviz._checks import check_positive_int
from eaviz.explain.attribution import Target, frozen_eval, target_classes
from eaviz.explain.faithfulness import MODES, Curve, deletion_curve, mode_title
from eaviz.viz.record import model_device


@dataclass(frozen=True)
class AucDifference:
    """One row: ``method``'s mean AUC minus ``reference``'s over ``images`` paired images.

    ``low``/``high``: the bootstrap interval of ``difference`` at ``level``; ``auc`` and
    ``reference_auc``: the two means it is the difference of.
    """

    method: str
    mode: str
    difference: float
    low: float
    high: float
    auc: float
    reference_auc: float
    images: int
    level: float
    reference: str = "random"

    @property
    def better(self) -> bool:
        """The whole interval is on the good side of 0 (below for deletion, above for insertion)."""
        return self.high < 0 if self.mode == "deletion" else self.low > 0


def _bound(value: float) -> str:
    """An interval end to 3 decimals, or to as many more (up to 6) as it takes to show that a value
    near 0 is not 0: a check mark beside an end printed +0.000 would look like a tie."""
    for decimals in range(3, 7):
        text = f"{value:+.{decimals}f}"
        if value == 0 or float(text) != 0:
            return text
    return text


class AucTable(list):
    """A list of :class:`AucDifference` rows that prints (and renders in Jupyter) as two tables.

    One table per mode (deletion, then insertion), one line per method in each: its mean AUC,
    its mean difference from the reference and the interval of that difference, each in a
    column of its own so that no cell is wide enough to wrap on a page. The reference and its
    AUCs are named once, in the caption above the tables; a check mark flags the intervals
    that lie on the better side of 0.
    """

    def caption(self) -> str:
        if not self:
            return "no rows"
        references = list(dict.fromkeys(row.reference for row in self))
        own = {}  # mode -> the reference's AUCs; one value when every map shares the reference
        for row in self:
            own.setdefault(row.mode, set()).add(f"{row.reference_auc:.3f}")
        if len(references) == 1 and all(len(values) == 1 for values in own.values()):
            aucs = ", ".join(f"{mode} AUC {values.pop()}" for mode, values in own.items())
            reference = f"{references[0]} ({aucs})"
        else:
            reference = " and ".join(references) + " (for random: maps of each map's own shape)"
        level = self[0].level
        return (
            f"Reference: {reference}, {self[0].images} images. Difference: the map's AUC minus the "
            f"reference's, paired per image, with its {level:.0%} bootstrap interval; ✓: the whole interval "
            "lies on the better side of 0 (below for deletion, above for insertion)."
        )

    def header(self) -> tuple[str, ...]:
        level = self[0].level if self else 0.95
        return ("map", "AUC", "difference", f"{level:.0%} interval")

    def modes(self) -> list[str]:
        """The modes that have rows, deletion first."""
        return [mode for mode in MODES if any(row.mode == mode for row in self)]

    def rows(self, mode: str) -> list[tuple[str, ...]]:
        """The cells of one mode's table: (map, AUC, difference, interval), one tuple per method."""
        lines = []
        for row in self:
            if row.mode != mode:
                continue
            mark = " ✓" if row.better else ""
            interval = f"[{_bound(row.low)}, {_bound(row.high)}]{mark}"
            lines.append((row.method, f"{row.auc:.3f}", f"{row.difference:+.3f}", interval))
        return lines

    def __str__(self) -> str:
        parts = [self.caption()]
        for mode in self.modes():
            lines = [self.header(), *self.rows(mode)]
            widths = [max(len(cell) for cell in column) for column in zip(*lines)]
            table = "\n".join(
                "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines
            )
            parts.append(f"{mode_title(mode)}:\n{table}")
        return "\n\n".join(parts)

    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        parts = [self.caption()]
        for mode in self.modes():
            lines = [self.header(), ("---", "---:", "---:", "---"), *self.rows(mode)]
            table = "\n".join("| " + " | ".join(line) + " |" for line in lines)
            title = mode_title(mode)
            parts.append(f"**{title[0].upper() + title[1:]}**\n\n{table}")
        return "\n\n".join(parts)


def bootstrap_interval(
    values: torch.Tensor, *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (n,): resample n values with replacement."""
    generator = torch.Generator().manual_seed(seed)
    values = values.detach().double().cpu()
    picks = torch.randint(0, len(values), (resamples, len(values)), generator=generator)
    means = values[picks].mean(dim=1)
    low, high = torch.quantile(means, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=means.dtype))
    return float(low), float(high)


def _check_interval(level: float, resamples: int) -> None:
    check_positive_int(resamples, "resamples")
    if not 0 < level < 1:
        raise ValueError(f"expected level in (0, 1), e.g. 0.95, got {level}")


def _row(
    method: str, mode: str, auc: torch.Tensor, reference_auc: torch.Tensor, reference: str, **interval
) -> AucDifference:
    """Paired difference of two (B,) AUC vectors, with its bootstrap interval."""
    difference = auc.cpu() - reference_auc.cpu()
    low, high = bootstrap_interval(difference, **interval)
    return AucDifference(
        method,
        mode,
        float(difference.mean()),
        low,
        high,
        float(auc.mean()),
        float(reference_auc.mean()),
        len(difference),
        interval["level"],
        reference,
    )


def curve_differences(
    curves: Mapping[str, Mapping[str, Curve]],
    reference: str = "random",
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> AucTable:
    """Every method's AUC minus ``reference``'s, paired per image, with bootstrap intervals.

    curves: {method: {"deletion": Curve, "insertion": Curve}}, the output of
    :func:`~eaviz.explain.faithfulness_curves` on one batch of images, with ``reference``
    among its methods. Returns one row per other method and mode, in the order given.
    """
    _check_interval(level, resamples)
    if reference not in curves:
        raise ValueError(f"expected reference to be one of the methods {list(curves)}, got {reference!r}")
    table = AucTable()
    for name, pair in curves.items():
        if name == reference:
            continue
        for mode in MODES:
            auc, reference_auc = pair[mode].auc, curves[reference][mode].auc
            if auc.shape != reference_auc.shape:
                raise ValueError(
                    f"expected curves of the same images: {name!r} has {len(auc)} images, "
                    f"{reference!r} has {len(reference_auc)}"
                )
            table.append(_row(name, mode, auc, reference_auc, reference, level=level, resamples=resamples, seed=seed))
    return table


def auc_differences(
    model: nn.Module,
    images: torch.Tensor,
    maps_by_method: Mapping[str, torch.Tensor],
    target: Target = None,
    *,
    steps: int = 32,
    baseline: str = "blur",
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> AucTable:
    """Deletion and insertion AUC of each map minus that of random maps, paired per image, with intervals.

    images: (B, 3, H, W) in [0, 1]; maps_by_method: {name: (B, h, w)} (any resolution that
    :func:`~eaviz.explain.deletion_curve` takes). Each map is compared with uniform random
    maps of its own shape (drawn from ``seed``), so both move pixels in blocks of the same
    size. ``target``: the class scored (default: the prediction on the clean images, the same
    for every method). Returns one row per method and mode, in the order given.
    """
    _check_interval(level, resamples)
    if not maps_by_method:
        raise ValueError("expected at least one map in maps_by_method, got none")
    if len(images) < 2:
        raise ValueError(f"expected at least 2 images to pair, got {len(images)}")
    with frozen_eval(model):
        target = target_classes(model, images.to(model_device(model)), target).cpu()
    curve = {"steps": steps, "baseline": baseline}
    interval = {"level": level, "resamples": resamples, "seed": seed}
    random_auc: dict[tuple[tuple[int, ...], str], torch.Tensor] = {}
    table = AucTable()
    for name, maps in maps_by_method.items():
        shape = tuple(maps.shape)
        for mode in MODES:
            if (shape, mode) not in random_auc:
                noise = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
                random_auc[shape, mode] = deletion_curve(model, images, noise, target, mode=mode, **curve).auc
            auc = deletion_curve(model, images, maps, target, mode=mode, **curve).auc
            table.append(_row(name, mode, auc, random_auc[shape, mode], "random", **interval))
    return table
