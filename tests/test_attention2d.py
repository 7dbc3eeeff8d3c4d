"""Specs for the feature-map attention blocks in eaviz.attention2d."""

import pytest
import torch
import torch.nn.functional as F

from eaviz.attention2d import ExternalAttention2d, NonLocal2d

C = 8


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def feature_map(batch: int = 2, h: int = 5, w: int = 6) -> torch.Tensor:
    return torch.randn(batch, C, h, w)


def randomise_batch_norm(bn: torch.nn.BatchNorm2d) -> None:
    """Give a BN layer non-trivial statistics and affine weights, as after training."""
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()


def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A 1x1 convolution with a (c_out, c_in) weight matrix."""
    return F.conv2d(x, weight.reshape(*weight.shape[:2], 1, 1), bias)


def eanet_block_as_convolutions(block: ExternalAttention2d, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The EANet head written as the paper's code does it: 1x1 convs over the map, double norm over pixels."""
    b, _, h, w = x.shape
    features = F.conv2d(x, block.conv_in.weight, block.conv_in.bias)
    logits = conv1x1(features, block.ea.mk.weight).reshape(b, -1, h * w)  # (B, S, N)
    attn = logits.softmax(dim=-1)  # over the N pixels
    attn = attn / attn.sum(dim=1, keepdim=True)  # l1 over the S memory units
    out = conv1x1(attn.reshape(b, -1, h, w), block.ea.mv.weight)  # (B, C, H, W)
    conv, bn = block.conv_out
    out = F.batch_norm(F.conv2d(out, conv.weight), bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps)
    return torch.relu(out + x), attn.transpose(1, 2)


def test_external_attention2d_equals_its_1x1_convolution_form():
    block = ExternalAttention2d(C, memory_units=4).eval()
    randomise_batch_norm(block.conv_out[1])
    x = feature_map()
    y, attn = block(x, return_attn=True)
    y_ref, attn_ref = eanet_block_as_convolutions(block, x)
    torch.testing.assert_close(attn, attn_ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)


def test_external_attention2d_keeps_the_feature_map_shape():
    x = feature_map()
    assert ExternalAttention2d(C, memory_units=4)(x).shape == x.shape


def test_external_attention2d_map_is_pixels_by_memory_units_and_sums_to_one():
    _, attn = ExternalAttention2d(C, memory_units=4)(feature_map(h=5, w=6), return_attn=True)
    assert attn.shape == (2, 5 * 6, 4)
    torch.testing.assert_close(attn.sum(dim=-1), torch.ones(2, 30))


def test_external_attention2d_passes_its_norm_to_the_attention():
    block = ExternalAttention2d(C, memory_units=4, norm="softmax")
    assert block.ea.norm == "softmax"


def test_nonlocal2d_keeps_the_feature_map_shape():
    x = feature_map()
    assert NonLocal2d(C)(x).shape == x.shape


def test_nonlocal2d_map_rows_sum_to_one():
    _, attn = NonLocal2d(C)(feature_map(h=3, w=4), return_attn=True)
    assert attn.shape == (2, 12, 12)
    torch.testing.assert_close(attn.sum(dim=-1), torch.ones(2, 12))


def test_nonlocal2d_matches_its_equation():
    block = NonLocal2d(C, reduction=2).eval()
    randomise_batch_norm(block.conv_out[1])
    x = feature_map()
    b, _, h, w = x.shape

    def project(conv):
        return F.conv2d(x, conv.weight, conv.bias).reshape(b, -1, h * w)  # (B, C', N)

    q, k, v = project(block.query), project(block.key), project(block.value)
    attn = torch.einsum("bcn,bcm->bnm", q, k).div(q.shape[1] ** 0.5).softmax(dim=-1)
    out = torch.einsum("bnm,bcm->bcn", attn, v).reshape(b, -1, h, w)
    conv, bn = block.conv_out
    out = F.batch_norm(F.conv2d(out, conv.weight), bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps)
    torch.testing.assert_close(block(x), x + out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_nonlocal2d_starts_as_the_identity(mode):
    block = NonLocal2d(C)
    block.train(mode == "train")
    x = feature_map()
    torch.testing.assert_close(block(x), x)


@pytest.mark.parametrize("cls", [ExternalAttention2d, NonLocal2d])
def test_block_output_for_one_sample_does_not_depend_on_the_rest_of_the_batch(cls):
    block = cls(C).eval()
    x = feature_map(batch=3)
    alone = block(x[1:2])
    x[0] = torch.randn_like(x[0])
    torch.testing.assert_close(block(x)[1:2], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [ExternalAttention2d, NonLocal2d])
def test_block_rejects_a_map_with_the_wrong_channels(cls):
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 8, H, W\), got \(2, 3, 5, 6\)"):
        cls(C)(torch.randn(2, 3, 5, 6))


@pytest.mark.parametrize("cls", [ExternalAttention2d, NonLocal2d])
def test_block_rejects_tokens_instead_of_a_map(cls):
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 8, H, W\), got \(2, 30, 8\)"):
        cls(C)(torch.randn(2, 30, C))


@pytest.mark.parametrize("cls", [ExternalAttention2d, NonLocal2d])
def test_block_rejects_an_integer_map(cls):
    with pytest.raises(TypeError, match="expected x to be a floating-point tensor"):
        cls(C)(torch.ones(2, C, 5, 6, dtype=torch.uint8))


@pytest.mark.parametrize("cls", [ExternalAttention2d, NonLocal2d])
def test_channels_must_be_positive(cls):
    with pytest.raises(ValueError, match="expected channels >= 1, got 0"):
        cls(0)


def test_external_attention2d_memory_units_must_be_positive():
    with pytest.raises(ValueError, match="expected memory_units >= 1, got 0"):
        ExternalAttention2d(C, memory_units=0)


def test_external_attention2d_rejects_an_unknown_norm():
    with pytest.raises(ValueError, match="expected norm to be one of"):
        ExternalAttention2d(C, norm="l1")


def test_nonlocal2d_reduction_must_be_positive():
    with pytest.raises(ValueError, match="expected reduction >= 1, got 0"):
        NonLocal2d(C, reduction=0)
