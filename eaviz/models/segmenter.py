"""Semantic segmentation: a small backbone at output stride 8 and an attention head by name.

``head="external"`` is EANet's head (an :class:`~eaviz.attention2d.ExternalAttention2d`
block between two 3x3 convolutions), ``"nonlocal"`` puts a non-local (self-attention) block
there, ``"none"`` leaves the convolutions alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from eaviz._checks import check_choice
from eaviz.attention2d import HEADS, make_head
from eaviz.models.common import IMAGENET_MEAN, IMAGENET_STD, Normalize, conv_bn_act

BACKBONES = ("small", "resnet18")


@dataclass
class SegmenterConfig:
    """Settings of a :class:`Segmenter`; a checkpoint stores them as a dict."""

    num_classes: int = 21  # read off the dataset by the CLI
    head: str = "external"  # attention head: EANet block ("external"), non-local, or none
    backbone: str = "small"  # "small" (trained from scratch) or "resnet18" (its first 2 stages)
    pretrained_backbone: bool = False  # ImageNet weights for "resnet18" (downloads, online only)
    width: int = 128  # channels of the backbone output and the head
    memory_units: int = 64  # memory units S of external attention
    norm: str = "double"  # external attention: softmax over tokens then l1 over units ("double"), or softmax
    dropout: float = 0.1  # dropout before the classifier
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per-channel mean the model subtracts from images in [0, 1]
    std: tuple[float, float, float] = IMAGENET_STD  # per-channel standard deviation the model divides by

    def __post_init__(self) -> None:
        HEADS.resolve(self.head)
        check_choice(self.backbone, BACKBONES, "backbone")

    def to_dict(self) -> dict:
        return {"kind": "segmenter", **asdict(self)}


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


def attention_head(config: SegmenterConfig) -> nn.Module:
    """The head named by ``config.head``, given the config fields it takes (``memory_units``, ``norm``)."""
    return make_head(config.head, config.width, **HEADS.settings(config.head, vars(config)))


class Segmenter(nn.Module):
    """images: (B, 3, H, W) in [0, 1] -> logits: (B, num_classes, H, W)."""

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.config = config
        self.normalize = Normalize(config.mean, config.std)
        if config.backbone == "resnet18":
            self.backbone = resnet18_backbone(config.pretrained_backbone)
            backbone_channels = 128
        else:
            self.backbone = small_backbone(config.width)
            backbone_channels = config.width
        self.conv_in = conv_bn_act(backbone_channels, config.width, act=nn.ReLU)
        self.attention = attention_head(config)
        self.conv_out = conv_bn_act(config.width, config.width, act=nn.ReLU)
        self.classifier = nn.Sequential(nn.Dropout2d(config.dropout), nn.Conv2d(config.width, config.num_classes, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.conv_out(self.attention(self.conv_in(self.backbone(self.normalize(images)))))
        logits = self.classifier(features)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
