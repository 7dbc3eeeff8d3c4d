"""Draw the book's schematic diagrams into book/_static/diagrams/ (SVG).

Run from the repository root:  python book/make_diagrams.py

figure1-attention.svg: self-attention, simplified self-attention and external attention in a
2 x 2 grid with a key, in the spirit of Figure 1 of Guo et al. (TPAMI 2023), with the shape of
the tensor on every arrow (one sample: N positions, d channels, S memory units).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).parent / "_static" / "diagrams"
# a fixed salt and no date: drawing again gives the same file, so git sees only real changes
plt.rcParams.update({"font.size": 12, "mathtext.fontset": "dejavusans", "svg.hashsalt": "eaviz"})

TENSOR = {"facecolor": "#e8f0fb", "edgecolor": "#3b6ea8"}
OPERATION = {"facecolor": "#fdf1e3", "edgecolor": "#c7812b"}
MEMORY = {"facecolor": "#e6f5e9", "edgecolor": "#3d8b4f"}
# Point sizes for a figure 8.5 in wide shown in a 650 px column: 12 pt is about 12 px on the page.
BOX_FONT, LABEL_FONT, TITLE_FONT, NOTE_FONT = 13.5, 12, 14, 12


def box(ax, x, y, text, style, width=1.7, height=0.62):
    """A rounded box centred at (x, y)."""
    patch = FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.04,rounding_size=0.12",
                           linewidth=1.4, **style)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=BOX_FONT)
    return (x, y, width, height)


def arrow(ax, start, end, label=None, side="right", offset=0.1):
    """An arrow from box ``start`` to box ``end`` with the tensor shape written beside it."""
    (x0, y0, w0, h0), (x1, y1, w1, h1) = start, end
    if abs(x1 - x0) < 1e-6:  # vertical
        sign = -1 if y1 < y0 else 1
        p0, p1 = (x0, y0 + sign * h0 / 2), (x1, y1 - sign * h1 / 2)
    else:  # horizontal
        sign = 1 if x1 > x0 else -1
        p0, p1 = (x0 + sign * w0 / 2, y0), (x1 - sign * w1 / 2, y1)
    ax.add_patch(FancyArrowPatch(p0, p1, arrowstyle="-|>", mutation_scale=13, linewidth=1.2, color="#333333"))
    if label:
        mx, my = (p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2
        if abs(x1 - x0) < 1e-6:
            dx = offset if side == "right" else -offset
            ax.text(mx + dx, my, label, ha="left" if side == "right" else "right", va="center", fontsize=LABEL_FONT,
                    color="#7a2e2e")
        else:
            ax.text(mx, my + 0.12, label, ha="center", va="bottom", fontsize=LABEL_FONT, color="#7a2e2e")


def self_attention(ax):
    ax.set_title("(a) self-attention, eqs. (1)-(2)", fontsize=TITLE_FONT, pad=8)
    f = box(ax, 3.0, 8.2, r"$F$", TENSOR)
    q = box(ax, 1.0, 6.6, r"$Q = F W_q$", OPERATION)
    k = box(ax, 3.0, 6.6, r"$K = F W_k$", OPERATION)
    v = box(ax, 5.0, 6.6, r"$V = F W_v$", OPERATION)
    for target in (q, k, v):
        (x0, y0, _, h0), (x1, y1, _, h1) = f, target
        ax.add_patch(FancyArrowPatch((x0, y0 - h0 / 2), (x1, y1 + h1 / 2), arrowstyle="-|>", mutation_scale=13,
                                     linewidth=1.2, color="#333333"))
    ax.text(2.2, 7.75, r"$N{\times}d$ to each", ha="right", va="center", fontsize=LABEL_FONT, color="#7a2e2e")
    scores = box(ax, 2.0, 4.9, r"softmax$(QK^{\top}/\sqrt{d})$", OPERATION, width=3.4)
    for source, x_end in ((q, 1.4), (k, 2.6)):
        (x0, y0, _, h0) = source
        ax.add_patch(FancyArrowPatch((x0, y0 - h0 / 2), (x_end, 4.9 + 0.31), arrowstyle="-|>", mutation_scale=13,
                                     linewidth=1.2, color="#333333"))
    ax.text(0.62, 5.8, r"$N{\times}d$", ha="right", fontsize=LABEL_FONT, color="#7a2e2e")
    ax.text(2.9, 5.8, r"$N{\times}d$", ha="left", fontsize=LABEL_FONT, color="#7a2e2e")
    a = box(ax, 2.0, 3.3, r"$A$ (map)", TENSOR)
    arrow(ax, scores, a, r"$N{\times}N$")
    out = box(ax, 3.0, 1.7, r"$F_{out} = A V$", OPERATION, width=2.0)
    (x0, y0, _, h0) = a
    ax.add_patch(FancyArrowPatch((x0, y0 - h0 / 2), (2.6, 1.7 + 0.31), arrowstyle="-|>", mutation_scale=13,
                                 linewidth=1.2, color="#333333"))
    ax.text(1.95, 2.5, r"$N{\times}N$", ha="right", fontsize=LABEL_FONT, color="#7a2e2e")
    (x0, y0, _, h0) = v
    ax.add_patch(FancyArrowPatch((x0, y0 - h0 / 2), (3.6, 1.7 + 0.31), arrowstyle="-|>", mutation_scale=13,
                                 linewidth=1.2, color="#333333"))
    ax.text(4.55, 4.0, r"$N{\times}d$", ha="left", fontsize=LABEL_FONT, color="#7a2e2e")
    result = box(ax, 3.0, 0.3, r"output", TENSOR)
    arrow(ax, out, result, r"$N{\times}d$")
    ax.text(3.0, -0.55, r"cost $O(dN^2)$, map $N{\times}N$ per sample", ha="center", fontsize=NOTE_FONT)


def simplified(ax):
    ax.set_title("(b) simplified self-attention, eqs. (3)-(4)", fontsize=TITLE_FONT, pad=8)
    box(ax, 3.0, 8.2, r"$F$", TENSOR)
    scores = box(ax, 3.0, 6.1, r"softmax$(F F^{\top})$", OPERATION, width=2.4)
    ax.add_patch(FancyArrowPatch((2.6, 8.2 - 0.31), (2.6, 6.1 + 0.31), arrowstyle="-|>", mutation_scale=13,
                                 linewidth=1.2, color="#333333"))
    ax.add_patch(FancyArrowPatch((3.4, 8.2 - 0.31), (3.4, 6.1 + 0.31), arrowstyle="-|>", mutation_scale=13,
                                 linewidth=1.2, color="#333333"))
    ax.text(2.5, 7.15, r"1st $F$: $N{\times}d$", ha="right", fontsize=LABEL_FONT, color="#7a2e2e")
    ax.text(3.5, 7.15, r"2nd $F$: $N{\times}d$", ha="left", fontsize=LABEL_FONT, color="#7a2e2e")
    a = box(ax, 3.0, 4.0, r"$A$ (map)", TENSOR)
    arrow(ax, scores, a, r"$N{\times}N$")
    out = box(ax, 3.0, 1.9, r"$F_{out} = A F$", OPERATION)
    arrow(ax, a, out, r"$N{\times}N$")
    ax.plot([3.85, 5.4, 5.4], [8.2, 8.2, 1.9], color="#333333", lw=1.2)  # the third F, around the map
    ax.add_patch(FancyArrowPatch((5.4, 1.9), (3.0 + 0.85, 1.9), arrowstyle="-|>", mutation_scale=13, linewidth=1.2,
                                 color="#333333", shrinkA=0, shrinkB=0))
    ax.text(5.5, 5.0, r"3rd $F$:" "\n" r"$N{\times}d$", ha="left", fontsize=LABEL_FONT, color="#7a2e2e")
    result = box(ax, 3.0, 0.3, r"output", TENSOR)
    arrow(ax, out, result, r"$N{\times}d$")
    ax.text(3.0, -0.55, r"cost $O(dN^2)$; no weights at all", ha="center", fontsize=NOTE_FONT)


def external(ax):
    ax.set_title("(c) external attention, eqs. (7)-(8)", fontsize=TITLE_FONT, pad=8)
    f = box(ax, 2.6, 8.2, r"$F$", TENSOR)
    # the memories sit far enough right that the S x d labels clear both boxes
    mk = box(ax, 5.6, 6.1, r"$M_k$", MEMORY, width=1.1)
    mv = box(ax, 5.6, 1.9, r"$M_v$", MEMORY, width=1.1)
    logits = box(ax, 2.6, 6.1, r"$F M_k^{\top}$", OPERATION)
    arrow(ax, f, logits, r"$N{\times}d$", side="left", offset=0.1)
    arrow(ax, mk, logits, r"$S{\times}d$")
    norm = box(ax, 2.6, 4.0, "double norm\n(eqs. 9-11)", OPERATION, width=2.5, height=1.0)
    arrow(ax, logits, norm, r"$N{\times}S$", side="left")
    out = box(ax, 2.6, 1.9, r"$F_{out} = A M_v$", OPERATION, width=2.3)
    arrow(ax, norm, out, r"$A$: $N{\times}S$", side="left")
    arrow(ax, mv, out, r"$S{\times}d$")
    ax.text(5.4, 4.0, "memories:\nlearned,\nshared by\nall samples", ha="center", va="center", fontsize=LABEL_FONT,
            color="#3d8b4f")
    result = box(ax, 2.6, 0.3, r"output", TENSOR)
    arrow(ax, out, result, r"$N{\times}d$", side="left")
    ax.text(3.0, -0.55, r"cost $O(dSN)$, map $N{\times}S$; two linear layers", ha="center", fontsize=NOTE_FONT)


def key(ax):
    """The fourth panel: what the box colours and the red shapes mean."""
    ax.set_title("key", fontsize=TITLE_FONT, pad=8)
    for y, (text, style) in zip((7.6, 6.3, 5.0), (("tensor", TENSOR), ("operation", OPERATION),
                                                  ("learned memory", MEMORY))):
        box(ax, 1.2, y, "", style, width=1.4)
        ax.text(2.3, y, text, ha="left", va="center", fontsize=BOX_FONT)
    ax.text(0.5, 3.6, r"$N{\times}d$", ha="center", va="center", fontsize=LABEL_FONT, color="#7a2e2e")
    ax.text(2.3, 3.6, "shape of the tensor\non the arrow", ha="left", va="center", fontsize=BOX_FONT)
    ax.text(-0.3, 1.2, "One sample: $N$ positions with\n$d$ channels, $F \\in \\mathbb{R}^{N \\times d}$;\n"
            "$S$ memory units.", ha="left", va="center", fontsize=BOX_FONT)


def figure1(path: Path) -> None:
    """Three operators and a key in a 2 x 2 grid, so that the text stays large in a page column."""
    fig, axes = plt.subplots(2, 2, figsize=(8.5, 10.4))
    for ax, draw in zip(axes.flat, (self_attention, simplified, external, key)):
        ax.set_xlim(-0.4, 6.4)
        ax.set_ylim(-0.9, 8.9)
        ax.axis("off")
        draw(ax)
    fig.tight_layout(h_pad=2.0)
    fig.savefig(path, bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    figure1(OUT / "figure1-attention.svg")
    print("wrote", OUT / "figure1-attention.svg")
