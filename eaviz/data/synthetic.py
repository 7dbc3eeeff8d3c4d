"""Procedural datasets that need no files: shapes and textures on a noisy background.

Every image is drawn from a seed, so a set is the same on every machine and takes well
under a second to make. Both sets know where their objects are (``masks``), which lets the
book check whether an attention map looks at the object.

* ``shapes``: one object per image, 10 classes (:data:`SHAPE_CLASSES`) -- solid shapes and
  striped or checkered patches, so a model has to tell outline and texture apart.
* ``shapes_seg``: up to ``max_objects`` objects per image, per-pixel labels with
  ``0 = background`` and one label per shape in :data:`SEGMENTATION_CLASSES`. A pixel inside
  a disc looks like a pixel inside a square; only context tells them apart.

Shapes are drawn in coordinates ``(u, v)`` centred on the object and measured in units of
its radius, so each shape is one short inequality.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F

from eaviz._checks import check_choice, check_positive_int
from eaviz.data.dataset import ImageDataset

Region = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _disc(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u**2 + v**2 <= 1


def _square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) <= 0.8


def _triangle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Apex at the top (v = -1), flat base at v = 0.75."""
    return (v <= 0.75) & (u.abs() <= 0.55 * (v + 1))


def _ring(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r2 = u**2 + v**2
    return (r2 <= 1) & (r2 >= 0.5**2)


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (torch.minimum(u.abs(), v.abs()) <= 0.3) & (torch.maximum(u.abs(), v.abs()) <= 1)


def _diamond(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u.abs() + v.abs() <= 1


def _ellipse(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u**2 + (v / 0.45) ** 2 <= 1


def _patch(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) <= 0.9


def _bands(t: torch.Tensor) -> torch.Tensor:
    """Alternating bands 0.4 radii wide: four to five across a patch."""
    return torch.remainder(torch.floor(t * 2.5), 2) == 0


def _horizontal_bands(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return _bands(v)


def _vertical_bands(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return _bands(u)


def _checkers(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return _bands(u) ^ _bands(v)


# name -> (region the object covers, pattern inside it painted in the object's colour;
# None = solid). The rest of a patterned region gets a second colour.
SHAPES: dict[str, tuple[Region, Region | None]] = {
    "disc": (_disc, None),
    "square": (_square, None),
    "triangle": (_triangle, None),
    "ring": (_ring, None),
    "cross": (_cross, None),
    "diamond": (_diamond, None),
    "ellipse": (_ellipse, None),
    "horizontal stripes": (_patch, _horizontal_bands),
    "vertical stripes": (_patch, _vertical_bands),
    "checkerboard": (_patch, _checkers),
}
SHAPE_CLASSES: list[str] = list(SHAPES)
SEGMENTATION_CLASSES: list[str] = ["background", "disc", "square", "triangle", "ring", "cross"]

# Shapes are tilted by at most this much (radians) so a square never turns into a diamond;
# the ellipse may point anywhere.
MAX_TILT = 0.25
SPINNING = ("ellipse",)
# Every shape fits in a circle of this many radii (a patch's corner is at 0.9 * sqrt(2)).
EXTENT = 1.3

SPLIT_SEEDS = {"train": 0, "val": 1}
DEFAULT_SIZES = {"shapes": {"train": 5000, "val": 1000}, "shapes_seg": {"train": 1000, "val": 200}}


def _uniform(g: torch.Generator, shape: tuple[int, ...], low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=g)


def _background(g: torch.Generator, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A base colour (n, 3) and a canvas (n, 3, size, size): that colour plus smooth blobs."""
    base = torch.rand(n, 3, generator=g)
    blobs = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(size, size), mode="bilinear")
    return base, base[:, :, None, None] + 0.3 * (blobs - 0.5)


def _contrasting(g: torch.Generator, base: torch.Tensor) -> torch.Tensor:
    """(n, 3) colours that differ from ``base`` by 0.35 to 0.65 in every channel."""
    return torch.remainder(base + _uniform(g, tuple(base.shape), 0.35, 0.65), 1.0)


def _random_placement(
    g: torch.Generator, kinds: torch.Tensor, names: list[str], size: int, radius_range: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centres (n, 2) in pixels, radii (n,) in pixels and angles (n,) that keep objects inside."""
    n = kinds.shape[0]
    radius = size * _uniform(g, (n,), *radius_range)
    margin = EXTENT * radius[:, None]
    centre = margin + torch.rand(n, 2, generator=g) * (size - 2 * margin)
    spins = torch.tensor([name in SPINNING for name in names])[kinds]
    angle = torch.where(spins, _uniform(g, (n,), 0, math.pi), _uniform(g, (n,), -MAX_TILT, MAX_TILT))
    return centre, radius, angle


def _draw(
    kinds: torch.Tensor,
    names: list[str],
    centre: torch.Tensor,
    radius: torch.Tensor,
    angle: torch.Tensor,
    size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise one object per image.

    kinds: (n,) index into ``names``; centre: (n, 2) as (x, y) pixels; radius, angle: (n,)
    -> region (n, size, size) bool, the pixels the object covers, and
       ink (n, size, size) bool, the part of the region painted in the object's main colour.
    """
    pixel = torch.arange(size, dtype=torch.float32) + 0.5
    dx = (pixel[None, None, :] - centre[:, 0, None, None]) / radius[:, None, None]
    dy = (pixel[None, :, None] - centre[:, 1, None, None]) / radius[:, None, None]
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    u, v = cos * dx + sin * dy, cos * dy - sin * dx

    region = torch.zeros(u.shape, dtype=torch.bool)
    ink = torch.zeros(u.shape, dtype=torch.bool)
    for k, name in enumerate(names):
        chosen = kinds == k
        inside, pattern = SHAPES[name]
        uk, vk = u[chosen], v[chosen]
        region[chosen] = inside(uk, vk)
        ink[chosen] = region[chosen] if pattern is None else region[chosen] & pattern(uk, vk)
    return region, ink


def _paint(
    canvas: torch.Tensor, region: torch.Tensor, ink: torch.Tensor, colour: torch.Tensor, second: torch.Tensor
) -> torch.Tensor:
    """canvas (n, 3, H, W) with ``colour`` (n, 3) on ``ink`` and ``second`` on the rest of ``region``."""
    fill = torch.where(ink[:, None], colour[:, :, None, None], second[:, :, None, None])
    return torch.where(region[:, None], fill, canvas)


def _to_uint8(g: torch.Generator, canvas: torch.Tensor, noise: float = 0.04) -> torch.Tensor:
    """Add pixel noise everywhere (objects too) and quantise to uint8."""
    noisy = canvas + noise * torch.randn(canvas.shape, generator=g)
    return (noisy.clamp(0, 1) * 255).round().to(torch.uint8)


def make_shapes(n: int, *, size: int = 32, seed: int = 0) -> ImageDataset:
    """``n`` images (n, 3, size, size) uint8 with one shape each; targets (n,) in 0..9.

    Classes come out balanced (each appears ``n // 10`` or ``n // 10 + 1`` times); masks
    (n, size, size) mark the object, including the second-colour parts of a patch.
    """
    check_positive_int(n, "n")
    check_positive_int(size, "size", minimum=16)
    g = torch.Generator().manual_seed(seed)
    names = SHAPE_CLASSES
    kinds = torch.randperm(n, generator=g) % len(names)
    base, canvas = _background(g, n, size)
    centre, radius, angle = _random_placement(g, kinds, names, size, (0.2, 0.32))
    region, ink = _draw(kinds, names, centre, radius, angle, size)
    colour = _contrasting(g, base)
    canvas = _paint(canvas, region, ink, colour, (colour + base) / 2)
    return ImageDataset(
        images=_to_uint8(g, canvas),
        targets=kinds,
        classes=list(names),
        masks=region,
        name="shapes",
        info={"seed": seed},
    )


def make_shapes_segmentation(n: int, *, size: int = 64, seed: int = 0, max_objects: int = 3) -> ImageDataset:
    """``n`` images (n, 3, size, size) uint8 with 1 to ``max_objects`` shapes each.

    targets (n, size, size) int64: 0 = background, k = ``SEGMENTATION_CLASSES[k]``; later
    objects cover earlier ones. masks = targets > 0.
    """
    check_positive_int(n, "n")
    check_positive_int(size, "size", minimum=16)
    check_positive_int(max_objects, "max_objects")
    g = torch.Generator().manual_seed(seed)
    names = SEGMENTATION_CLASSES[1:]
    count = torch.randint(1, max_objects + 1, (n,), generator=g)
    base, canvas = _background(g, n, size)
    targets = torch.zeros(n, size, size, dtype=torch.int64)
    for slot in range(max_objects):
        kinds = torch.randint(len(names), (n,), generator=g)
        centre, radius, angle = _random_placement(g, kinds, names, size, (0.1, 0.2))
        region, ink = _draw(kinds, names, centre, radius, angle, size)
        region &= (slot < count)[:, None, None]
        colour = _contrasting(g, base)
        canvas = _paint(canvas, region, ink, colour, colour)
        targets = torch.where(region, kinds[:, None, None] + 1, targets)
    return ImageDataset(
        images=_to_uint8(g, canvas),
        targets=targets,
        classes=list(SEGMENTATION_CLASSES),
        masks=targets > 0,
        name="shapes_seg",
        info={"seed": seed, "objects": count.tolist()},
    )


def _split_seed(split: str) -> int:
    return SPLIT_SEEDS[check_choice(split, sorted(SPLIT_SEEDS), "split")]


def load_shapes(split: str = "train", *, n: int | None = None, size: int = 32) -> ImageDataset:
    """The ``shapes`` set: split "train" (seed 0, 5000 images) or "val" (seed 1, 1000 images)."""
    seed = _split_seed(split)
    dataset = make_shapes(DEFAULT_SIZES["shapes"][split] if n is None else n, size=size, seed=seed)
    return replace(dataset, info={**dataset.info, "split": split})


def load_shapes_segmentation(
    split: str = "train", *, n: int | None = None, size: int = 64, max_objects: int = 3
) -> ImageDataset:
    """The ``shapes_seg`` set: split "train" (seed 0, 1000 images) or "val" (seed 1, 200 images)."""
    seed = _split_seed(split)
    n = DEFAULT_SIZES["shapes_seg"][split] if n is None else n
    dataset = make_shapes_segmentation(n, size=size, seed=seed, max_objects=max_objects)
    return replace(dataset, info={**dataset.info, "split": split})
