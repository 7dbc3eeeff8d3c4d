"""Attention blocks for feature maps: the EANet head block and its self-attention twin.

Both map ``x: (B, C, H, W) -> (B, C, H, W)`` with a residual connection and, with
``return_attn=True``, also return the attention map over the H*W positions. They are
registered by name in ``HEADS`` (with ``"none"``, the identity), where a segmenter finds them.
"""

from __future__ import annotations

from functools import partial

import torch
from einops import rearrange
from torch import nn

from eaviz._checks import check_feature_map, check_positive_int
from eaviz.attention import ExternalAttention
from eaviz.registry import Registry


class ExternalAttention2d(nn.Module):
    """The EANet block: 1x1 conv, external attention over positions, 1x1 conv + BN, residual, ReLU.

    x: (B, C, H, W) -> (B, C, H, W); attn: (B, H*W, S).
    External attention over pixels is exactly a 1x1 convolution to S channels, a
    double normalisation, and a 1x1 convolution back: ``ea.mk`` and ``ea.mv`` are those.
    """

    kind = "external"

    def __init__(self, channels: int, *, memory_units: int = 64, norm: str = "double") -> None:
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        self.conv_in = nn.Conv2d(channels, channels, 1)
        self.ea = ExternalAttention(channels, memory_units=memory_units, norm=norm)
        self.memory_units = self.ea.memory_units
        self.conv_out = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        check_feature_map(x, self.channels)
        h, w = x.shape[-2:]
        tokens = rearrange(self.conv_in(x), "b c h w -> b (h w) c")
        tokens, attn = self.ea(tokens, return_attn=True)
        y = self.conv_out(rearrange(tokens, "b (h w) c -> b c h w", h=h, w=w))
        y = torch.relu(y + x)
        return (y, attn) if return_attn else y


class NonLocal2d(nn.Module):
    """Non-local block (Wang et al., 2018): self-attention over all H*W positions.

    x: (B, C, H, W) -> (B, C, H, W); attn: (B, H*W, H*W).
    Queries, keys and values are 1x1 convolutions to ``channels // reduction`` channels; the
    output BN starts at zero so the block begins as the identity, as in the paper.
    """

    kind = "self"

    def __init__(self, channels: int, *, reduction: int = 2) -> None:
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        check_positive_int(reduction, "reduction")
        inner = max(1, channels // reduction)
        self.scale = inner**-0.5
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, inner, 1)
        self.conv_out = nn.Sequential(nn.Conv2d(inner, channels, 1, bias=False), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.conv_out[1].weight)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        check_feature_map(x, self.channels)
        h, w = x.shape[-2:]
        q, k, v = (rearrange(f(x), "b c h w -> b (h w) c") for f in (self.query, self.key, self.value))
        attn = (torch.einsum("bnc,bmc->bnm", q, k) * self.scale).softmax(dim=-1)
        out = rearrange(torch.einsum("bnm,bmc->bnc", attn, v), "b (h w) c -> b c h w", h=h, w=w)
        y = x + self.conv_out(out)
        return (y, attn) if return_attn else y


# The segmentation heads by name, like eaviz.attention.MIXERS. nn.Identity cannot declare its
# kind on its class, so it is given here: it has no map.
HEADS = Registry("head")
register_head = HEADS.register
register_head("external", ExternalAttention2d)
register_head("nonlocal", NonLocal2d)
register_head("none", nn.Identity, kind="none")


def make_head(name: str | type[nn.Module] | partial, channels: int, **kwargs) -> nn.Module:
    """Build a head from a registered name, a class or a partial: (B, C, H, W) -> (B, C, H, W)."""
    return HEADS.build(name, channels, **kwargs)
