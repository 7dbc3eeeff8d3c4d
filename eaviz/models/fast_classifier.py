"""A fast CIFAR classifier: an airbench-style convolutional trunk with a token mixer by name.

The trunk follows Keller Jordan's airbench (94% on CIFAR-10 in a few GPU-seconds):

    images (B, 3, 32, 32) in [0, 1]
      -> normalise -> 2x2 conv, frozen to whiten the data's 2x2 patches (24 channels, +/- pairs) -> GELU
      -> group 64  (3x3 conv, maxpool, BN, GELU, 3x3 conv, BN, GELU)     (B, 64, 16, 16)
      -> group 256                                                         (B, 256, 8, 8)
      -> mixer block                                                       (B, 256, 8, 8)
      -> group 256                                                         (B, 256, 4, 4)
      -> mixer block                                                       (B, 256, 4, 4)
      -> global max pool -> linear (no bias) -> times 1/9                   (B, num_classes)

A mixer block is the EANet block with the mixer swapped by name: 1x1 conv in, the token
mixer over the H*W positions, 1x1 conv + BN out, residual. Every mixer, ``"none"`` included,
gets the same two projections, so the models differ only in how tokens are mixed.
The BatchNorms of the trunk keep their scale fixed at 1 and learn only a bias (the recipe in
:mod:`eaviz.fast_recipe` gives those biases a larger learning rate).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
from einops import rearrange
from torch import nn

from eaviz._checks import check_feature_map, check_images, check_positive_int
from eaviz.attention import MIXERS, make_mixer
from eaviz.models.common import CIFAR_MEAN, CIFAR_STD, Normalize

MIXER_STAGES = (2, 3)  # the groups (1-based) after which a mixer block may sit: 8x8 and 4x4 maps


@dataclass
class FastClassifierConfig:
    """Settings of a :class:`FastClassifier`; a checkpoint stores them as a dict."""

    num_classes: int = 10
    widths: tuple[int, int, int] = (64, 256, 256)
    mixer: str = "external"  # a name in eaviz.attention.MIXERS: "external", "multihead_external", "self", "none"
    mixer_stages: tuple[int, ...] = (2, 3)  # a mixer block after group 2 (8x8 tokens) and group 3 (4x4)
    heads: int = 4
    memory_units: int = 64
    expansion: int = 1
    norm: str = "double"
    whiten_kernel: int = 2
    bn_momentum: float = 0.6  # airbench's convention: the weight of the old running statistics
    logit_scale: float = 1 / 9
    mean: tuple[float, float, float] = CIFAR_MEAN
    std: tuple[float, float, float] = CIFAR_STD

    def __post_init__(self) -> None:
        self.widths = tuple(self.widths)
        self.mixer_stages = tuple(self.mixer_stages)
        MIXERS.resolve(self.mixer)
        if len(self.widths) != 3:
            raise ValueError(f"expected widths of three groups, got {self.widths}")
        for width in self.widths:
            check_positive_int(width, "widths")
        if any(stage not in MIXER_STAGES for stage in self.mixer_stages):
            raise ValueError(f"expected mixer_stages from {MIXER_STAGES}, got {self.mixer_stages}")

    def mixer_settings(self) -> dict:
        """The fields that ``self.mixer`` takes as keyword arguments: ``{"memory_units": 64, "norm": "double"}``."""
        return MIXERS.settings(self.mixer, vars(self))

    def to_dict(self) -> dict:
        return {"kind": "fast_classifier", **asdict(self)}


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with its scale frozen at 1 and a learnable bias, as in airbench.

    ``momentum`` is the weight of the old running statistics (PyTorch counts the other way).
    """

    def __init__(self, channels: int, momentum: float = 0.6) -> None:
        super().__init__(channels, eps=1e-12, momentum=1 - momentum)
        self.weight.requires_grad_(False)


class Conv(nn.Conv2d):
    """3x3 'same' convolution without bias, initialised so its first filters pass their input channel through.

    (B, c_in, H, W) -> (B, c_out, H, W). The identity ("dirac") start lets signals reach deep
    layers on the very first steps.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            nn.init.dirac_(self.weight[: min(self.in_channels, self.out_channels)])


class ConvGroup(nn.Sequential):
    """conv, maxpool, BN, GELU, conv, BN, GELU: (B, c_in, H, W) -> (B, c_out, H/2, W/2)."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float) -> None:
        super().__init__(
            Conv(c_in, c_out),
            nn.MaxPool2d(2),
            BatchNorm(c_out, bn_momentum),
            nn.GELU(),
            Conv(c_out, c_out),
            BatchNorm(c_out, bn_momentum),
            nn.GELU(),
        )


