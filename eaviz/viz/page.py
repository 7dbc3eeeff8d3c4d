"""Figures drawn for the book's column: a wide figure keeps its text readable at page width.

The website shows a figure at most one text column wide (about 650 px). A figure drawn
13 inches wide is shrunk to fit, and its 9-point labels end up 5 px tall. In a notebook,
:func:`show_figures_at_page_width` (called by ``eaviz.setup``) draws every figure wider than
:data:`PAGE_INCHES` at that width instead, with the same number of pixels: the panels take
the same room on the page and the text keeps its size in points, so it comes out readable.
"""

from __future__ import annotations

from matplotlib.figure import Figure

PAGE_INCHES = 8.5  # wider figures are drawn this wide: their text comes out at least 8/8.5 of its size in the column


def png_at_page_width(fig: Figure, width: float = PAGE_INCHES) -> str:
    """The figure as a base64 PNG, drawn at most ``width`` inches wide with its pixel size kept.

    A figure without a layout engine gets the constrained one for this drawing, so that its
    larger-looking labels do not overlap. The figure gets its size and resolution back.
    """
    from IPython.core.pylabtools import print_figure

    size, dpi, engine = fig.get_size_inches().copy(), fig.dpi, fig.get_layout_engine()
    scale = min(1.0, width / size[0])
    try:
        if scale < 1.0:
            fig.set_size_inches(size * scale)
            fig.set_dpi(dpi / scale)
            if engine is None:
                fig.set_layout_engine("constrained")
        return print_figure(fig, "png", bbox_inches="tight", base64=True)
    finally:
        fig.set_size_inches(size)
        fig.set_dpi(dpi)
        if engine is None:
            fig.set_layout_engine("none")


def show_figures_at_page_width(width: float = PAGE_INCHES) -> bool:
    """Make the running notebook draw every figure with :func:`png_at_page_width`.

    Returns False outside IPython (a script, a test), where nothing changes.
    """
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return False
    import matplotlib
    import matplotlib.pyplot as plt

    plt.switch_backend(matplotlib.get_backend())  # load it now: the inline backend registers its printer on load
    shell.display_formatter.formatters["image/png"].for_type(Figure, lambda fig: png_at_page_width(fig, width))
    return True
