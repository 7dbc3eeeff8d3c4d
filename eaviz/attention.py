"""Token mixers: self-attention and external attention.

Every mixer maps ``x: (B, N, d) -> (B, N, d)``. Called with ``return_attn=True`` it returns
``(y, attn)`` so that the attention map is always available without hooks.

External attention (Guo et al., 2023) replaces the N x N map of self-attention by an N x S
map against S learnable memory units shared by the whole dataset::

    A = norm(F M_k^T)        (B, N, S)
    F_out = A M_v            (B, N, d)

``M_k`` and ``M_v`` are the weights of two bias-free linear layers, so the whole operator
costs O(d S N) instead of O(d N^2).

Each mixer class declares ``kind`` ("self", "external" or "none": what its map is over) and
is registered by name in ``MIXERS``; models build them with :func:`make_mixer`.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from eaviz._checks import check_choice, check_divisible, check_positive_int, check_tokens
from eaviz.registry import Registry

NORMS = ("double", "softmax")


def double_normalization(logits: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """The paper's norm: softmax over the N tokens, then l1 over the S memory units.

    logits: (..., N, S) -> attn: (..., N, S), each token's weights over S sum to 1.
    """
    attn = logits.softmax(dim=-2)
    return attn / (eps + attn.sum(dim=-1, keepdim=True))


def normalize_attention(logits: torch.Tensor, norm: str) -> torch.Tensor:
    """Apply ``norm`` ("double" or "softmax" over S) to logits of shape (..., N, S)."""
    if norm == "double":
        return double_normalization(logits)
    return logits.softmax(dim=-1)


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention.

    x: (B, N, d) -> (B, N, d); attn: (B, heads, N, N).
    ``fused=True`` uses ``F.scaled_dot_product_attention`` (same numbers, less memory);
    ``return_attn=True`` always takes the plain path, which builds the N x N map.
    """

    kind = "self"

    def __init__(self, dim: int, *, heads: int = 1, fused: bool = True) -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        check_divisible(dim, heads)
        self.heads = heads
        self.fused = fused
        self.scale = (dim // heads) ** -0.5
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        check_tokens(x, self.dim)
        q, k, v = rearrange(self.to_qkv(x), "b n (three h e) -> three b h n e", three=3, h=self.heads)
        if self.fused and not return_attn:
            out = F.scaled_dot_product_attention(q, k, v)
            attn = None
        else:
            attn = (torch.einsum("bhne,bhme->bhnm", q, k) * self.scale).softmax(dim=-1)
            out = torch.einsum("bhnm,bhme->bhne", attn, v)
        y = self.proj(rearrange(out, "b h n e -> b n (h e)"))
        return (y, attn) if return_attn else y


class ExternalAttention(nn.Module):
    """External attention: two bias-free linear layers and a normalisation.

    x: (B, N, d) -> (B, N, d); attn: (B, N, S).
    ``mk`` (d -> S) holds the key memory ``M_k`` (S x d) as its weight, ``mv`` (S -> d) the
    value memory ``M_v`` (d x S stored, i.e. M_v^T), so ``attn = norm(x @ mk.weight.T)`` and
    ``y = attn @ mv.weight.T``.

    Initialisation: ``M_k`` is drawn from N(0, 2 / S) (He init over the S output units, the
    rule EANet's released code applies to its first layer) and ``M_v`` starts equal to it, so
    the stored ``mv.weight`` (d x S) starts as ``mk.weight.T``. In the released code the two
    layers share one tensor at the start, which its init loop redraws with std sqrt(2 / d);
    chapter 5 of the book shows the difference.
    """

    kind = "external"

    def __init__(self, dim: int, *, memory_units: int = 64, norm: str = "double") -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.memory_units = check_positive_int(memory_units, "memory_units")
        self.norm = check_choice(norm, NORMS, "norm")
        self.mk = nn.Linear(dim, memory_units, bias=False)
        self.mv = nn.Linear(memory_units, dim, bias=False)
        nn.init.normal_(self.mk.weight, std=math.sqrt(2.0 / memory_units))
        with torch.no_grad():
            self.mv.weight.copy_(self.mk.weight.t())

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        check_tokens(x, self.dim)
        attn = normalize_attention(self.mk(x), self.norm)  # (B, N, S)
        y = self.mv(attn)  # (B, N, d)
        return (y, attn) if return_attn else y


class MultiHeadExternalAttention(nn.Module):
    """Multi-head external attention, the mixer of EAMLP.

    x: (B, N, d) -> (B, N, d); attn: (B, heads * expansion, N, S).
    A query projection widens the tokens by ``expansion`` and splits them into
    ``heads * expansion`` heads; every head attends to the same shared memories ``mk``/``mv``
    with double normalisation; an output projection mixes the heads back to ``d``.
    The released EAMLP code uses ``expansion=4`` with 256 / 4 = 64 memory units, and gives its
    memory layers biases: the ``mk`` bias cancels under double normalisation and the ``mv``
    bias folds into ``proj``, so they are left out here (chapter 7, exercise 1).
    """

    kind = "external"

    def __init__(
        self,
        dim: int,
        *,
        heads: int = 8,
        memory_units: int = 64,
        expansion: int = 4,
        norm: str = "double",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.memory_units = check_positive_int(memory_units, "memory_units")
        check_positive_int(expansion, "expansion")
        check_divisible(dim, heads)
        self.heads = heads * expansion
        self.norm = check_choice(norm, NORMS, "norm")
        head_dim = dim // heads
        self.to_queries = nn.Linear(dim, dim * expansion)
        self.mk = nn.Linear(head_dim, memory_units, bias=False)
        self.mv = nn.Linear(memory_units, head_dim, bias=False)
        nn.init.normal_(self.mk.weight, std=math.sqrt(2.0 / memory_units))
        with torch.no_grad():
            self.mv.weight.copy_(self.mk.weight.t())
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim * expansion, dim)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        check_tokens(x, self.dim)
        q = rearrange(self.to_queries(x), "b n (h e) -> b h n e", h=self.heads)
        attn = normalize_attention(self.mk(q), self.norm)  # (B, heads, N, S)
        out = self.mv(self.dropout(attn))  # (B, heads, N, e)
        y = self.proj(rearrange(out, "b h n e -> b n (h e)"))
        return (y, attn) if return_attn else y


class NoMixer(nn.Module):
    """The identity: no token mixing at all, the baseline. x: (B, N, d) -> (B, N, d); attn: None.

    Inside a pre-norm block it makes ``x + norm(x)``: each token is still transformed on its
    own, but no token ever sees another before the final pooling.
    """

    kind = "none"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim")

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        check_tokens(x, self.dim)
        return (x, None) if return_attn else x


# The token mixers by name. A new one is its class (with ``kind``) and one line here or in your
# own code: ``register_mixer("mine", MyMixer)``. See eaviz.registry for what ``kind`` promises.
MIXERS = Registry("mixer")
register_mixer = MIXERS.register
register_mixer("self", SelfAttention)
register_mixer("external", ExternalAttention)
register_mixer("multihead_external", MultiHeadExternalAttention)
register_mixer("none", NoMixer)


def make_mixer(name: str | type[nn.Module] | partial, dim: int, **kwargs) -> nn.Module:
    """Build a token mixer from a registered name, a class or a partial of one.

    ``make_mixer("external", dim=128, memory_units=64)``; ``make_mixer(partial(SelfAttention, fused=False), 128)``.
    """
    return MIXERS.build(name, dim, **kwargs)
