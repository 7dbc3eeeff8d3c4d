"""Specs for class selectivity of memory units (untrained vs trained controls)."""

import math

import pytest
import torch
from matplotlib.figure import Figure

from eaviz.viz import class_selectivity, plot_class_selectivity


def test_a_unit_that_serves_one_class_has_selectivity_one_and_an_even_unit_zero():
    mass = torch.tensor([[0.6, 0.0, 0.0], [0.2, 0.2, 0.2], [0.4, 0.2, 0.2]])
    torch.testing.assert_close(class_selectivity(mass), torch.tensor([1.0, 0.0, 1 / 3]))


def test_classes_absent_from_the_data_are_left_out():
    mass = torch.tensor([[0.4, 0.2, math.nan], [0.3, 0.3, math.nan]])
    torch.testing.assert_close(class_selectivity(mass), torch.tensor([1 / 3, 0.0]))


def test_selectivity_needs_two_classes():
    with pytest.raises(ValueError, match=r"mass of shape \(S, C\) with C >= 2"):
        class_selectivity(torch.ones(4, 1))


def test_selectivity_plot_has_one_line_per_model():
    fig = plot_class_selectivity({"untrained": torch.rand(8), "trained": torch.rand(8)})
    assert isinstance(fig, Figure) and len(fig.axes[0].get_lines()) == 2


def test_selectivity_plot_scales_its_y_axis_to_the_largest_value():
    fig = plot_class_selectivity({"trained": torch.tensor([0.1, 0.2, 0.28])})
    low, high = fig.axes[0].get_ylim()
    assert low == 0 and 0.28 < high <= 0.35


def test_selectivity_plots_can_share_one_figure():
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plot_class_selectivity({"a": torch.rand(4)}, ax=left) is fig
    assert plot_class_selectivity({"b": torch.rand(4)}, ax=right) is fig
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 1]
