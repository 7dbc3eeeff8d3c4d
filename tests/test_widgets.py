"""Specs for eaviz.widgets: controls set from Python change what is displayed; static explorers link in JS."""

import datetime
import io

import ipywidgets as widgets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import mixer_attention
from ipywidgets.embed import embed_data
from PIL import Image

from eaviz.data.dataset import ImageDataset
from eaviz.models import Classifier, ClassifierConfig
from eaviz.viz.atlas import build_memory_atlas
from eaviz.widgets import AttentionExplorer, static_query_explorer, static_unit_explorer

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_classifier(mixer: str = "external", depth: int = 1) -> Classifier:
    torch.manual_seed(0)
    return Classifier(ClassifierConfig(dim=32, depth=depth, mixer=mixer, memory_units=16)).eval()


def dataset(n: int = 12) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return ImageDataset(images, torch.arange(n) % 3, ["a", "b", "c"])


def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_explorer_shows_the_library_maps_of_the_chosen_units():
    model, data = tiny_classifier(), dataset()
    explorer = AttentionExplorer(model, data, units=(1, 2))
    explorer.index.value = 4
    attn = mixer_attention(model, data[4][0][None])  # (1, 64, S)
    columns = attn[0, :, [1, 2]].T.reshape(2, 1, 8, 8)  # the units' columns on the 8x8 token grid
    expected = F.interpolate(columns, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_allclose(explorer.current_maps, expected.numpy(), atol=1e-6)
    assert png_size(explorer.image.value)[0] > 2 * explorer.panel  # image + 2 maps side by side


def test_changing_units_image_alpha_and_colormap_changes_the_display():
    explorer = AttentionExplorer(tiny_classifier(), dataset())
    shown, maps = explorer.image.value, explorer.current_maps.copy()
    explorer.units.value = (7,)
    assert explorer.current_maps.shape == (1, 32, 32)
    assert not np.allclose(explorer.current_maps[0], maps[0])
    for control, value in ((explorer.alpha, 0.2), (explorer.cmap, "viridis"), (explorer.index, 3)):
        before = explorer.image.value
        control.value = value
        assert explorer.image.value != before
    assert explorer.image.value != shown
    explorer.units.value = ()
    assert explorer.current_maps.shape == (0, 32, 32) and "no unit chosen" in explorer.caption.value


def test_class_filter_browses_only_that_class():
    explorer = AttentionExplorer(tiny_classifier(), dataset())
    explorer.class_filter.value = 2
    assert explorer.index.max == 3
    explorer.index.value = 1
    assert explorer.current_index == 5 and int(explorer.dataset.targets[5]) == 2


def test_self_attention_models_get_a_query_picker():
    model, data = tiny_classifier("self"), dataset()
    explorer = AttentionExplorer(model, data)
    assert explorer.unit_box.layout.display == "none" and explorer.query_box.layout.display is None
    explorer.row.value, explorer.col.value = 1, 6
    attn = mixer_attention(model, data[0][0][None])  # (1, heads, 64, 64)
    row = attn.mean(dim=1)[:, 1 * 8 + 6].view(1, 1, 8, 8)  # query (1, 6), heads averaged
    expected = F.interpolate(row, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_allclose(explorer.current_maps, expected.numpy(), atol=1e-6)


def test_switching_layer_switches_maps():
    explorer = AttentionExplorer(tiny_classifier(depth=2), dataset(), layer="blocks.0.mixer")
    before = explorer.current_maps.copy()
    explorer.layer.value = "blocks.1.mixer"
    assert not np.allclose(explorer.current_maps, before)


def test_forward_passes_are_cached_per_image():
    model = tiny_classifier()
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    explorer = AttentionExplorer(model, dataset(), cache_size=2)
    for value in (1, 2, 1):
        explorer.index.value = value
    explorer.alpha.value = 0.1
    assert len(calls) == 3  # images 0, 1, 2; image 1 and the alpha change come from the cache
    assert len(explorer._cache) == 2


def test_an_uploaded_image_is_resized_to_the_model_input():
    explorer = AttentionExplorer(tiny_classifier(), dataset())
    buffer = io.BytesIO()
    Image.new("RGB", (90, 60), (250, 10, 10)).save(buffer, format="PNG")
    content = buffer.getvalue()
    stamp = datetime.datetime.now(datetime.timezone.utc)
    upload = {"name": "red.png", "type": "image/png", "size": len(content), "content": memoryview(content)}
    explorer.upload.value = ({**upload, "last_modified": stamp},)
    assert explorer.current_index is None
    assert explorer.current_image.shape == (3, 32, 32)
    assert explorer.current_image[0].mean() > 0.9
    assert "your image" in explorer.caption.value
    explorer.index.value = 2
    assert explorer.current_index == 2


def test_atlas_top_images_follow_the_first_chosen_unit():
    model, data = tiny_classifier(), dataset()
    atlas = build_memory_atlas(model, data, top_k=3, progress=False)
    explorer = AttentionExplorer(model, data, atlas=atlas, units=(0,))
    first = explorer.atlas_image.value
    assert png_size(first)[0] > 3 * (explorer.panel // 2)
    explorer.units.value = (5,)
    assert explorer.atlas_image.value != first


def test_measure_latency_returns_milliseconds():
    latency = AttentionExplorer(tiny_classifier(), dataset()).measure_latency(repeats=2)
    assert latency["interaction_ms"] > 0 and latency["new_image_ms"] > 0


def test_units_beyond_the_layer_are_rejected():
    with pytest.raises(ValueError, match=r"unit 16 is out of range.*S=16"):
        AttentionExplorer(tiny_classifier(), dataset(), units=(2, 16))


def test_unknown_layer_is_rejected():
    with pytest.raises(ValueError, match=r"expected layer to be one of \['blocks\.0\.mixer'\], got 'head'"):
        AttentionExplorer(tiny_classifier(), dataset(), layer="head")


def test_static_unit_explorer_links_a_slider_to_one_frame_per_unit():
    data = dataset(4)
    explorer = static_unit_explorer(tiny_classifier(), torch.stack([data[i][0] for i in range(4)]), units=range(5))
    assert len(explorer.stack.children) == 5
    assert all(isinstance(child, widgets.Image) for child in explorer.stack.children)
    assert explorer.slider.max == 4
    assert explorer.link.source == (explorer.slider, "value")
    assert explorer.link.target == (explorer.stack, "selected_index")
    assert max(len(frame) for frame in explorer.frames) < 30_000
    assert len(set(explorer.frames)) == 5


def test_static_explorer_state_holds_the_link_for_the_website():
    data = dataset(2)
    explorer = static_unit_explorer(tiny_classifier(), torch.stack([data[0][0], data[1][0]]), units=[3, 9])
    state = embed_data(views=[explorer])["manager_state"]["state"]
    assert any(model["model_name"] == "LinkModel" for model in state.values())


def test_static_query_explorer_has_a_frame_per_query_position():
    data = dataset(2)
    explorer = static_query_explorer(tiny_classifier("self"), torch.stack([data[0][0], data[1][0]]), step=2)
    assert len(explorer.stack.children) == 16
    assert explorer.link.target == (explorer.stack, "selected_index")
