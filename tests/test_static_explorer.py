"""Specs for the static memory explorer: every unit of every external-attention layer, linked in the browser."""

import io
import json

import ipywidgets as widgets
import numpy as np
import pytest
import torch
from ipywidgets.embed import dependency_state
from PIL import Image

from eaviz.models import Classifier, ClassifierConfig
from eaviz.viz.record import capture_attention
from eaviz.widgets import page_weight, static_memory_explorer
from eaviz.widgets.frames import caption_font, fit_lines, strip
from eaviz.widgets.static import _panel_labels

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_classifier(mixer: str = "external", depth: int = 2, memory_units: int = 6) -> Classifier:
    torch.manual_seed(0)
    return Classifier(ClassifierConfig(dim=32, depth=depth, mixer=mixer, memory_units=memory_units, heads=2)).eval()


def images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def image_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_every_unit_of_every_external_layer_has_a_frame():
    explorer = static_memory_explorer(tiny_classifier(depth=2, memory_units=6), images())
    assert list(explorer.explorers) == ["blocks.0.mixer", "blocks.1.mixer"]
    assert [len(e.stack.children) for e in explorer.explorers.values()] == [6, 6]
    assert all(e.slider.max == 5 for e in explorer.explorers.values())


def test_the_layer_menu_is_linked_in_the_browser_to_the_layer_stack():
    explorer = static_memory_explorer(tiny_classifier(), images())
    assert explorer.link.source == (explorer.menu, "index")
    assert explorer.link.target == (explorer.layers, "selected_index")
    assert len(explorer.menu.options) == len(explorer.layers.children) == 2
    state = dependency_state([explorer])
    assert sum(model["model_name"] == "LinkModel" for model in state.values()) == 3  # menu + one slider per layer


def test_panels_are_at_least_128_pixels_high_by_default():
    explorer = static_memory_explorer(tiny_classifier(), images(2))
    width, height = image_size(explorer.explorers["blocks.0.mixer"].frames[0])
    assert height >= 128 and width >= 2 * 128


def test_units_of_a_layer_share_one_colour_scale_with_a_colour_bar():
    model, x = tiny_classifier(), images()
    explorer = static_memory_explorer(model, x, clip=1.0)
    record, _ = capture_attention(model, x)
    for layer, (vmin, vmax) in explorer.scales.items():
        assert vmin == 0.0 and vmax == pytest.approx(float(record[layer].max()))
        side = explorer.explorers[layer].children[1].children[1]
        assert isinstance(side, widgets.Image) and image_size(side.value)[1] >= 96


def test_class_labels_and_wrong_predictions_are_written_under_the_images():
    model, x = tiny_classifier(), images(2)
    classes = [f"class{c}" for c in range(10)]
    predicted = model(x).argmax(dim=-1)
    wrong = (predicted + 1) % 10
    with_labels = static_memory_explorer(model, x, labels=predicted, classes=classes)
    without = static_memory_explorer(model, x)
    labelled, plain = with_labels.explorers["blocks.0.mixer"].frames[0], without.explorers["blocks.0.mixer"].frames[0]
    assert image_size(labelled)[1] > image_size(plain)[1]
    assert _panel_labels(wrong, classes, model(x), 2)[0] == f"class{int(wrong[0])}, pred class{int(predicted[0])}"
    assert _panel_labels(predicted, classes, model(x), 2)[0] == f"class{int(predicted[0])}"


def test_multi_head_maps_are_averaged_over_heads():
    explorer = static_memory_explorer(tiny_classifier("multihead_external", depth=1), images(2))
    assert len(explorer.explorers["blocks.0.mixer"].frames) == 6


def test_self_attention_layers_are_skipped_and_a_model_without_memory_is_rejected():
    with pytest.raises(ValueError, match="has no external-attention layer"):
        static_memory_explorer(tiny_classifier("self"), images(2))


def test_labels_of_the_wrong_length_are_rejected():
    with pytest.raises(ValueError, match=r"one class per image, \(3,\)"):
        static_memory_explorer(tiny_classifier(), images(3), labels=[0, 1])


def test_page_weight_counts_every_frame_and_the_stored_state():
    explorer = static_memory_explorer(tiny_classifier(depth=2, memory_units=6), images(2))
    weight = page_weight(explorer)
    frames = [f for e in explorer.explorers.values() for f in e.frames]
    assert weight.images == len(frames) + 2  # and one colour bar per layer
    assert weight.image_bytes > sum(len(f) for f in frames)
    assert weight.state_bytes == len(json.dumps(dependency_state([explorer])))
    assert weight.state_bytes > 4 / 3 * weight.image_bytes * 0.99  # images are stored base64-encoded
    assert "MB" in str(weight)


def test_the_layer_menu_is_wide_enough_for_its_longest_layer_name():
    explorer = static_memory_explorer(tiny_classifier(), images(2))
    longest = max(len(label) for label, _ in explorer.menu.options)
    assert explorer.menu.layout.width.endswith("ch")
    assert int(explorer.menu.layout.width.removesuffix("ch")) > longest


def test_text_in_the_frames_is_at_least_12_pixels_high():
    left, top, right, bottom = caption_font().getbbox("Ag")
    assert bottom - top >= 12


def test_a_label_wider_than_its_panel_is_broken_into_lines():
    font = caption_font()
    lines = fit_lines("automobile, pred truck", 100, font)
    assert len(lines) == 2 and all(font.getlength(line) <= 100 for line in lines)
    panels = [np.zeros((100, 100, 3), dtype=np.uint8)] * 2
    one, two = strip(panels, labels=["cat", "dog"]), strip(panels, labels=["automobile, pred truck", "dog"])
    assert two.height > one.height
