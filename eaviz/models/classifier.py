"""Image classifiers whose token mixer is chosen by name.

A stem turns a (B, 3, H, W) image into a grid of tokens, blocks of (norm, mixer, norm, MLP)
mix them, and a linear head reads the mean token. Swapping ``mixer="self"`` for
``mixer="external"`` is the only change between the models the book compares.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from einops import rearrange
from einops.layers.torch import Rearrange
from torch import nn

from eaviz._checks import check_choice, check_positive_int
from eaviz.attention import MIXERS, make_mixer
from eaviz.models.common import CIFAR_MEAN, CIFAR_STD, MixerBlock, Normalize, ProjectedMixer, conv_bn_act

STEMS = ("conv", "patch")


@dataclass
class ClassifierConfig:
    """Settings of a :class:`Classifier`; a checkpoint stores them as a dict."""

    num_classes: int = 10  # read off the dataset by the CLI
    image_size: int = 32  # read off the dataset by the CLI
    stem: str = "conv"  # "conv": 3 conv layers; "patch": a linear layer on 4x4 patches (all-MLP)
    patch_size: int = 4  # the token grid is image_size / patch_size on a side
    dim: int = 128  # token dimension d
    depth: int = 4  # number of mixer blocks
    mixer: str = "external"  # a name in eaviz.attention.MIXERS: "external", "self", "multihead_external", "none"
    heads: int = 4  # heads of self-attention and multi-head external attention
    memory_units: int = 64  # memory units S of external attention
    expansion: int = 1  # multi-head EA widening; the released EAMLP uses 4, 1 keeps CPU training fast
    norm: str = "double"  # external attention: softmax over tokens then l1 over units ("double"), or softmax
    mixer_projections: bool = False  # wrap every mixer in the same linear in/out pair (a fair comparison)
    mlp_ratio: int = 2  # hidden width of each block's MLP, in multiples of dim
    dropout: float = 0.0  # dropout in the MLPs (and multi-head external attention)
    mean: tuple[float, float, float] = CIFAR_MEAN  # per-channel mean the model subtracts from images in [0, 1]
    std: tuple[float, float, float] = CIFAR_STD  # per-channel standard deviation the model divides by

    @classmethod
    def eamlp(cls, **overrides) -> "ClassifierConfig":
        """The EAMLP-style all-MLP classifier: patch stem and multi-head external attention."""
        return cls(**{"stem": "patch", "mixer": "multihead_external", "expansion": 4, **overrides})

    def __post_init__(self) -> None:
        check_choice(self.stem, STEMS, "stem")
        MIXERS.resolve(self.mixer)
        for name in ("num_classes", "image_size", "patch_size", "dim", "depth", "heads", "memory_units", "expansion"):
            check_positive_int(getattr(self, name), name)
        if self.image_size % self.patch_size:
            raise ValueError(f"expected patch_size to divide image_size={self.image_size}, got {self.patch_size}")
        if self.stem == "conv" and self.patch_size != 4:
            raise ValueError(f"the conv stem downsamples by 4; expected patch_size=4, got {self.patch_size}")

    def mixer_settings(self) -> dict:
        """The fields that ``self.mixer`` takes as keyword arguments: ``{"memory_units": 64, "norm": "double"}``."""
        return MIXERS.settings(self.mixer, vars(self))

    def to_dict(self) -> dict:
        return {"kind": "classifier", **asdict(self)}


def _stem(config: ClassifierConfig) -> nn.Module:
    """(B, 3, H, W) -> (B, dim, H / patch, W / patch)."""
    if config.stem == "patch":
        p = config.patch_size
        return nn.Sequential(
            Rearrange("b c (h p1) (w p2) -> b h w (p1 p2 c)", p1=p, p2=p),
            nn.Linear(3 * p * p, config.dim),
            Rearrange("b h w d -> b d h w"),
        )
    width = config.dim // 4
    return nn.Sequential(
        conv_bn_act(3, width), conv_bn_act(width, 2 * width, stride=2), conv_bn_act(2 * width, config.dim, stride=2)
    )


class Classifier(nn.Module):
    """images: (B, 3, H, W) in [0, 1] -> logits: (B, num_classes)."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.grid_size = config.image_size // config.patch_size
        self.normalize = Normalize(config.mean, config.std)
        self.stem = _stem(config)
        self.pos_embedding = nn.Parameter(torch.zeros(1, self.grid_size**2, config.dim))
        nn.init.trunc_normal_(self.pos_embedding, std=0.02)
        self.blocks = nn.Sequential(
            *(
                MixerBlock(config.dim, self._mixer(config), mlp_ratio=config.mlp_ratio, dropout=config.dropout)
                for _ in range(config.depth)
            )
        )
        self.norm = nn.LayerNorm(config.dim)
        # Tokens back to a (B, d, h, w) grid: the "last feature layer" that Grad-CAM reads.
        self.token_grid = Rearrange("b (h w) d -> b d h w", h=self.grid_size)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(config.dim, config.num_classes)

    @staticmethod
    def _mixer(config: ClassifierConfig) -> nn.Module:
        mixer = make_mixer(config.mixer, config.dim, **config.mixer_settings())
        return ProjectedMixer(config.dim, mixer) if config.mixer_projections else mixer

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) -> tokens after the last block: (B, N, d), N = grid_size**2."""
        size = self.config.image_size
        if images.ndim == 4 and tuple(images.shape[-2:]) != (size, size):
            raise ValueError(f"expected images of shape (B, 3, {size}, {size}), got {tuple(images.shape)}")
        grid = self.stem(self.normalize(images))
        tokens = rearrange(grid, "b d h w -> b (h w) d") + self.pos_embedding
        return self.norm(self.blocks(tokens))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.token_grid(self.features(images))))
