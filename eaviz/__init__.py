"""eaviz: external attention, explained, trained and visualised.

The names a notebook needs are importable from here; everything else lives in the
submodules (``eaviz.attention``, ``eaviz.models``, ``eaviz.data``, ``eaviz.train``,
``eaviz.viz``, ``eaviz.widgets``, ``eaviz.explain``, ``eaviz.bench``).
"""

__version__ = "0.1.0"

from eaviz.attention import (  # noqa: E402
    ExternalAttention,
    MultiHeadExternalAttention,
    NoMixer,
    SelfAttention,
    double_normalization,
    make_mixer,
    register_mixer,
)
from eaviz.attention2d import ExternalAttention2d, NonLocal2d  # noqa: E402
from eaviz.data import load_dataset  # noqa: E402
from eaviz.models import Classifier, ClassifierConfig, Segmenter, SegmenterConfig, build_model  # noqa: E402
from eaviz.pretrained import load_pretrained  # noqa: E402
from eaviz.profile import chapter_data, setup  # noqa: E402
from eaviz.train import TrainConfig, evaluate, train  # noqa: E402

__all__ = [
    "Classifier",
    "ClassifierConfig",
    "ExternalAttention",
    "ExternalAttention2d",
    "MultiHeadExternalAttention",
    "NoMixer",
    "NonLocal2d",
    "Segmenter",
    "SegmenterConfig",
    "SelfAttention",
    "TrainConfig",
    "build_model",
    "chapter_data",
    "double_normalization",
    "evaluate",
    "load_dataset",
    "load_pretrained",
    "make_mixer",
    "register_mixer",
    "setup",
    "train",
]
