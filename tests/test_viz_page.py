"""Figures drawn at the book's column width: wide ones shrink in inches, not in pixels."""

import base64
import io

import IPython.core.pylabtools
from matplotlib.figure import Figure
from PIL import Image

from eaviz.viz.page import PAGE_INCHES, png_at_page_width, show_figures_at_page_width


def wide_figure(width: float) -> Figure:
    fig = Figure(figsize=(width, 3), dpi=100)
    for ax in fig.subplots(1, 4):
        ax.plot([0, 1], [1, 0])
        ax.set_title("a title")
    return fig


def test_a_wide_figure_is_drawn_page_wide_with_its_pixels_kept(monkeypatch):
    drawn = []
    real = IPython.core.pylabtools.print_figure

    def record(fig, *args, **kwargs):
        drawn.append((fig.get_size_inches()[0], fig.dpi, fig.get_layout_engine()))
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(IPython.core.pylabtools, "print_figure", record)
    fig = wide_figure(14.0)  # 1,400 px at 100 dpi
    png = Image.open(io.BytesIO(base64.b64decode(png_at_page_width(fig))))
    width, dpi, engine = drawn[0]
    assert width == PAGE_INCHES and dpi * width == 100 * 14.0 and engine is not None
    assert 1300 < png.width <= 1450  # 14 in x 100 dpi, as drawn before, plus the tight box's margins
    assert tuple(fig.get_size_inches()) == (14.0, 3.0) and fig.dpi == 100  # given back


def test_a_figure_narrower_than_the_page_is_drawn_as_it_is(monkeypatch):
    drawn = []
    monkeypatch.setattr(IPython.core.pylabtools, "print_figure", lambda fig, *a, **k: drawn.append(
        (fig.get_size_inches()[0], fig.dpi)) or "")
    png_at_page_width(wide_figure(5.0))
    assert drawn == [(5.0, 100)]


def test_outside_a_notebook_nothing_changes():
    assert show_figures_at_page_width() is False
