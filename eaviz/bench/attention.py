"""What external attention saves as the number of tokens N grows: time and peak memory of one call.

By default it compares self-attention written out (the N x N map is built), self-attention
through ``F.scaled_dot_product_attention`` (fused) and external attention (an N x S map);
any registered mixer can join by name. Peak memory is the most memory allocated at any moment
during one call, above what was allocated before it (weights and inputs are not counted).
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from torch import nn
from tqdm.auto import tqdm

from eaviz._checks import check_choice, check_number
from eaviz.attention import MIXERS, ExternalAttention, SelfAttention, make_mixer
from eaviz.bench.measure import MB, bench_device, peak_memory_bytes, time_call
from eaviz.bench.results import finish, result_rows
from eaviz.paths import writable_folder
from eaviz.registry import kind_of
from eaviz.viz.page import PAGE_INCHES

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# The book's comparison: name -> (label, mixer). Other names are looked up in eaviz.attention.MIXERS.
ATTENTION_MIXERS = {
    "self": ("self-attention (plain)", partial(SelfAttention, fused=False)),
    "self_fused": ("self-attention (fused SDPA)", partial(SelfAttention, fused=True)),
    "external": ("external attention", ExternalAttention),
}


def _label_and_mixer(name: str):
    """(label, mixer) of a name of ATTENTION_MIXERS or of a registered mixer with an attention map."""
    if name in ATTENTION_MIXERS:
        return ATTENTION_MIXERS[name]
    if MIXERS.kind(name) == "none":
        raise ValueError(f"expected mixers with an attention map to compare, got {name!r}, whose kind is 'none'")
    return name, MIXERS.resolve(name)


def build_mixer(name: str, dim: int, memory_units: int) -> nn.Module:
    """The single-head mixer ``name`` on ``dim`` features (``memory_units`` = S where it has memories)."""
    mixer = _label_and_mixer(name)[1]
    return make_mixer(mixer, dim, **MIXERS.settings(mixer, {"heads": 1, "memory_units": memory_units}))


def map_width(module: nn.Module, tokens: int) -> int:
    """K of the (N, K) map one call builds: S for external attention, N for self-attention written out,
    0 for a fused kernel (it never builds the map) or a mixer without a map."""
    kind = kind_of(module)
    if kind == "external":
        return module.memory_units
    return tokens if kind == "self" and not getattr(module, "fused", False) else 0


def _estimate(module: nn.Module, tokens: int, *, dim: int, batch: int, itemsize: int, backward: bool) -> int:
    maps = 4 if backward else 2
    return batch * itemsize * (maps * tokens * map_width(module, tokens) + 12 * tokens * dim)


def estimate_attention_bytes(
    mixer: str, tokens: int, *, dim: int, memory_units: int, batch: int, itemsize: int, backward: bool
) -> int:
    """A deliberately generous guess of one call's peak memory, to skip sizes that cannot fit.

    The maps dominate: up to 2 maps of N x K in the forward pass and 4 in the backward
    (:func:`map_width` gives K). Token-sized tensors (q, k, v, outputs, grads) add ~12 N d.
    """
    module = build_mixer(mixer, dim, memory_units)
    return _estimate(module, tokens, dim=dim, batch=batch, itemsize=itemsize, backward=backward)


def _dtypes(dtype: str | Sequence[str] | None, device: torch.device) -> tuple[str, ...]:
    if dtype is None:
        return ("float32", "bfloat16") if device.type == "cuda" else ("float32",)
    names = (dtype,) if isinstance(dtype, str) else tuple(dtype)
    return tuple(check_choice(name, sorted(DTYPES), "dtype") for name in names)


def _memory_limit_bytes(max_memory_gb: float | None, device: torch.device) -> float:
    """The caller's limit, else 90% of the GPU, else a quarter of RAM (the CPU is usually shared)."""
    if max_memory_gb is not None:
        return max_memory_gb * 1e9
    if device.type == "cuda":
        return 0.9 * torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 4


