"""Pieces shared by the models: input normalisation and the transformer-style block."""

from __future__ import annotations

import torch
from torch import nn

from eaviz._checks import check_image_tensor, check_images

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """Images in [0, 1] -> standardised images, so callers can feed raw pixels.

    images: (B, 3, H, W) -> (B, 3, H, W).
    Shape and dtype are checked on every call (free: no data is read). The value range is
    checked only in eval mode, where users feed their own images: reading the values
    forces a host sync, which a training step on a GPU must not pay for (its batches come
    from :class:`~eaviz.data.BatchLoader`, in [0, 1] by construction).
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.training:
            check_image_tensor(images, "images", self.mean.shape[1])
        else:
            check_images(images)
        return (images - self.mean) / self.std


class MixerBlock(nn.Module):
    """Pre-norm block: ``x + mixer(norm(x))`` then ``x + mlp(norm(x))``.

    x: (B, N, d) -> (B, N, d). The mixer is any token mixer, e.g. ``make_mixer("external", dim)``.
    """

    def __init__(self, dim: int, mixer: nn.Module, *, mlp_ratio: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * mlp_ratio, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ProjectedMixer(nn.Module):
    """Linear in, a token mixer, linear out: x (B, N, d) -> (B, N, d); attn as the mixer returns it.

    Gives every mixer the same pair of projections. External attention has no projections of
    its own while self-attention has its q/k/v and output projections; wrapping both (and
    ``none``) makes the extra capacity around the mixer the same for all, as in the EANet block.
    """

    def __init__(self, dim: int, mixer: nn.Module) -> None:
        super().__init__()
        self.proj_in = nn.Linear(dim, dim)
        self.mixer = mixer
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        if return_attn:
            y, attn = self.mixer(self.proj_in(x), return_attn=True)
            return self.proj_out(y), attn
        return self.proj_out(self.mixer(self.proj_in(x)))


def conv_bn_act(c_in: int, c_out: int, *, stride: int = 1, act: type[nn.Module] = nn.GELU) -> nn.Sequential:
    """3x3 convolution, batch norm, activation: (B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), act())
