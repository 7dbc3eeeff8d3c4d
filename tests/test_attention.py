"""Specs for the token mixers in eaviz.attention: each one against its equation, then its contracts."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from eaviz.attention import (
    MIXERS,
    ExternalAttention,
    MultiHeadExternalAttention,
    NoMixer,
    SelfAttention,
    double_normalization,
    make_mixer,
)

DIM = 16


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tokens(batch: int = 2, n: int = 7, dim: int = DIM) -> torch.Tensor:
    return torch.randn(batch, n, dim)


def mixer(name: str, **kwargs) -> torch.nn.Module:
    """A small mixer of each kind, in eval mode (no dropout)."""
    defaults = {
        "self": {"heads": 2},
        "external": {"memory_units": 8},
        "multihead_external": {"heads": 2, "memory_units": 8},
    }
    return make_mixer(name, DIM, **{**defaults.get(name, {}), **kwargs}).eval()


def forward_flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops()


# The equations, written out with einsum and the module's own weights.


def self_attention_equation(module: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d_head)) V per head, heads concatenated, then the output projection."""
    h = module.heads
    e = DIM // h
    qkv = torch.einsum("bnd,od->bno", x, module.to_qkv.weight)
    q, k, v = (qkv[..., i * DIM : (i + 1) * DIM].reshape(x.shape[0], x.shape[1], h, e) for i in range(3))
    attn = torch.softmax(torch.einsum("bnhe,bmhe->bhnm", q, k) / e**0.5, dim=-1)
    out = torch.einsum("bhnm,bmhe->bnhe", attn, v).reshape(x.shape)
    return torch.einsum("bnd,od->bno", out, module.proj.weight) + module.proj.bias