def _measure(module: nn.Module, x: torch.Tensor, *, backward: bool, min_run_time: float) -> dict:
    """Forward (inference mode) and forward + backward time and peak memory of one call."""

    def forward() -> None:
        with torch.inference_mode():
            module(x)

    def forward_backward() -> None:
        module.zero_grad(set_to_none=True)
        module(x).backward(grad)

    grad = torch.ones_like(x)
    # Memory first, while the module holds no gradients, so the new ones count in the peak.
    row = {"forward_peak_mb": peak_memory_bytes(forward, x.device) / MB}
    if backward:
        row["forward_backward_peak_mb"] = peak_memory_bytes(forward_backward, x.device) / MB
    row["forward_ms"] = 1e3 * time_call(forward, min_run_time=min_run_time)
    if backward:
        row["forward_backward_ms"] = 1e3 * time_call(forward_backward, min_run_time=min_run_time)
    return row


def bench_attention(
    sizes: Sequence[int] = (256, 1024, 4096, 16384),
    *,
    mixers: Sequence[str] = tuple(ATTENTION_MIXERS),
    dim: int = 64,
    memory_units: int = 64,
    batch: int = 1,
    device: str = "auto",
    dtype: str | Sequence[str] | None = None,
    backward: bool = True,
    max_memory_gb: float | None = None,
    min_run_time: float = 0.5,
    out: str | Path | None = None,
    verbose: bool = True,
) -> list[dict]:
    """Time and memory of each of ``mixers`` on ``(batch, N, dim)`` tokens, for each N in ``sizes``.

    One row per (N, dtype, mixer), each a single-head mixer (external attention with
    ``memory_units`` = S). ``mixers``: names of ``ATTENTION_MIXERS`` or of registered mixers.
    ``dtype`` None means float32, plus bfloat16 on CUDA. A case whose
    :func:`estimate_attention_bytes` exceeds ``max_memory_gb`` (default: 90% of the GPU, or a
    quarter of the machine's RAM) is recorded with ``skipped=True`` and the reason instead of
    being run. With ``out``, the rows are saved as ``out/attention-<device>-<date>.json``; with
    ``verbose``, a progress bar and the markdown table are shown.
    """
    for n in sizes:
        check_number(n, "sizes", low=1, integer=True)
    for name, value in {"dim": dim, "memory_units": memory_units, "batch": batch}.items():
        check_number(value, name, low=1, integer=True)
    check_number(min_run_time, "min_run_time", low=0, low_open=True)
    resolved = bench_device(device)
    if out is not None:
        writable_folder(out, argument="out (--out)")
    dtypes = _dtypes(dtype, resolved)
    labels = {name: _label_and_mixer(name)[0] for name in mixers}
    limit = _memory_limit_bytes(max_memory_gb, resolved)
    shape = {"dim": dim, "memory_units": memory_units, "batch": batch}
    rows = []
    for tokens, dtype_name, mixer in tqdm(
        [(n, d, m) for n in sizes for d in dtypes for m in mixers], desc="attention", disable=not verbose
    ):
        torch.manual_seed(0)
        module = build_mixer(mixer, dim, memory_units).to(device=resolved, dtype=DTYPES[dtype_name])
        itemsize = DTYPES[dtype_name].itemsize
        estimate = _estimate(module, tokens, dim=dim, batch=batch, itemsize=itemsize, backward=backward)
        row = {
            "mixer": mixer,
            "label": labels[mixer],
            "tokens": tokens,
            "dtype": dtype_name,
            **shape,
            "estimated_mb": estimate / MB,
            "skipped": estimate > limit,
            "reason": None,
        }
        if row["skipped"]:
            row["reason"] = f"estimated {estimate / 1e9:.3g} GB > limit {limit / 1e9:.3g} GB"
        else:
            x = torch.randn(batch, tokens, dim, device=resolved, dtype=DTYPES[dtype_name])
            row.update(_measure(module, x, backward=backward, min_run_time=min_run_time))
            gc.collect()
            if resolved.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
    settings = {
        "sizes": list(sizes),
        "mixers": list(mixers),
        **shape,
        "heads": 1,
        "dtypes": list(dtypes),
        "backward": backward,
        "memory_limit_gb": limit / 1e9,
        "min_run_time_s": min_run_time,
        "time": "median of torch.utils.benchmark blocked_autorange",
        "memory": "torch.cuda.max_memory_allocated" if resolved.type == "cuda" else "torch.profiler memory events",
    }
    table = format_attention_table(rows)
    finish("attention", rows, device=resolved, settings=settings, out=out, table=table, verbose=verbose)
    return rows


