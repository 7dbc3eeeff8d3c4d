"""Models that take images in [0, 1] and a token mixer or attention head by name."""

from __future__ import annotations

from torch import nn

from eaviz._checks import check_choice
from eaviz.models.classifier import Classifier, ClassifierConfig
from eaviz.models.fast_classifier import FastClassifier, FastClassifierConfig
from eaviz.models.segmenter import Segmenter, SegmenterConfig

__all__ = [
    "Classifier",
    "ClassifierConfig",
    "FastClassifier",
    "FastClassifierConfig",
    "Segmenter",
    "SegmenterConfig",
    "build_model",
    "config_from_dict",
]

CONFIGS = {"classifier": ClassifierConfig, "fast_classifier": FastClassifierConfig, "segmenter": SegmenterConfig}


def config_from_dict(data: dict) -> ClassifierConfig | FastClassifierConfig | SegmenterConfig:
    """Inverse of ``config.to_dict()``: ``{"kind": "classifier", ...}`` -> a config dataclass."""
    data = dict(data)
    kind = check_choice(data.pop("kind", None), sorted(CONFIGS), "config kind")
    for key in ("mean", "std"):
        if key in data:
            data[key] = tuple(data[key])
    return CONFIGS[kind](**data)


def build_model(config: ClassifierConfig | FastClassifierConfig | SegmenterConfig | dict) -> nn.Module:
    """A fresh model from a config dataclass or its dict form."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    if isinstance(config, ClassifierConfig):
        return Classifier(config)
    if isinstance(config, FastClassifierConfig):
        return FastClassifier(config)
    if isinstance(config, SegmenterConfig):
        return Segmenter(config)
    raise TypeError(f"expected a ClassifierConfig, SegmenterConfig or dict, got {type(config).__name__}")
