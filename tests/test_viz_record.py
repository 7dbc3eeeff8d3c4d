"""Specs for eaviz.viz.record: maps come from the mixers' own return_attn, the model is left alone."""

import pytest
import torch

from eaviz.attention2d import ExternalAttention2d
from eaviz.models import Classifier, ClassifierConfig, Segmenter, SegmenterConfig
from eaviz.viz.record import capture_attention, mixer_names, record_attention

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_classifier(mixer: str = "external", depth: int = 2) -> Classifier:
    torch.manual_seed(0)
    return Classifier(ClassifierConfig(dim=32, depth=depth, mixer=mixer, memory_units=16)).eval()


def images(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("mixer", ["external", "self", "multihead_external"])
def test_recorded_maps_equal_the_mixers_own_return_attn(mixer):
    model = tiny_classifier(mixer)
    x = images()
    mixer_inputs = {}
    for i, block in enumerate(model.blocks):
        block.norm1.register_forward_hook(lambda module, args, out, i=i: mixer_inputs.__setitem__(i, out.detach()))
    with torch.no_grad(), record_attention(model) as record:
        model(x)
    assert list(record) == ["blocks.0.mixer", "blocks.1.mixer"]
    for i, block in enumerate(model.blocks):
        _, expected = block.mixer(mixer_inputs[i], return_attn=True)
        torch.testing.assert_close(record[f"blocks.{i}.mixer"], expected)


def test_token_grid_comes_from_the_model():
    model = tiny_classifier()
    with torch.no_grad(), record_attention(model) as record:
        model(images())
    assert record.grids == {"blocks.0.mixer": (8, 8), "blocks.1.mixer": (8, 8)}


def test_2d_block_is_recorded_once_with_its_feature_map_grid():
    torch.manual_seed(0)
    model = Segmenter(SegmenterConfig(width=16, memory_units=8)).eval()
    assert mixer_names(model) == ["attention"]
    assert isinstance(model.attention, ExternalAttention2d)
    with torch.no_grad(), record_attention(model) as record:
        model(images(1, 48))
    assert list(record) == ["attention"]
    assert record["attention"].shape == (1, 36, 8)
    assert record.grids["attention"] == (6, 6)


def test_models_without_attention_have_no_layers_to_record():
    model = tiny_classifier("none")
    assert mixer_names(model) == []
    with torch.no_grad(), record_attention(model) as record:
        model(images())
    assert dict(record) == {}


def test_recording_leaves_the_output_unchanged_and_removes_its_wrappers():
    model = tiny_classifier("self")
    x = images()
    with torch.no_grad():
        before = model(x)
        with record_attention(model):
            during = model(x)
        after = model(x)
    torch.testing.assert_close(during, before)
    torch.testing.assert_close(after, before)
    assert all("forward" not in block.mixer.__dict__ for block in model.blocks)


def test_wrappers_are_removed_after_an_exception():
    model = tiny_classifier()
    with pytest.raises(RuntimeError, match="boom"):
        with record_attention(model):
            raise RuntimeError("boom")
    assert all("forward" not in block.mixer.__dict__ for block in model.blocks)


def test_a_caller_asking_for_the_map_still_gets_it_while_recording():
    model = tiny_classifier()
    mixer = model.blocks[0].mixer
    tokens = torch.randn(1, 64, 32)
    with torch.no_grad(), record_attention(model) as record:
        y, attn = mixer(tokens, return_attn=True)
    assert y.shape == tokens.shape
    torch.testing.assert_close(attn, record["blocks.0.mixer"])


def test_recording_some_layers_only():
    model = tiny_classifier()
    with torch.no_grad(), record_attention(model, layers=["blocks.1.mixer"]) as record:
        model(images())
    assert list(record) == ["blocks.1.mixer"]


def test_unknown_layer_names_the_valid_ones():
    model = tiny_classifier()
    with pytest.raises(ValueError, match=r"expected layer to be one of \['blocks\.0\.mixer'.*got 'blocks\.7\.mixer'"):
        with record_attention(model, layers=["blocks.7.mixer"]):
            pass


def test_capture_attention_runs_in_eval_mode_and_restores_the_mode():
    model = tiny_classifier().train()
    running_mean = model.stem[0][1].running_mean.clone()
    record, logits = capture_attention(model, images())
    assert model.training
    torch.testing.assert_close(model.stem[0][1].running_mean, running_mean)
    assert logits.shape == (2, 10) and not logits.requires_grad
    assert set(record) == {"blocks.0.mixer", "blocks.1.mixer"}
