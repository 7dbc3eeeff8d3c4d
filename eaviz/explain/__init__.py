"""Explanations next to attention maps: captum attributions and deletion / insertion curves.

An attention map says where a layer *looked*; an attribution says which pixels *changed the
prediction*. :func:`attribute` computes four classic attributions through captum, in the same
form as the attention maps, ``(B, H, W)`` and non-negative:

=======================  ======================================================  ===============
method                   what it measures                                        made positive by
=======================  ======================================================  ===============
``integrated_gradients`` path integral of gradients from a black image           abs, sum over RGB
``saliency``             gradient of the class logit w.r.t. the pixels           abs, max over RGB
``grad_cam``             channel-weighted activations of ``model.token_grid``    ReLU (the paper's)
``occlusion``            drop of the class logit when a patch is blacked out     ReLU
=======================  ======================================================  ===============

Whether any map -- attention or attribution -- is *faithful* to the model is measured by the
deletion and insertion curves of Petsiuk et al. (RISE, 2018): remove the most important
pixels first and watch the class probability fall (a low area under the curve is good), or
insert them into a blurred image and watch it rise (a high area is good).
:func:`auc_differences` compares any map with random maps on the same images, with
bootstrap intervals, and :func:`curve_differences` compares curves already computed with any
one of them (random maps, or :func:`centre_prior`, the baseline every map should beat).

External attention itself is class-agnostic. :func:`unit_grad_cam` weights the memory units
by the gradient of the class logit (Grad-CAM over units) and :func:`value_norm_map` measures
what the memory writes at each position, ``|| alpha @ M_v ||``.
"""

from eaviz.explain.attribution import METHODS, Target, attribute
from eaviz.explain.classaware import centre_prior, unit_grad_cam, value_memory, value_norm_map
from eaviz.explain.faithfulness import (
    BASELINES,
    MODES,
    Curve,
    baseline_images,
    deletion_curve,
    faithfulness_curves,
    faithfulness_table,
    gaussian_blur,
)
from eaviz.explain.figures import plot_explanations, plot_faithfulness
from eaviz.explain.paired import AucDifference, AucTable, auc_differences, bootstrap_interval, curve_differences

__all__ = [
    "AucDifference",
    "AucTable",
    "BASELINES",
    "METHODS",
    "MODES",
    "Curve",
    "Target",
    "attribute",
    "auc_differences",
    "bootstrap_interval",
    "baseline_images",
    "centre_prior",
    "curve_differences",
    "deletion_curve",
    "faithfulness_curves",
    "faithfulness_table",
    "gaussian_blur",
    "plot_explanations",
    "plot_faithfulness",
    "unit_grad_cam",
    "value_memory",
    "value_norm_map",
]
