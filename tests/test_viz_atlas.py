"""Specs for eaviz.viz.atlas: one streaming pass finds each memory unit's top images."""

import pytest
import torch
from einops import rearrange
from torch import nn

from eaviz.attention import ExternalAttention
from eaviz.data.dataset import ImageDataset
from eaviz.models import Classifier, ClassifierConfig
from eaviz.viz.atlas import build_memory_atlas, plot_memory_atlas
from eaviz.viz.record import capture_attention

pytestmark = pytest.mark.usefixtures("single_thread")

RED, GREEN = (255, 0, 0), (0, 255, 0)


class ColourDetector(nn.Module):
    """Tokens are the mean colour of 4x4 patches; unit 1 fires on green, unit 2 on red.

    images (B, 3, 32, 32) -> tokens (B, 64, 3) -> external attention with 4 memory units.
    """

    def __init__(self) -> None:
        super().__init__()
        self.grid_size = 8
        self.pool = nn.AvgPool2d(4)
        self.mixer = ExternalAttention(3, memory_units=4)
        with torch.no_grad():
            self.mixer.mk.weight.zero_()
            self.mixer.mk.weight[1] = torch.tensor([-20.0, 20.0, -20.0])
            self.mixer.mk.weight[2] = torch.tensor([20.0, -20.0, -20.0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.mixer(rearrange(self.pool(images), "b c h w -> b (h w) c"))


def grey_dataset(n: int = 40) -> ImageDataset:
    """Plain grey images of random brightness, one class."""
    levels = torch.randint(0, 256, (n, 1, 1, 1), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return ImageDataset(levels.expand(n, 3, 32, 32).clone(), torch.zeros(n, dtype=torch.long), ["grey"])


def plant(dataset: ImageDataset, index: int, cell: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """Paint the 4x4 patch of token ``cell`` in image ``index``."""
    row, col = cell
    paint = torch.tensor(colour, dtype=torch.uint8)[:, None, None]
    dataset.images[index, :, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4] = paint


def test_atlas_finds_the_planted_image_and_its_region():
    dataset = grey_dataset()
    plant(dataset, 17, (2, 5), RED)
    plant(dataset, 33, (7, 0), GREEN)
    atlas = build_memory_atlas(ColourDetector(), dataset, top_k=3, batch_size=16, progress=False)
    (red_index, red_score, red_cell), *_ = atlas.top(2)
    (green_index, _, green_cell), *_ = atlas.top(1)
    assert (red_index, red_cell) == (17, (2, 5))
    assert (green_index, green_cell) == (33, (7, 0))
    assert red_score > 0.9 > atlas.scores[2, 1]


def test_streaming_top_k_equals_top_k_over_the_whole_set():
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(dim=32, depth=1, memory_units=8)).eval()
    dataset = ImageDataset(
        torch.randint(0, 256, (30, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)),
        torch.zeros(30, dtype=torch.long),
        ["any"],
    )
    atlas = build_memory_atlas(model, dataset, top_k=4, batch_size=7, progress=False)
    record, _ = capture_attention(model, dataset.images.float() / 255)
    peaks = record["blocks.0.mixer"].max(dim=1).values.t()  # (S, n)
    expected = peaks.topk(4, dim=1)
    torch.testing.assert_close(atlas.scores, expected.values)
    torch.testing.assert_close(atlas.indices, expected.indices)
    assert atlas.positions.shape == (8, 4, 2) and atlas.grid == (8, 8)


def test_top_k_is_capped_by_the_dataset_size():
    atlas = build_memory_atlas(ColourDetector(), grey_dataset(5), top_k=8, progress=False)
    assert atlas.indices.shape == (4, 5)


def test_atlas_figure_has_a_row_per_unit_and_a_column_per_top_image():
    dataset = grey_dataset(12)
    plant(dataset, 3, (0, 0), RED)
    atlas = build_memory_atlas(ColourDetector(), dataset, top_k=4, progress=False)
    fig = plot_memory_atlas(atlas, dataset, units=[2, 1], top=3)
    assert len(fig.axes) == 2 * 3
    assert fig.axes[0].get_ylabel() == "unit 2"
    assert fig.axes[0].get_title().startswith("grey")
    assert len(fig.axes[0].patches) == 1


def test_atlas_needs_an_external_attention_layer():
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(dim=32, depth=1, mixer="self"))
    with pytest.raises(ValueError, match="no external-attention layer"):
        build_memory_atlas(model, grey_dataset(4), progress=False)


def test_atlas_unit_out_of_range():
    atlas = build_memory_atlas(ColourDetector(), grey_dataset(4), top_k=2, progress=False)
    with pytest.raises(ValueError, match=r"unit 4 is out of range.*S=4"):
        atlas.top(4)
