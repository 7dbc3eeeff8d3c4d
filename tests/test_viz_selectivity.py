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
