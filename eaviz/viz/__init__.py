"""Seeing inside the memory: record attention maps, draw them, and measure what units do.

``record`` captures maps through the mixers' own ``return_attn``; ``maps`` turns them into
images; ``plots`` draws them; ``atlas`` finds each memory unit's top images; ``stats``
counts class mass, object attention and entropy.
"""

from eaviz.viz.atlas import MemoryAtlas, build_memory_atlas, plot_memory_atlas
from eaviz.viz.maps import memory_unit_maps, self_attention_maps
from eaviz.viz.plots import plot_memory_maps, plot_self_attention, plot_side_by_side
from eaviz.viz.record import AttentionRecord, capture_attention, mixer_names, record_attention
from eaviz.viz.stats import (
    AttentionEntropy,
    ObjectAttention,
    attention_entropy,
    entropy_by_norm,
    object_attention_fraction,
    plot_entropy_by_norm,
    plot_object_attention,
    plot_unit_class_heatmap,
    unit_class_mass,
)

__all__ = [
    "AttentionEntropy",
    "AttentionRecord",
    "MemoryAtlas",
    "ObjectAttention",
    "attention_entropy",
    "build_memory_atlas",
    "capture_attention",
    "entropy_by_norm",
    "memory_unit_maps",
    "mixer_names",
    "object_attention_fraction",
    "plot_entropy_by_norm",
    "plot_memory_atlas",
    "plot_memory_maps",
    "plot_object_attention",
    "plot_self_attention",
    "plot_side_by_side",
    "plot_unit_class_heatmap",
    "record_attention",
    "self_attention_maps",
    "unit_class_mass",
]
