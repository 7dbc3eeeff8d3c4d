"""Specs for eaviz.viz.stats: class mass, object attention and entropy on cases with known answers."""

import math

import pytest
import torch
from einops import rearrange
from matplotlib.figure import Figure
from torch import nn

from eaviz.attention import ExternalAttention
from eaviz.data.dataset import ImageDataset
from eaviz.models import Classifier, ClassifierConfig
from eaviz.viz.stats import (
    ObjectAttention,
    attention_entropy,
    entropy_by_norm,
    object_attention_fraction,
    plot_entropy_by_norm,
    plot_object_attention,
    plot_unit_class_heatmap,
    token_labels,
    unit_class_mass,
)

pytestmark = pytest.mark.usefixtures("single_thread")


class RedDetector(nn.Module):
    """Tokens are the mean colour of 4x4 patches; memory unit 2 fires on red, units 0, 1, 3 on nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.grid_size = 8
        self.pool = nn.AvgPool2d(4)
        self.mixer = ExternalAttention(3, memory_units=4)
        with torch.no_grad():
            self.mixer.mk.weight.zero_()
            self.mixer.mk.weight[2] = torch.tensor([20.0, -20.0, -20.0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.mixer(rearrange(self.pool(images), "b c h w -> b (h w) c"))


RED = torch.tensor([255, 0, 0], dtype=torch.uint8)[:, None, None]


def red_patch_dataset(n: int = 12) -> ImageDataset:
    """Grey images; the odd ones ("red" class) hold a red 4x4 patch at a random token, masked as the object."""
    g = torch.Generator().manual_seed(0)
    images = torch.full((n, 3, 32, 32), 128, dtype=torch.uint8)
    masks = torch.zeros(n, 32, 32, dtype=torch.bool)
    targets = torch.arange(n) % 2
    for i in range(1, n, 2):
        row, col = torch.randint(0, 8, (2,), generator=g).tolist()
        images[i, :, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4] = RED
        masks[i, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4] = True
    for i in range(0, n, 2):  # the grey images' "object" is a 16x16 square: a quarter of the image
        masks[i, :16, :16] = True
    return ImageDataset(images, targets, ["grey", "red"], masks=masks)


def tiny_classifier(**kw) -> Classifier:
    torch.manual_seed(0)
    return Classifier(ClassifierConfig(dim=32, depth=1, memory_units=16, **kw)).eval()


def test_class_mass_columns_sum_to_one_and_absent_classes_are_nan():
    dataset = red_patch_dataset()
    dataset.classes = ["grey", "red", "never seen"]
    mass = unit_class_mass(tiny_classifier(), dataset, progress=False)
    assert mass.shape == (16, 3)
    torch.testing.assert_close(mass[:, :2].sum(dim=0), torch.ones(2))
    assert mass[:, 2].isnan().all()


def test_uniform_attention_gives_every_unit_the_same_mass():
    model = tiny_classifier()
    nn.init.zeros_(model.blocks[0].mixer.mk.weight)
    mass = unit_class_mass(model, red_patch_dataset(), progress=False)
    torch.testing.assert_close(mass, torch.full((16, 2), 1 / 16))


def test_red_tokens_give_their_mass_to_the_red_unit():
    dataset = red_patch_dataset()
    red = dataset.subset(list(range(1, 12, 2)))
    red.targets = red.masks.long()  # per-pixel labels: 1 on the red patch, 0 elsewhere
    mass = unit_class_mass(RedDetector(), red, batch_size=5, progress=False)
    assert mass[2, 1] > 0.9
    assert mass[2, 0] < 0.01
    assert mass[[0, 1, 3], 0].min() > 0.3


def test_segmentation_tokens_take_the_label_at_the_centre_of_their_patch():
    targets = torch.zeros(1, 32, 32, dtype=torch.long)
    targets[0, :, 16:] = 3
    targets[0, 30:, :] = 255
    labels = rearrange(token_labels(targets, (8, 8)), "b (h w) -> b h w", h=8)[0]
    assert labels[:7, :4].eq(0).all() and labels[:7, 4:].eq(3).all() and labels[7].eq(255).all()


def test_uniform_attention_lands_on_the_object_exactly_by_chance():
    model = tiny_classifier()
    nn.init.zeros_(model.blocks[0].mixer.mk.weight)
    result = object_attention_fraction(model, red_patch_dataset(), progress=False)
    area = (1 / 64 + 1 / 4) / 2  # red patches and grey quarters, as many of each
    torch.testing.assert_close(result.chance, torch.full((16,), area))
    torch.testing.assert_close(result.on_object, result.chance)
    torch.testing.assert_close(result.lift, torch.ones(16))


def test_a_red_detector_looks_at_the_red_object():
    dataset = red_patch_dataset()
    red = dataset.subset(list(range(1, 12, 2)))
    result = object_attention_fraction(RedDetector(), red, progress=False)
    assert result.on_object[2] > 0.95
    torch.testing.assert_close(result.chance, torch.full((4,), 1 / 64))
    # the red unit takes the red token's weight, so under the l1 step the other units avoid it
    assert (result.on_object[[0, 1, 3]] < result.chance[[0, 1, 3]] / 10).all()


def test_object_attention_needs_masks():
    dataset = red_patch_dataset()
    dataset.masks = None
    with pytest.raises(ValueError, match="object masks"):
        object_attention_fraction(RedDetector(), dataset, progress=False)


def test_entropy_of_uniform_weights_is_log_s_and_log_n():
    attn = torch.full((2, 64, 16), 1 / 16)
    entropy = attention_entropy(attn)
    torch.testing.assert_close(entropy.token, torch.full((2, 64), math.log(16)))
    torch.testing.assert_close(entropy.unit, torch.full((2, 16), math.log(64)))
    assert entropy.summary()["token_max"] == pytest.approx(math.log(16))


def test_entropy_of_one_hot_weights_is_zero():
    attn = torch.eye(4)[None]  # token i gives all weight to unit i
    entropy = attention_entropy(attn)
    torch.testing.assert_close(entropy.token, torch.zeros(1, 4))
    torch.testing.assert_close(entropy.unit, torch.zeros(1, 4))


def test_entropy_rejects_negative_weights():
    with pytest.raises(ValueError, match="non-negative"):
        attention_entropy(torch.tensor([[0.5, -0.5]]))


def test_entropy_by_norm_compares_models_per_image_and_token():
    dataset = red_patch_dataset(6)
    result = entropy_by_norm(
        {"double": tiny_classifier(), "softmax": tiny_classifier(norm="softmax")}, dataset, limit=4, progress=False
    )
    assert set(result) == {"double", "softmax"}
    assert result["double"].token.shape == (4, 64) and result["softmax"].unit.shape == (4, 16)
    assert all(0 <= v.token.min() and v.token.max() <= math.log(16) + 1e-5 for v in result.values())
    assert isinstance(plot_entropy_by_norm(result), Figure)


def test_plots_of_the_statistics_are_figures():
    dataset = red_patch_dataset()
    mass = unit_class_mass(RedDetector(), dataset, progress=False)
    heat = plot_unit_class_heatmap(mass, dataset.classes)
    assert [t.get_text() for t in heat.axes[0].get_yticklabels()] == ["grey", "red"]
    bars = plot_object_attention(object_attention_fraction(RedDetector(), dataset, progress=False))
    assert len(bars.axes[0].patches) == 4
    with pytest.raises(ValueError, match=r"mass of shape \(S, C=3\)"):
        plot_unit_class_heatmap(mass, ["a", "b", "c"])


def test_a_heat_map_of_64_units_labels_every_second_unit_in_9_point_type():
    mass = torch.rand(64, 3)
    heat = plot_unit_class_heatmap(mass, ["a", "b", "c"])
    labels = heat.axes[0].get_xticklabels()
    assert len(labels) == 32 and all(label.get_fontsize() >= 9 for label in labels)
    assert heat.get_size_inches()[0] <= 8.5


def test_object_attention_plot_ends_its_y_axis_just_above_the_tallest_bar():
    result = ObjectAttention("blocks.1.mixer", torch.tensor([0.38, 0.2, 0.05]), torch.full((3,), 0.18))
    low, high = plot_object_attention(result).axes[0].get_ylim()
    assert low == 0 and high == pytest.approx(0.45)
