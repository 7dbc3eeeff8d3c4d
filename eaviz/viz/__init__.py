"""Seeing inside the memory: record attention maps, draw them, and measure what units do.

``record`` captures maps through the mixers' own ``return_attn`` (an attention layer is any
module whose class declares ``kind = "external"`` or ``"self"``, see :mod:`eaviz.registry`);
``maps`` turns them into images; ``overlay`` lays a map over its image; ``plots`` draws them;
``atlas`` finds each memory unit's top images; ``stats`` counts class mass, class
selectivity, object attention and entropy; ``segmentation`` draws label overlays, confusion
matrices and per-class IoU.

Figures follow one rule, here and in ``eaviz.explain``, ``eaviz.bench`` and ``eaviz.widgets``:
library code never touches pyplot's state. A plot function builds a
``matplotlib.figure.Figure(..., layout="constrained")``, takes its axes from
``fig.subplots(...)`` and returns the figure; a notebook shows it as the cell's value or with
``display(fig)``, and a loop leaves no figure open behind it. Every heat map is laid over its
image by :func:`~eaviz.viz.overlay.overlay`, in figures and in the widgets' PNG frames alike.
"""

from eaviz.viz.atlas import MemoryAtlas, build_memory_atlas, plot_memory_atlas
from eaviz.viz.maps import memory_unit_maps, self_attention_maps
from eaviz.viz.overlay import overlay
from eaviz.viz.plots import plot_memory_maps, plot_self_attention, plot_side_by_side
from eaviz.viz.record import AttentionRecord, capture_attention, mixer_names, record_attention
from eaviz.viz.segmentation import (
    plot_class_iou,
    plot_confusion_matrix,
    plot_segmentations,
    rare_classes,
    voc_palette,
)
from eaviz.viz.stats import (
    AttentionEntropy,
    ObjectAttention,
    attention_entropy,
    class_selectivity,
    entropy_by_norm,
    object_attention_fraction,
    plot_class_selectivity,
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
    "class_selectivity",
    "entropy_by_norm",
    "memory_unit_maps",
    "mixer_names",
    "object_attention_fraction",
    "overlay",
    "plot_class_iou",
    "plot_class_selectivity",
    "plot_confusion_matrix",
    "plot_entropy_by_norm",
    "plot_memory_atlas",
    "plot_memory_maps",
    "plot_object_attention",
    "plot_segmentations",
    "plot_self_attention",
    "plot_side_by_side",
    "plot_unit_class_heatmap",
    "rare_classes",
    "record_attention",
    "self_attention_maps",
    "unit_class_mass",
    "voc_palette",
]
