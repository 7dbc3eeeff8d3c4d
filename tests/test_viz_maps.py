"""Specs for eaviz.viz.maps: memory-unit maps and query maps as images, and their errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import mixer_attention
from einops import rearrange

from eaviz.models import Classifier, ClassifierConfig
from eaviz.viz.maps import memory_unit_maps, query_map, self_attention_maps
from eaviz.viz.record import capture_attention

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_classifier(mixer: str = "external", **kw) -> Classifier:
    torch.manual_seed(0)
    return Classifier(ClassifierConfig(dim=32, depth=2, mixer=mixer, memory_units=16, **kw)).eval()


def images(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_memory_maps_have_one_image_sized_map_per_chosen_unit():
    maps = memory_unit_maps(tiny_classifier(), images(3), units=[0, 5, 15])
    assert maps.shape == (3, 3, 32, 32)
    assert maps.min() >= 0


def test_memory_map_is_the_units_column_upsampled():
    model, x = tiny_classifier(), images()
    column = mixer_attention(model, x, "blocks.1.mixer")[..., 4].view(2, 1, 8, 8)  # tokens in raster order
    expected = F.interpolate(column, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(memory_unit_maps(model, x, "blocks.1.mixer", units=4), expected)


def test_default_layer_is_the_deepest_and_default_units_are_all():
    model, x = tiny_classifier(), images()
    torch.testing.assert_close(memory_unit_maps(model, x), memory_unit_maps(model, x, "blocks.1.mixer", range(16)))


def test_double_normalisation_gives_each_token_weights_that_sum_to_one():
    record, _ = capture_attention(tiny_classifier(), images())
    attn = record["blocks.0.mixer"]
    torch.testing.assert_close(attn.sum(dim=-1), torch.ones(2, 64), atol=1e-5, rtol=0)


def test_multi_head_maps_average_heads_unless_one_is_picked():
    model, x = tiny_classifier("multihead_external", heads=2), images()
    attn = mixer_attention(model, x, "blocks.1.mixer")  # (B, heads, N, S)
    mean = memory_unit_maps(model, x, units=[3])
    one = memory_unit_maps(model, x, units=[3], head=1)
    assert mean.shape == one.shape == (2, 1, 32, 32)
    column = rearrange(attn[:, 1, :, [3]], "b (h w) k -> b k h w", h=8)
    torch.testing.assert_close(one, F.interpolate(column, size=(32, 32), mode="bilinear", align_corners=False))
    assert not torch.allclose(mean, one)
    heads = attn.shape[1]
    with pytest.raises(ValueError, match=rf"head to be an int in \[0, {heads}\)"):
        memory_unit_maps(model, x, units=[3], head=heads)


def test_query_map_is_the_query_row_over_all_positions():
    model, x = tiny_classifier("self"), images()
    maps = self_attention_maps(model, x, query=(2, 5))
    assert maps.shape == (2, 32, 32) and maps.min() >= 0
    attn = mixer_attention(model, x, "blocks.1.mixer").mean(dim=1)  # heads averaged: (B, N, N)
    at_grid = query_map(attn, (8, 8), (2, 5), (8, 8))
    torch.testing.assert_close(at_grid.sum(dim=(-2, -1)), torch.ones(2))
    torch.testing.assert_close(at_grid[1].flatten(), attn[1, 2 * 8 + 5])


def test_unit_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unit 16 is out of range.*S=16 memory units"):
        memory_unit_maps(tiny_classifier(), images(), units=[0, 16])


def test_unknown_layer_lists_the_valid_names():
    expected = r"expected layer to be one of \['blocks\.0\.mixer', 'blocks\.1\.mixer'\], got 'mixer'"
    with pytest.raises(ValueError, match=expected):
        memory_unit_maps(tiny_classifier(), images(), layer="mixer")


def test_a_single_image_without_batch_axis_gets_a_hint():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\), got \(3, 32, 32\).*images\[None\]"):
        memory_unit_maps(tiny_classifier(), images()[0])


def test_images_must_be_scaled_to_unit_range():
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        memory_unit_maps(tiny_classifier(), images() * 255)


def test_memory_maps_of_a_self_attention_layer_point_to_query_maps():
    with pytest.raises(ValueError, match="SelfAttention.*use self_attention_maps"):
        memory_unit_maps(tiny_classifier("self"), images(), layer="blocks.0.mixer")


def test_query_outside_the_grid_is_a_clear_error():
    with pytest.raises(ValueError, match=r"query \(8, 0\) is outside the 8x8 token grid"):
        self_attention_maps(tiny_classifier("self"), images(), query=(8, 0))


def test_uniform_weights_give_a_flat_map():
    model = tiny_classifier()
    for block in model.blocks:
        torch.nn.init.zeros_(block.mixer.mk.weight)
    maps = memory_unit_maps(model, images(), units=[0, 1])
    torch.testing.assert_close(maps, torch.full_like(maps, 1 / 16))
    assert math.isclose(float(maps.std()), 0.0, abs_tol=1e-6)