class MixerBlock2d(nn.Module):
    """1x1 conv in, a token mixer over the H*W positions, 1x1 conv + BN out, residual.

    x: (B, C, H, W) -> (B, C, H, W); the mixer sees tokens (B, H*W, C) and, asked with
    ``return_attn=True``, the block returns its map too (for ``"none"``: None).
    The output BN starts at PyTorch's (and EANet's) scale 1. A zero start, the usual trick
    that makes a residual block the identity at first, left the mixers unused: their output
    scale stayed near 0 for the whole run (chapter 9 shows the measurement).
    """

    def __init__(self, channels: int, mixer: str, **mixer_kwargs) -> None:
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        self.conv_in = nn.Conv2d(channels, channels, 1)
        self.mixer = make_mixer(mixer, channels, **mixer_kwargs)
        self.conv_out = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn_out = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        check_feature_map(x, self.channels)
        h, w = x.shape[-2:]
        tokens = rearrange(self.conv_in(x), "b c h w -> b (h w) c")
        if return_attn:
            tokens, attn = self.mixer(tokens, return_attn=True)
        else:
            tokens, attn = self.mixer(tokens), None
        y = x + self.bn_out(self.conv_out(rearrange(tokens, "b (h w) c -> b c h w", h=h, w=w)))
        return (y, attn) if return_attn else y


class FastClassifier(nn.Module):
    """images: (B, 3, 32, 32) in [0, 1] -> logits: (B, num_classes).

    Call :func:`init_whitening` with training images before training: until then the first
    convolution is random (and frozen).
    """

    def __init__(self, config: FastClassifierConfig) -> None:
        super().__init__()
        self.config = config
        k = check_positive_int(config.whiten_kernel, "whiten_kernel")
        w1, w2, w3 = config.widths
        whiten_width = 2 * 3 * k * k
        self.normalize = Normalize(config.mean, config.std)
        # One extra row and column (for k=2) keep 32x32, so the groups give 16x16, 8x8, 4x4.
        self.pad = nn.ZeroPad2d((0, k - 1, 0, k - 1))
        self.whiten = nn.Conv2d(3, whiten_width, k, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.act = nn.GELU()
        groups = [
            ConvGroup(whiten_width, w1, config.bn_momentum),
            ConvGroup(w1, w2, config.bn_momentum),
            ConvGroup(w2, w3, config.bn_momentum),
        ]
        layers: list[tuple[str, nn.Module]] = []
        for stage, (group, width) in enumerate(zip(groups, config.widths), start=1):
            layers.append((f"group{stage}", group))
            if stage in config.mixer_stages:
                layers.append((f"mix{stage}", MixerBlock2d(width, config.mixer, **config.mixer_settings())))
        self.trunk = nn.Sequential(OrderedDict(layers))
        self.pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(w3, config.num_classes, bias=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, 32, 32) -> the last feature map (B, widths[-1], 4, 4)."""
        if images.ndim == 4 and tuple(images.shape[-2:]) != (32, 32):
            raise ValueError(f"expected images of shape (B, 3, 32, 32), got {tuple(images.shape)}")
        return self.trunk(self.act(self.whiten(self.pad(self.normalize(images)))))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(images))) * self.config.logit_scale

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by role: ``"norm_biases"`` (the trunk's BN biases),
        ``"whiten_bias"`` (the whitening convolution's bias), ``"mixers"`` (every mixer's own
        parameters, e.g. the memories, and its block's output BN) and ``"other"``."""
        blocks = [m for m in self.modules() if isinstance(m, MixerBlock2d)]
        groups = {
            "norm_biases": [m.bias for m in self.modules() if isinstance(m, BatchNorm)],
            "whiten_bias": [self.whiten.bias],
            "mixers": [p for b in blocks for p in [*b.mixer.parameters(), *b.bn_out.parameters()]],
        }
        taken = {id(p) for group in groups.values() for p in group}
        groups["other"] = [p for p in self.parameters() if p.requires_grad and id(p) not in taken]
        return groups


def patch_whitening(images: torch.Tensor, kernel: int, eps: float = 5e-4) -> torch.Tensor:
    """Filters that whiten the ``kernel x kernel`` patches of ``images``: (2 * 3k^2, 3, k, k).

    images: (n, 3, H, W) float, already normalised. With the eigen-decomposition
    ``E[p p^T] = V diag(lambda) V^T`` of the patches' second moments, filter i is
    ``v_i / sqrt(lambda_i + eps)``, largest eigenvalue first, followed by its negative
    (so that a GELU after it keeps both signs of every direction).
    """
    c = images.shape[1]
    patches = rearrange(images.unfold(2, kernel, 1).unfold(3, kernel, 1), "n c h w p q -> (n h w) (c p q)")
    moments = patches.T.double() @ patches.double() / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(moments)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    filters = (eigenvectors / torch.sqrt(eigenvalues.clamp_min(0) + eps)).T
    filters = rearrange(filters.float(), "o (c p q) -> o c p q", c=c, p=kernel)
    return torch.cat([filters, -filters])


@torch.no_grad()
def init_whitening(model: FastClassifier, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Set ``model.whiten`` to whiten the patches of ``images`` (n, 3, 32, 32), uint8 or float in [0, 1]."""
    if images.dtype == torch.uint8:
        images = images.float() / 255
    images = check_images(images.to(model.whiten.weight.device))
    filters = patch_whitening(model.normalize(images), model.config.whiten_kernel, eps)
    model.whiten.weight.copy_(filters)
    model.whiten.bias.zero_()