def _cost(row: dict, key: str) -> float | None:
    """Forward + backward numbers when measured, else forward: key is "ms" or "peak_mb"."""
    return row.get(f"forward_backward_{key}", row.get(f"forward_{key}"))


def attention_ratios(results: list[dict] | dict) -> list[dict]:
    """External attention's time and peak memory divided by self-attention's, per (N, dtype).

    Uses forward + backward when measured. A ratio of 0.1 means external attention needs a
    tenth of it; None where either side was skipped.
    """
    rows = result_rows(results)
    found = {(row["tokens"], row["dtype"], row["mixer"]): row for row in rows if not row["skipped"]}
    ratios = []
    for tokens, dtype in dict.fromkeys((row["tokens"], row["dtype"]) for row in rows):
        ea = found.get((tokens, dtype, "external"))
        ratio = {"tokens": tokens, "dtype": dtype}
        for mixer in ("self", "self_fused"):
            sa = found.get((tokens, dtype, mixer))
            for key, name in (("ms", "time"), ("peak_mb", "memory")):
                usable = ea is not None and sa is not None and _cost(sa, key)
                ratio[f"{name}_vs_{mixer}"] = _cost(ea, key) / _cost(sa, key) if usable else None
        ratios.append(ratio)
    return ratios


# Short names for tables and legends that must fit a page column; other mixers keep their label.
SHORT_NAMES = {"self": "SA plain", "self_fused": "SA fused", "external": "EA"}


def short_name(row: dict) -> str:
    """``"SA plain"``, ``"SA fused"`` or ``"EA"`` for the book's three mixers, else the row's label."""
    return SHORT_NAMES.get(row["mixer"], row.get("label", row["mixer"]))


def _table_name(row: dict) -> str:
    """:func:`short_name` with non-breaking spaces, so that a narrow table column never wraps it."""
    return short_name(row).replace(" ", "\u00a0")


def _cell(value: float | None, digits: int = 3) -> str:
    """A plain number a reader can compare down a column: 17,900 / 41.2 / 0.437, never 1.79e+04."""
    if value is None:
        return "-"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:#.{digits}g}" if abs(value) >= 1e-3 else f"{value:.1e}"


