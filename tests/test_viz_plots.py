"""Specs for eaviz.viz.plots: figures with one row per image and one column per map."""

import io

import pytest
import torch
from matplotlib.figure import Figure

from eaviz.viz.plots import plot_memory_maps, plot_self_attention, plot_side_by_side

pytestmark = pytest.mark.usefixtures("single_thread")


def images(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def maps(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(1))


def image_axes(fig: Figure) -> list:
    """The panels that show images (colorbars have no images of their own)."""
    return [ax for ax in fig.axes if ax.get_images()]


def renders(fig: Figure) -> bool:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    return buffer.getvalue().startswith(b"\x89PNG")


def test_memory_maps_figure_has_a_row_per_image_and_a_column_per_unit():
    fig = plot_memory_maps(images(2), maps(2, 3, 32, 32), [4, 7, 9], row_labels=["cat", "dog"])
    panels = image_axes(fig)
    assert len(panels) == 2 * 4
    assert [ax.get_title() for ax in panels[:4]] == ["image", "unit 4", "unit 7", "unit 9"]
    assert panels[0].get_ylabel() == "cat" and panels[4].get_ylabel() == "dog"
    assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in panels)
    assert renders(fig)


def test_shared_scale_adds_one_colorbar_and_per_map_scale_none():
    assert len(plot_memory_maps(images(), maps(2, 2, 32, 32), [0, 1], scale="per_map").axes) == 6
    shared = plot_memory_maps(images(), maps(2, 2, 32, 32), [0, 1], scale="shared")
    assert len(shared.axes) == 7
    assert shared.axes[-1].get_ylabel() == "attention weight"


def test_overlays_use_the_requested_colormap_and_alpha():
    fig = plot_memory_maps(images(1), maps(1, 1, 32, 32), [0], cmap="viridis", alpha=0.3)
    overlay = fig.axes[1].get_images()[-1]
    assert overlay.get_cmap().name == "viridis" and overlay.get_alpha() == 0.3


def test_self_attention_figure_outlines_the_query_patch():
    fig = plot_self_attention(images(2), maps(2, 32, 32), (1, 2), grid=8)
    panels = image_axes(fig)
    assert len(panels) == 4
    outline = panels[0].patches[0]
    assert (outline.get_x(), outline.get_y(), outline.get_width()) == (2 * 4 - 0.5, 1 * 4 - 0.5, 4)
    assert renders(fig)


def test_side_by_side_puts_the_query_map_before_the_memory_units():
    fig = plot_side_by_side(images(2), maps(2, 32, 32), maps(2, 2, 32, 32), query=(3, 3), grid=8, units=[5, 6])
    titles = [ax.get_title() for ax in image_axes(fig)[:4]]
    assert titles == [
        "image",
        "self-attention\nquery (3, 3)",
        "external attention\nunit 5",
        "external attention\nunit 6",
    ]
    assert renders(fig)


def test_maps_that_do_not_match_the_images_are_rejected():
    with pytest.raises(ValueError, match=r"maps of shape \(B=2, K, H=32, W=32\).*got \(2, 3, 16, 16\)"):
        plot_memory_maps(images(2), maps(2, 3, 16, 16), [0, 1, 2])


def test_one_unit_per_map_column():
    with pytest.raises(ValueError, match="one unit per map: maps has K=3, got 2 units"):
        plot_memory_maps(images(2), maps(2, 3, 32, 32), [0, 1])


def test_unknown_scale_is_rejected():
    with pytest.raises(ValueError, match=r"scale to be one of \('per_map', 'shared'\)"):
        plot_memory_maps(images(1), maps(1, 1, 32, 32), [0], scale="global")


def test_grid_text_stays_readable_when_a_wide_figure_is_shrunk_to_the_page():
    units = list(range(5))
    fig = plot_memory_maps(images(2), maps(2, 5, 32, 32), units, scale="shared", row_labels=["a", "b"], title="t")
    panels, bar = image_axes(fig), fig.axes[-1]
    sizes = [panels[0].title.get_fontsize(), panels[0].yaxis.label.get_fontsize(), bar.yaxis.label.get_fontsize()]
    sizes += [label.get_fontsize() for label in bar.get_yticklabels()]
    assert min(sizes) >= 10 and fig._suptitle.get_fontsize() >= 10