def double_norm_equation(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the tokens (axis -2), then divide by the sum over the memory units (axis -1)."""
    e = torch.exp(logits - logits.amax(dim=-2, keepdim=True))
    a = e / e.sum(dim=-2, keepdim=True)
    return a / a.sum(dim=-1, keepdim=True)


def external_attention_equation(module: ExternalAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A = norm(F M_k^T), F_out = A M_v with M_k: (S, d) and M_v: (S, d)."""
    m_k = module.mk.weight  # (S, d)
    m_v = module.mv.weight.T  # (S, d)
    logits = torch.einsum("bnd,sd->bns", x, m_k)
    attn = double_norm_equation(logits) if module.norm == "double" else torch.softmax(logits, dim=-1)
    return torch.einsum("bns,sd->bnd", attn, m_v), attn


def multihead_external_attention_equation(module: MultiHeadExternalAttention, x: torch.Tensor) -> torch.Tensor:
    h = module.heads
    q = torch.einsum("bnd,od->bno", x, module.to_queries.weight) + module.to_queries.bias
    q = q.reshape(x.shape[0], x.shape[1], h, -1)  # (B, N, heads, e)
    attn = double_norm_equation(torch.einsum("bnhe,se->bhns", q, module.mk.weight))
    out = torch.einsum("bhns,es->bnhe", attn, module.mv.weight).reshape(x.shape[0], x.shape[1], -1)
    return torch.einsum("bnf,of->bno", out, module.proj.weight) + module.proj.bias


def test_self_attention_matches_its_equation():
    module = SelfAttention(DIM, heads=2, fused=False)
    x = tokens()
    torch.testing.assert_close(module(x), self_attention_equation(module, x), atol=1e-5, rtol=1e-5)


def test_fused_self_attention_matches_its_equation():
    module = SelfAttention(DIM, heads=2, fused=True)
    x = tokens()
    torch.testing.assert_close(module(x), self_attention_equation(module, x), atol=1e-5, rtol=1e-5)


def test_fused_and_plain_self_attention_agree():
    plain = SelfAttention(DIM, heads=4, fused=False)
    fused = SelfAttention(DIM, heads=4, fused=True)
    fused.load_state_dict(plain.state_dict())
    x = tokens(n=33)
    torch.testing.assert_close(fused(x), plain(x), atol=1e-5, rtol=0)


def test_self_attention_returns_its_map_even_when_fused():
    y, attn = SelfAttention(DIM, heads=2, fused=True)(tokens(n=5), return_attn=True)
    assert y.shape == (2, 5, DIM)
    assert attn.shape == (2, 2, 5, 5)


def test_self_attention_rows_sum_to_one():
    _, attn = SelfAttention(DIM, heads=2)(tokens(), return_attn=True)
    torch.testing.assert_close(attn.sum(dim=-1), torch.ones(2, 2, 7))


def test_external_attention_matches_its_equation_with_double_norm():
    module = ExternalAttention(DIM, memory_units=8, norm="double")
    x = tokens()
    y, attn = module(x, return_attn=True)
    y_ref, attn_ref = external_attention_equation(module, x)
    torch.testing.assert_close(attn, attn_ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)


def test_external_attention_matches_its_equation_with_softmax_norm():
    module = ExternalAttention(DIM, memory_units=8, norm="softmax")
    x = tokens()
    y, attn = module(x, return_attn=True)
    y_ref, attn_ref = external_attention_equation(module, x)
    torch.testing.assert_close(attn, attn_ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)


def test_multihead_external_attention_matches_its_equation():
    module = MultiHeadExternalAttention(DIM, heads=2, memory_units=8, expansion=4).eval()
    x = tokens()
    torch.testing.assert_close(module(x), multihead_external_attention_equation(module, x), atol=1e-5, rtol=1e-5)


def test_double_norm_gives_each_token_weights_over_memory_units_summing_to_one():
    _, attn = ExternalAttention(DIM, memory_units=8)(tokens(), return_attn=True)
    assert attn.shape == (2, 7, 8)
    torch.testing.assert_close(attn.sum(dim=-1), torch.ones(2, 7))


def test_double_norm_first_takes_a_softmax_over_tokens_for_each_memory_unit():
    module = ExternalAttention(DIM, memory_units=8)
    x = tokens()
    _, attn = module(x, return_attn=True)
    before_l1 = module.mk(x).softmax(dim=-2)
    torch.testing.assert_close(before_l1.sum(dim=-2), torch.ones(2, 8))
    torch.testing.assert_close(attn, before_l1 / before_l1.sum(dim=-1, keepdim=True))


def test_double_normalization_works_on_any_leading_axes():
    logits = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(double_normalization(logits), double_norm_equation(logits))


def test_softmax_norm_sums_over_memory_units():
    module = ExternalAttention(DIM, memory_units=8, norm="softmax")
    x = tokens()
    _, attn = module(x, return_attn=True)
    torch.testing.assert_close(attn, module.mk(x).softmax(dim=-1))
    torch.testing.assert_close(attn.sum(dim=-1), torch.ones(2, 7))


def test_multihead_external_attention_map_has_one_double_normed_map_per_head():
    _, attn = MultiHeadExternalAttention(DIM, heads=2, memory_units=8, expansion=4)(tokens(), return_attn=True)
    assert attn.shape == (2, 2 * 4, 7, 8)
    torch.testing.assert_close(attn.sum(dim=-1), torch.ones(2, 8, 7))


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_mixer_keeps_token_shape(name):
    x = tokens()
    assert mixer(name)(x).shape == x.shape


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_mixer_output_for_one_sample_does_not_depend_on_the_rest_of_the_batch(name):
    module = mixer(name)
    x = tokens(batch=3)
    alone = module(x[1:2])
    x[0] += 10.0
    x[2] = torch.randn_like(x[2])
    torch.testing.assert_close(module(x)[1:2], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["self", "external", "multihead_external"])
def test_mixer_is_equivariant_to_token_permutation(name):
    module = mixer(name)
    x = tokens()
    perm = torch.randperm(x.shape[1])
    torch.testing.assert_close(module(x[:, perm]), module(x)[:, perm], atol=1e-5, rtol=1e-5)


def test_plain_self_attention_map_permutes_with_the_tokens():
    module = SelfAttention(DIM, heads=2, fused=False)
    x = tokens()
    perm = torch.randperm(x.shape[1])
    _, attn = module(x, return_attn=True)
    _, attn_perm = module(x[:, perm], return_attn=True)
    torch.testing.assert_close(attn_perm, attn[:, :, perm][:, :, :, perm])


@pytest.mark.parametrize("name", ["external", "multihead_external"])
def test_gradients_reach_both_memories(name):
    module = mixer(name)
    module(tokens()).square().sum().backward()
    assert module.mk.weight.grad is not None and module.mk.weight.grad.abs().sum() > 0
    assert module.mv.weight.grad is not None and module.mv.weight.grad.abs().sum() > 0


def test_external_attention_has_exactly_2_d_s_parameters():
    d, s = 48, 24
    assert sum(p.numel() for p in ExternalAttention(d, memory_units=s).parameters()) == 2 * d * s


@pytest.mark.parametrize("cls", [ExternalAttention, MultiHeadExternalAttention])
def test_value_memory_starts_as_key_memory_transposed(cls):
    module = cls(DIM, memory_units=8)
    torch.testing.assert_close(module.mv.weight, module.mk.weight.T)


def test_external_attention_cost_is_linear_in_tokens():
    module = ExternalAttention(DIM, memory_units=8)
    n = 64
    assert forward_flops(module, tokens(1, 2 * n)) == 2 * forward_flops(module, tokens(1, n))


def test_self_attention_cost_is_quadratic_in_tokens():
    module = SelfAttention(DIM, heads=2, fused=False)
    f1, f2, f4 = (forward_flops(module, tokens(1, k * 32)) for k in (1, 2, 4))
    quadratic_part_at_n, quadratic_part_at_2n = f2 - 2 * f1, f4 - 2 * f2
    assert quadratic_part_at_n > 0
    assert quadratic_part_at_2n == 4 * quadratic_part_at_n


def test_no_mixer_returns_its_input_and_no_map():
    x = tokens()
    y, attn = NoMixer(DIM)(x, return_attn=True)
    assert y is x and attn is None


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_make_mixer_builds_the_registered_class(name):
    assert type(mixer(name)) is MIXERS[name]


# Errors name the argument, what was expected and what was given.


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_mixer_rejects_tokens_of_the_wrong_rank(name):
    with pytest.raises(ValueError, match=r"expected x of shape \(B, N, 16\), got \(7, 16\)"):
        mixer(name)(torch.randn(7, DIM))


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_mixer_rejects_tokens_of_the_wrong_width(name):
    with pytest.raises(ValueError, match=r"expected x of shape \(B, N, 16\), got \(2, 7, 12\)"):
        mixer(name)(torch.randn(2, 7, 12))


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_mixer_rejects_integer_tokens(name):
    with pytest.raises(TypeError, match="expected x to be a floating-point tensor, got dtype torch.int64"):
        mixer(name)(torch.ones(2, 7, DIM, dtype=torch.long))


@pytest.mark.parametrize("cls", [SelfAttention, MultiHeadExternalAttention])
def test_heads_must_divide_dim(cls):
    with pytest.raises(ValueError, match="expected heads to divide dim=16, got heads=3"):
        cls(DIM, heads=3)


@pytest.mark.parametrize("cls", [ExternalAttention, MultiHeadExternalAttention])
def test_memory_units_must_be_positive(cls):
    with pytest.raises(ValueError, match="expected memory_units >= 1, got 0"):
        cls(DIM, memory_units=0)


@pytest.mark.parametrize("cls", [ExternalAttention, MultiHeadExternalAttention])
def test_unknown_norm_is_rejected(cls):
    with pytest.raises(ValueError, match=r"expected norm to be one of \('double', 'softmax'\), got 'l2'"):
        cls(DIM, norm="l2")


def test_make_mixer_lists_valid_names_for_an_unknown_one():
    with pytest.raises(ValueError, match="expected mixer to be one of .*, got 'conv'") as error:
        make_mixer("conv", DIM)
    assert all(name in str(error.value) for name in MIXERS)
