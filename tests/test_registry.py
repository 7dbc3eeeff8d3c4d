"""Specs for eaviz.registry: blocks by name, class or partial; each class says what it is."""

from functools import partial

import pytest
import torch
from torch import nn

from eaviz.attention import MIXERS, ExternalAttention, SelfAttention, make_mixer
from eaviz.attention2d import HEADS, ExternalAttention2d, NonLocal2d, make_head
from eaviz.models import ClassifierConfig, SegmenterConfig
from eaviz.registry import Registry, kind_of


def test_make_mixer_accepts_a_name_a_class_or_a_partial():
    assert type(make_mixer("external", 16, memory_units=8)) is ExternalAttention
    assert type(make_mixer(ExternalAttention, 16)) is ExternalAttention
    plain = make_mixer(partial(SelfAttention, fused=False), 16)
    assert type(plain) is SelfAttention and not plain.fused


def test_every_registered_block_declares_its_kind():
    # Other test modules register mixers of their own at import; the package's are these.
    mixers = {name: MIXERS.kind(name) for name in MIXERS}
    builtin = {"self": "self", "external": "external", "multihead_external": "external", "none": "none"}
    assert mixers.items() >= builtin.items()
    assert set(mixers.values()) <= {"self", "external", "none"}
    assert {name: HEADS.kind(name) for name in HEADS} == {"external": "external", "nonlocal": "self", "none": "none"}


def test_kind_is_read_from_the_class_of_a_module_or_a_partial():
    assert kind_of(NonLocal2d(8)) == "self"
    assert kind_of(partial(ExternalAttention2d, memory_units=4)) == "external"
    assert kind_of(nn.Linear(2, 2)) is None


def test_settings_are_the_keyword_only_arguments_of_the_block():
    values = {"heads": 4, "memory_units": 8, "norm": "softmax", "depth": 2, "dim": 32}
    assert MIXERS.settings("external", values) == {"memory_units": 8, "norm": "softmax"}
    assert MIXERS.settings("self", values) == {"heads": 4}
    assert MIXERS.settings("none", values) == {}
    assert HEADS.settings("none", values) == {}


def test_a_config_passes_only_the_settings_its_mixer_takes():
    config = ClassifierConfig(mixer="multihead_external", heads=2, memory_units=8, expansion=2, dropout=0.1)
    expected = {"heads": 2, "memory_units": 8, "expansion": 2, "norm": "double", "dropout": 0.1}
    assert config.mixer_settings() == expected


def test_a_block_without_a_declared_kind_cannot_be_registered():
    registry = Registry("mixer")
    with pytest.raises(TypeError, match=r"expected mixer 'linear' to declare what it is: a class attribute kind"):
        registry.register("linear", nn.Linear)


def test_only_a_block_without_a_map_may_be_given_its_kind_at_registration():
    registry = Registry("head")
    registry.register("identity", nn.Identity, kind="none")
    with pytest.raises(TypeError, match="declare what it is"):
        registry.register("linear", nn.Linear, kind="external")


def test_a_name_cannot_be_registered_twice_for_different_blocks():
    registry = Registry("mixer")
    registry.register("attention", SelfAttention)
    registry.register("attention", SelfAttention)  # the same block again: harmless (a re-run notebook cell)
    with pytest.raises(ValueError, match="a mixer named 'attention' is already registered"):
        registry.register("attention", ExternalAttention)


def test_register_works_as_a_class_decorator():
    registry = Registry("mixer")

    @registry.register("twice")
    class Twice(nn.Module):
        kind = "none"

        def __init__(self, dim: int) -> None:
            super().__init__()

        def forward(self, x: torch.Tensor, return_attn: bool = False):
            return (2 * x, None) if return_attn else 2 * x

    assert registry.build("twice", 4)(torch.ones(1)).item() == 2


def test_a_declared_kind_outside_the_known_ones_is_an_error():
    class Odd(nn.Module):
        kind = "local"

    with pytest.raises(ValueError, match=r"expected Odd.kind to be one of \('external', 'self', 'none'\), got 'local'"):
        Registry("mixer").register("odd", Odd)


def test_configs_check_their_names_when_built():
    with pytest.raises(ValueError, match=r"expected mixer to be one of \('self', 'external'.*got 'conv'"):
        ClassifierConfig(mixer="conv")
    with pytest.raises(ValueError, match=r"expected head to be one of \('external', 'nonlocal', 'none'\)"):
        SegmenterConfig(head="aspp")


def test_configs_check_their_sizes_when_built():
    with pytest.raises(ValueError, match="expected depth >= 1, got 0"):
        ClassifierConfig(depth=0)
    with pytest.raises(ValueError, match="expected patch_size to divide image_size=32, got 5"):
        ClassifierConfig(stem="patch", patch_size=5)


def test_make_head_builds_a_head_by_name():
    head = make_head("external", 8, memory_units=4)
    assert type(head) is ExternalAttention2d and head.memory_units == 4
    assert type(make_head("none", 8)) is nn.Identity
