"""Semantic segmentation: a backbone at output stride 8 and an attention head by name.

``head="external"`` is EANet's head (an :class:`~eaviz.attention2d.ExternalAttention2d`
block between a 1x1 and a 3x3 convolution), ``"nonlocal"`` puts a non-local
(self-attention) block there, ``"none"`` leaves the convolutions alone. The backbones live in
:mod:`eaviz.models.backbones`; the VOC models use EfficientNet-Lite0 with ImageNet weights,
frozen, so that its features can be computed once and cached (:mod:`eaviz.feature_cache`).

    images (B, 3, H, W) -> backbone -> features (B, C, H/8, W/8) -> head -> logits (B, K, H, W)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from eaviz._checks import check_choice
from eaviz.attention2d import HEADS, make_head
from eaviz.models.backbones import BACKBONES, build_backbone
from eaviz.models.common import IMAGENET_MEAN, IMAGENET_STD, Normalize, conv_bn_act

LITE0_MEAN = LITE0_STD = (0.5, 0.5, 0.5)  # EfficientNet-Lite's TF training maps pixels to [-1, 1]
VOC_BACKBONE = "efficientnet_lite0"

__all__ = ["BACKBONES", "HEADS", "Segmenter", "SegmenterConfig", "VOC_BACKBONE"]


@dataclass
class SegmenterConfig:
    """Settings of a :class:`Segmenter`; a checkpoint stores them as a dict."""

    num_classes: int = 21  # read off the dataset by the CLI
    head: str = "external"  # attention head: EANet block ("external"), non-local, or none
    backbone: str = "small"  # "small" (from scratch), "resnet18" or "efficientnet_lite0" (VOC's default)
    pretrained_backbone: bool = False  # ImageNet weights: torchvision download (resnet18) or pip package (lite0)
    freeze_backbone: bool = False  # keep the backbone's weights and BatchNorm statistics fixed
    width: int = 128  # channels of the backbone output and the head
    memory_units: int = 64  # memory units S of external attention
    norm: str = "double"  # external attention: softmax over tokens then l1 over units ("double"), or softmax
    dropout: float = 0.1  # dropout before the classifier
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per-channel mean the model subtracts from images in [0, 1]
    std: tuple[float, float, float] = IMAGENET_STD  # per-channel standard deviation the model divides by

    def __post_init__(self) -> None:
        HEADS.resolve(self.head)
        check_choice(self.backbone, tuple(BACKBONES), "backbone")

    def to_dict(self) -> dict:
        return {"kind": "segmenter", **asdict(self)}


def voc_config(head: str, **overrides) -> SegmenterConfig:
    """The VOC models' settings: frozen EfficientNet-Lite0 with its ImageNet weights and its normalisation."""
    fields = {"backbone": VOC_BACKBONE, "pretrained_backbone": True, "freeze_backbone": True, "width": 64}
    return SegmenterConfig(head=head, mean=LITE0_MEAN, std=LITE0_STD, **{**fields, **overrides})


def attention_head(config: SegmenterConfig) -> nn.Module:
    """The head named by ``config.head``, given the config fields it takes (``memory_units``, ``norm``)."""
    return make_head(config.head, config.width, **HEADS.settings(config.head, vars(config)))


class Segmenter(nn.Module):
    """images: (B, 3, H, W) in [0, 1] -> logits: (B, num_classes, H, W)."""

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.config = config
        self.normalize = Normalize(config.mean, config.std)
        self.backbone, channels = build_backbone(
            config.backbone, width=config.width, pretrained=config.pretrained_backbone
        )
        if config.freeze_backbone:
            self.backbone.requires_grad_(False)
        self.conv_in = nn.Sequential(
            nn.Conv2d(channels, config.width, 1, bias=False), nn.BatchNorm2d(config.width), nn.ReLU()
        )
        self.attention = attention_head(config)
        self.conv_out = conv_bn_act(config.width, config.width, act=nn.ReLU)
        self.classifier = nn.Sequential(nn.Dropout2d(config.dropout), nn.Conv2d(config.width, config.num_classes, 1))

    def train(self, mode: bool = True) -> "Segmenter":
        """A frozen backbone stays in eval mode, so its BatchNorm statistics never move."""
        super().train(mode)
        if self.config.freeze_backbone:
            self.backbone.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1] -> backbone features (B, C, H/8, W/8)."""
        return self.backbone(self.normalize(images))

    def head(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """features (B, C, h, w) -> logits (B, num_classes, *size), upsampled bilinearly."""
        logits = self.classifier(self.conv_out(self.attention(self.conv_in(features))))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images), images.shape[-2:])

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the backbone: what a frozen-backbone checkpoint needs to store."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    def load_head_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a :meth:`head_state_dict`; the backbone keeps the weights it was built with."""
        expected = set(self.head_state_dict())
        if set(state) != expected:
            missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(f"expected the head's tensors; missing {missing[:5]}, unexpected {unexpected[:5]}")
        self.load_state_dict(state, strict=False)
