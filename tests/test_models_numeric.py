"""The models' arithmetic, checked against numbers written out by hand, not only their shapes."""

import torch
from torch import nn

from eaviz.models import ClassifierConfig, SegmenterConfig, build_model
from eaviz.models.common import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, MixerBlock, Normalize


def test_normalize_subtracts_the_mean_and_divides_by_the_std_per_channel():
    images = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    out = Normalize((0.5, 0.25, 0.0), (0.5, 0.25, 2.0))(images)
    # channel 0: (0 - .5) / .5 = -1; channel 1: (.5 - .25) / .25 = 1; channel 2: (1 - 0) / 2 = .5
    assert torch.equal(out[0, :, 0, 0], torch.tensor([-1.0, 1.0, 0.5]))


def test_the_models_normalise_with_their_configured_statistics():
    classifier = build_model(ClassifierConfig(dim=16, depth=1, memory_units=4))
    segmenter = build_model(SegmenterConfig(width=16, memory_units=4))
    gray = torch.full((1, 3, 1, 1), 0.5)
    for model, mean, std in [(classifier, CIFAR_MEAN, CIFAR_STD), (segmenter, IMAGENET_MEAN, IMAGENET_STD)]:
        expected = torch.tensor([(0.5 - m) / s for m, s in zip(mean, std)])
        assert torch.allclose(model.normalize(gray).flatten(), expected)


def layer_norm(t: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """LayerNorm written out: standardise the last axis, then scale and shift."""
    variance = t.var(-1, unbiased=False, keepdim=True)
    return (t - t.mean(-1, keepdim=True)) / (variance + norm.eps).sqrt() * norm.weight + norm.bias


class Scale(nn.Module):
    """A stand-in mixer: y = 2x."""

    def forward(self, x):
        return 2 * x


def test_mixer_block_adds_the_mixer_and_the_mlp_to_the_residual_stream():
    torch.manual_seed(0)
    block = MixerBlock(4, Scale(), mlp_ratio=2)
    x = torch.randn(2, 3, 4)
    h = x + 2 * layer_norm(x, block.norm1)
    linear1, linear2 = block.mlp[0], block.mlp[3]
    hidden = torch.nn.functional.gelu(layer_norm(h, block.norm2) @ linear1.weight.T + linear1.bias)
    expected = h + hidden @ linear2.weight.T + linear2.bias
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_a_block_whose_branches_output_zero_is_the_identity():
    block = MixerBlock(8, Scale())
    for branch_end in (block.norm1, block.mlp[3]):  # mixer(norm1(x)) = 0 and mlp(...) = 0
        nn.init.zeros_(branch_end.weight)
        nn.init.zeros_(branch_end.bias)
    x = torch.randn(2, 5, 8)
    assert torch.equal(block(x), x)
