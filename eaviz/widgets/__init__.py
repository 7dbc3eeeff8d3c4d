"""Interactive views of attention: a live explorer, and static explorers for the website.

:class:`AttentionExplorer` needs a running kernel: every control calls back into Python,
which reads the cached attention of the chosen image and renders a PNG. On the book's
static pages Python callbacks do nothing, so :func:`static_unit_explorer` and
:func:`static_query_explorer` precompute one small JPEG per memory unit (or query position)
and let a slider pick among them in the browser (``jslink`` to a ``Stack``);
:func:`static_memory_explorer` does so for every unit of every mixer layer, behind a layer
menu, and :func:`page_weight` measures what such a widget adds to the page.
"""

from eaviz.widgets.explorer import AttentionExplorer
from eaviz.widgets.static import (
    MemoryExplorer,
    PageWeight,
    StaticExplorer,
    page_weight,
    static_memory_explorer,
    static_query_explorer,
    static_unit_explorer,
)

__all__ = [
    "AttentionExplorer",
    "MemoryExplorer",
    "PageWeight",
    "StaticExplorer",
    "page_weight",
    "static_memory_explorer",
    "static_query_explorer",
    "static_unit_explorer",
]
