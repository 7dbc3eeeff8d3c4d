"""Specs for the classifier, the EAMLP preset, the segmenter and their configs."""

import pytest
import torch

from eaviz.attention import MIXERS, ExternalAttention, MultiHeadExternalAttention
from eaviz.attention2d import ExternalAttention2d, NonLocal2d
from eaviz.models import (
    Classifier,
    ClassifierConfig,
    Segmenter,
    SegmenterConfig,
    build_model,
    config_from_dict,
)
from eaviz.models.segmenter import HEADS


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small_classifier(**overrides) -> ClassifierConfig:
    return ClassifierConfig(**{"dim": 32, "depth": 1, "heads": 2, "memory_units": 8, **overrides})


def small_segmenter(**overrides) -> SegmenterConfig:
    return SegmenterConfig(**{"width": 16, "memory_units": 8, **overrides})


def images(batch: int = 2, size: int | tuple[int, int] = 32) -> torch.Tensor:
    h, w = (size, size) if isinstance(size, int) else size
    return torch.rand(batch, 3, h, w)


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_classifier_gives_one_logit_per_class_for_every_mixer(mixer):
    model = Classifier(small_classifier(mixer=mixer)).eval()
    assert model(images()).shape == (2, 10)


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_classifier_blocks_hold_the_named_mixer(mixer):
    model = Classifier(small_classifier(mixer=mixer, depth=2))
    assert all(type(block.mixer) is MIXERS[mixer] for block in model.blocks)


def test_classifier_tokens_lie_on_an_8_by_8_grid():
    model = Classifier(small_classifier()).eval()
    assert model.grid_size == 8
    assert model.features(images()).shape == (2, 64, 32)
    assert model.token_grid(model.features(images())).shape == (2, 32, 8, 8)


def test_classifier_mixer_returns_its_map_over_the_64_tokens():
    model = Classifier(small_classifier(mixer="external")).eval()
    _, attn = model.blocks[0].mixer(torch.randn(2, 64, 32), return_attn=True)
    assert attn.shape == (2, 64, 8)


def test_eamlp_preset_is_an_all_mlp_with_multihead_external_attention():
    config = ClassifierConfig.eamlp(dim=32, depth=1, heads=2, memory_units=8)
    assert (config.stem, config.mixer) == ("patch", "multihead_external")
    model = Classifier(config).eval()
    assert isinstance(model.blocks[0].mixer, MultiHeadExternalAttention)
    assert not any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert model(images()).shape == (2, 10)


def test_classifier_passes_memory_units_and_norm_to_external_attention():
    model = Classifier(small_classifier(mixer="external", memory_units=12, norm="softmax"))
    mixer = model.blocks[0].mixer
    assert isinstance(mixer, ExternalAttention)
    assert (mixer.memory_units, mixer.norm) == (12, "softmax")


def test_classifier_num_classes_sets_the_logits():
    assert Classifier(small_classifier(num_classes=100)).eval()(images()).shape == (2, 100)


@pytest.mark.parametrize("head", HEADS)
def test_segmenter_gives_logits_at_input_resolution_for_every_head(head):
    model = Segmenter(small_segmenter(head=head)).eval()
    assert model(images(1, (40, 56))).shape == (1, 21, 40, 56)


def test_segmenter_with_resnet18_backbone_gives_logits_at_input_resolution():
    model = Segmenter(small_segmenter(backbone="resnet18")).eval()
    assert model(images(1, 32)).shape == (1, 21, 32, 32)


@pytest.mark.parametrize(
    ("head", "block"), [("external", ExternalAttention2d), ("nonlocal", NonLocal2d), ("none", torch.nn.Identity)]
)
def test_segmenter_attention_block_is_the_named_head(head, block):
    assert type(Segmenter(small_segmenter(head=head)).attention) is block


@pytest.mark.parametrize("config", [small_classifier(mixer="self"), small_segmenter(head="nonlocal")])
def test_config_survives_a_round_trip_through_a_dict(config):
    assert config_from_dict(config.to_dict()) == config


def test_config_survives_a_round_trip_through_json_lists():
    """JSON turns tuples into lists; config_from_dict turns them back."""
    data = ClassifierConfig.eamlp().to_dict()
    data["mean"], data["std"] = list(data["mean"]), list(data["std"])
    assert config_from_dict(data) == ClassifierConfig.eamlp()


@pytest.mark.parametrize(("config", "cls"), [(small_classifier(), Classifier), (small_segmenter(), Segmenter)])
def test_build_model_accepts_a_config_or_its_dict(config, cls):
    assert type(build_model(config)) is cls
    assert type(build_model(config.to_dict())) is cls


def test_config_from_dict_rejects_an_unknown_kind():
    expected = r"expected config kind to be one of \['classifier', 'fast_classifier', 'segmenter'\], got 'gan'"
    with pytest.raises(ValueError, match=expected):
        config_from_dict({"kind": "gan"})


def test_build_model_rejects_other_objects():
    with pytest.raises(TypeError, match="expected a ClassifierConfig, SegmenterConfig or dict, got str"):
        build_model("external")


def test_classifier_rejects_an_unknown_stem():
    with pytest.raises(ValueError, match=r"expected stem to be one of \('conv', 'patch'\), got 'vit'"):
        Classifier(small_classifier(stem="vit"))


def test_classifier_rejects_an_unknown_mixer_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"expected mixer to be one of \('self', 'external', .*\), got 'conv'"):
        Classifier(small_classifier(mixer="conv"))


def test_classifier_rejects_a_patch_size_that_does_not_divide_the_image():
    with pytest.raises(ValueError, match="expected patch_size to divide image_size=32, got 5"):
        Classifier(small_classifier(stem="patch", patch_size=5))


def test_conv_stem_needs_patch_size_4():
    with pytest.raises(ValueError, match="expected patch_size=4, got 8"):
        Classifier(small_classifier(patch_size=8))


def test_segmenter_rejects_an_unknown_head():
    with pytest.raises(ValueError, match=r"expected head to be one of \('external', 'nonlocal', 'none'\), got 'aspp'"):
        Segmenter(small_segmenter(head="aspp"))


def test_segmenter_rejects_an_unknown_backbone():
    with pytest.raises(ValueError, match=r"expected backbone to be one of \('small', 'resnet18', .*\), got 'vgg'"):
        Segmenter(small_segmenter(backbone="vgg"))


def test_classifier_rejects_images_of_another_size():
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, 32, 32\), got \(2, 3, 64, 64\)"):
        Classifier(small_classifier())(images(size=64))


@pytest.mark.parametrize("model", ["classifier", "segmenter"])
def test_model_rejects_grey_images(model):
    net = Classifier(small_classifier()) if model == "classifier" else Segmenter(small_segmenter())
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\), got \(2, 1, 32, 32\)"):
        net(torch.rand(2, 1, 32, 32))


@pytest.mark.parametrize("model", ["classifier", "segmenter"])
def test_model_in_eval_mode_rejects_images_outside_0_1(model):
    net = Classifier(small_classifier()) if model == "classifier" else Segmenter(small_segmenter())
    net.eval()  # training steps skip the range check: reading values would sync a GPU every step
    with pytest.raises(ValueError, match=r"expected images with values in \[0, 1\], got range \[.*, 255\]"):
        net(images() * 255)


@pytest.mark.parametrize("model", ["classifier", "segmenter"])
def test_model_rejects_uint8_images(model):
    net = Classifier(small_classifier()) if model == "classifier" else Segmenter(small_segmenter())
    with pytest.raises(TypeError, match=r"expected images to be a floating-point tensor, got dtype torch.uint8"):
        net((images() * 255).to(torch.uint8))