def format_attention_table(results: list[dict] | dict) -> str:
    """Markdown tables: one row per measured case, then the EA / SA ratios per N.

    Mixers are named short (SA plain, SA fused, EA: :data:`SHORT_NAMES`); the dtype shows only
    when the results hold more than one.
    """
    rows = result_rows(results)
    several = len({row["dtype"] for row in rows}) > 1

    def name(row: dict) -> str:
        return f"{_table_name(row)}, {row['dtype']}" if several else _table_name(row)

    lines = [
        "| N | mixer | fwd ms | fwd+bwd ms | fwd peak MiB | fwd+bwd peak MiB |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        head = f"| {row['tokens']:,} | {name(row)} |"
        if row["skipped"]:
            lines.append(f"{head} skipped: {row['reason']} | | | |")
            continue
        keys = ("forward_ms", "forward_backward_ms", "forward_peak_mb", "forward_backward_peak_mb")
        lines.append(head + "".join(f" {_cell(row.get(key))} |" for key in keys))
    lines += [
        "",
        "| N | time EA / SA plain | time EA / SA fused | memory EA / SA plain | memory EA / SA fused |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for ratio in attention_ratios(results):
        keys = ("time_vs_self", "time_vs_self_fused", "memory_vs_self", "memory_vs_self_fused")
        n = f"{ratio['tokens']:,}" + (f", {ratio['dtype']}" if several else "")
        lines.append(f"| {n} |" + "".join(f" {_cell(ratio[k], 2)} |" for k in keys))
    return "\n".join(lines)


def _log_ticks(ax, values: list[float]) -> None:
    """Ticks at 1, 2, 5 x 10^k (or 1, 3 x 10^k, or 10^k) for the range of ``values``, as plain numbers.

    Matplotlib's default labels only the powers of ten, which leaves a panel that spans one
    decade with two labels.
    """
    low, high = min(values), max(values)
    decades = math.log10(high / low) if low > 0 else 0.0
    subs = (1.0, 2.0, 5.0) if decades < 2.5 else (1.0, 3.0) if decades < 4 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def plot_attention_bench(results: list[dict] | dict, *, title: str | None = None) -> Figure:
    """Log-log plot of time and peak memory against N, one line per mixer and dtype.

    Grey guides with slope 1, O(N), and slope 2, O(N^2), start at half the cheapest case of the
    smallest N (below the curves, so that no guide hides one) and show which curve grows how; one
    legend under both panels names the mixers and the guides. The x ticks are the measured N.
    ``title`` defaults to the device and date of a results document (none for a plain list of
    rows). Uses forward + backward numbers when measured.
    """
    rows = [row for row in result_rows(results) if not row["skipped"]]
    colors = {"self": "tab:red", "self_fused": "tab:orange", "external": "tab:blue"}
    styles = {"float32": "-", "bfloat16": "--"}
    passes = "forward + backward" if any("forward_backward_ms" in row for row in rows) else "forward"
    # page wide and large type: legible in a page column of 650 to 740 px
    fig = Figure(figsize=(PAGE_INCHES, 5.0), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = ((axes[0], "ms", f"{passes} time (ms)"), (axes[1], "peak_mb", f"{passes} peak memory (MiB)"))
    sizes = sorted({row["tokens"] for row in rows})
    handles = []
    for ax, key, ylabel in panels:
        ax.set(xscale="log", yscale="log")  # before the ticks: setting a scale resets them
        curves, guides = [], []
        for mixer, dtype in dict.fromkeys((row["mixer"], row["dtype"]) for row in rows):
            cases = [r for r in rows if (r["mixer"], r["dtype"]) == (mixer, dtype)]
            n, y = zip(*sorted((r["tokens"], _cost(r, key)) for r in cases))
            label = cases[0]["label"] + ("" if dtype == "float32" else f", {dtype}")
            curves += ax.plot(n, y, styles.get(dtype, ":"), marker="o", color=colors.get(mixer), label=label)
        if rows:
            n_min, n_max = sizes[0], sizes[-1]
            y_min = min(_cost(row, key) for row in rows if row["tokens"] == n_min) / 2
            for slope, style, text in ((1, ":", "O(N) guide, slope 1"), (2, "--", "O(N²) guide, slope 2")):
                ends = [y_min, y_min * (n_max / n_min) ** slope]
                guides += ax.plot([n_min, n_max], ends, style, color="0.55", lw=1.4, zorder=0, label=text)
            _log_ticks(ax, [_cost(row, key) for row in rows] + [y_min])
            ax.set_xticks(sizes, [f"{n:,}" for n in sizes], minor=False)
            ax.set_xticks([], minor=True)
        ax.set_xlabel("tokens N", fontsize=12)
        ax.set_ylabel(ylabel, fontsize=12)
        ax.tick_params(labelsize=11)
        ax.grid(True, which="both", alpha=0.3)
        handles = curves + guides
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=11)
    if title is None and isinstance(results, dict):
        device = results["device"]
        threads = f"{device['threads']} thread" + ("s" if device["threads"] != 1 else "")
        title = f"{device['name']} ({threads}), torch {device['torch']}, {results['date']}"
    if title:
        fig.suptitle(title, fontsize=13)
    return fig
