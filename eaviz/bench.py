"""Benchmarks: what external attention saves as the number of tokens N grows.

``bench_attention`` times one mixer call (forward, and forward + backward) and measures its
peak memory for self-attention written out (the N x N map is built), self-attention through
``F.scaled_dot_product_attention`` (fused) and external attention (an N x S map), at several
N. ``bench_train`` measures training throughput of the CIFAR classifier with each mixer.
Both write a JSON file to ``benchmarks/results/`` and print a markdown table;
``load_results`` reads the latest file back and ``plot_attention_bench`` draws it, so the book
shows recorded numbers instead of timing on the reader's machine.

Peak memory is the most memory allocated at any moment during one call, above what was
allocated before it (weights and inputs are not counted). On CUDA it comes from
``torch.cuda.max_memory_allocated``; on the CPU, which keeps no such counter, from the
allocation and free events that ``torch.profiler`` records with ``profile_memory=True``,
summed in time order.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile
from tqdm.auto import tqdm

from eaviz._checks import check_number
from eaviz.attention import ExternalAttention, SelfAttention
from eaviz.models import Classifier, ClassifierConfig
from eaviz.profile import resolve_device

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
KINDS = ("attention", "train")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
ATTENTION_MIXERS = {
    "self": "self-attention (plain)",
    "self_fused": "self-attention (fused SDPA)",
    "external": "external attention",
}
TRAIN_MIXERS = ("none", "external", "self", "multihead_external")
MB = 2**20  # every "_mb" number is in MiB (2**20 bytes), the unit torch.cuda reports in


def device_info(device: torch.device) -> dict:
    """What produced the numbers: device name, torch version, CPU threads."""
    info = {"type": device.type, "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["name"] = cpu_name()
        info["cpu_count"] = os.cpu_count()
        # Other processes share the CPU on many machines: the load says how busy it was.
        info["load_average_1min"] = os.getloadavg()[0]
    return info


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_slug(info: dict) -> str:
    """``{"type": "cuda", "name": "NVIDIA H100 80GB HBM3"}`` -> ``"cuda-nvidia-h100-80gb-hbm3"``."""
    return re.sub(r"[^a-z0-9]+", "-", f"{info['type']} {info['name']}".lower()).strip("-")


def _device(device: str) -> torch.device:
    resolved = resolve_device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"expected a device this machine has, got device={device!r} but CUDA is not available")
    return resolved


def _dtypes(dtype: str | Sequence[str] | None, device: torch.device) -> tuple[str, ...]:
    if dtype is None:
        return ("float32", "bfloat16") if device.type == "cuda" else ("float32",)
    names = (dtype,) if isinstance(dtype, str) else tuple(dtype)
    for name in names:
        if name not in DTYPES:
            raise ValueError(f"expected dtype to be one of {sorted(DTYPES)}, got {name!r}")
    return names


def _memory_limit_bytes(max_memory_gb: float | None, device: torch.device) -> float:
    """The caller's limit, else 90% of the GPU, else a quarter of RAM (the CPU is usually shared)."""
    if max_memory_gb is not None:
        return max_memory_gb * 1e9
    if device.type == "cuda":
        return 0.9 * torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 4


def estimate_attention_bytes(
    mixer: str, tokens: int, *, dim: int, memory_units: int, batch: int, itemsize: int, backward: bool
) -> int:
    """A deliberately generous guess of one call's peak memory, to skip sizes that cannot fit.

    The maps dominate: plain self-attention holds up to 2 maps of N x N in the forward pass
    and 4 in the backward; external attention the same count of N x S maps; the fused
    kernel never builds the map. Token-sized tensors (q, k, v, outputs, grads) add ~12 N d.
    """
    maps = 4 if backward else 2
    side = {"self": tokens, "self_fused": 0, "external": memory_units}[mixer]
    return batch * itemsize * (maps * tokens * side + 12 * tokens * dim)


def _attention_module(mixer: str, dim: int, memory_units: int) -> nn.Module:
    if mixer == "external":
        return ExternalAttention(dim, memory_units=memory_units)
    return SelfAttention(dim, heads=1, fused=mixer == "self_fused")


def _benchmark():
    """``torch.utils.benchmark``, imported on first use: it loads ``torch.utils.cpp_extension``,
    which is slow to import and warns on machines without CUDA, and no other command needs it."""
    from torch.utils import benchmark

    return benchmark


def time_call(fn: Callable[[], object], *, min_run_time: float) -> float:
    """Median seconds per call of ``fn`` from ``torch.utils.benchmark`` (warm-up included, CUDA synchronised)."""
    timer = _benchmark().Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def peak_memory_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Most bytes allocated at once during one call of ``fn``, above what was allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = prof.profiler.kineto_results.events()
    memory = [e for e in events if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    allocated = peak = 0
    for event in sorted(memory, key=lambda e: e.start_ns()):
        allocated += event.nbytes()
        peak = max(peak, allocated)
    return peak


def _measure_attention(
    mixer: str,
    tokens: int,
    dtype: str,
    *,
    dim: int,
    memory_units: int,
    batch: int,
    device: torch.device,
    backward: bool,
    min_run_time: float,
) -> dict:
    """Forward (inference mode) and forward + backward time and peak memory of one mixer call."""
    torch.manual_seed(0)
    module = _attention_module(mixer, dim, memory_units).to(device=device, dtype=DTYPES[dtype])
    x = torch.randn(batch, tokens, dim, device=device, dtype=DTYPES[dtype])

    def forward() -> None:
        with torch.inference_mode():
            module(x)

    def forward_backward() -> None:
        module.zero_grad(set_to_none=True)
        module(x).backward(grad)

    grad = torch.ones_like(x)
    # Memory first, while the module holds no gradients, so the new ones count in the peak.
    row = {"forward_peak_mb": peak_memory_bytes(forward, device) / MB}
    if backward:
        row["forward_backward_peak_mb"] = peak_memory_bytes(forward_backward, device) / MB
    row["forward_ms"] = 1e3 * time_call(forward, min_run_time=min_run_time)
    if backward:
        row["forward_backward_ms"] = 1e3 * time_call(forward_backward, min_run_time=min_run_time)
    return row


def bench_attention(
    sizes: Sequence[int] = (256, 1024, 4096, 16384),
    *,
    dim: int = 64,
    memory_units: int = 64,
    batch: int = 1,
    device: str = "auto",
    dtype: str | Sequence[str] | None = None,
    backward: bool = True,
    max_memory_gb: float | None = None,
    min_run_time: float = 0.5,
    out: str | Path | None = RESULTS_DIR,
    verbose: bool = True,
) -> list[dict]:
    """Time and memory of plain self-attention, fused self-attention and external attention.

    One row per (N, dtype, mixer), each a single-head mixer on ``(batch, N, dim)`` tokens
    (external attention with ``memory_units`` = S). ``dtype`` None means float32, plus
    bfloat16 on CUDA. A case whose :func:`estimate_attention_bytes` exceeds ``max_memory_gb``
    (default: 90% of the GPU, or a quarter of the machine's RAM) is recorded with
    ``skipped=True`` and the reason instead of being run. With ``out``, the rows are saved as
    ``out/attention-<device>-<date>.json``; with ``verbose``, a progress bar and the markdown
    table are shown.
    """
    for n in sizes:
        check_number(n, "sizes", low=1, integer=True)
    for name, value in {"dim": dim, "memory_units": memory_units, "batch": batch}.items():
        check_number(value, name, low=1, integer=True)
    check_number(min_run_time, "min_run_time", low=0, low_open=True)
    resolved = _device(device)
    dtypes = _dtypes(dtype, resolved)
    limit = _memory_limit_bytes(max_memory_gb, resolved)
    cases = [(n, d, m) for n in sizes for d in dtypes for m in ATTENTION_MIXERS]
    rows = []
    for tokens, dtype_name, mixer in tqdm(cases, desc="attention", disable=not verbose):
        shape = {"dim": dim, "memory_units": memory_units, "batch": batch}
        itemsize = DTYPES[dtype_name].itemsize
        estimate = estimate_attention_bytes(mixer, tokens, **shape, itemsize=itemsize, backward=backward)
        row = {
            "mixer": mixer,
            "label": ATTENTION_MIXERS[mixer],
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
            measured = _measure_attention(
                mixer, tokens, dtype_name, **shape, device=resolved, backward=backward, min_run_time=min_run_time
            )
            row.update(measured)
            gc.collect()
            if resolved.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
    settings = {
        "sizes": list(sizes),
        "dim": dim,
        "memory_units": memory_units,
        "batch": batch,
        "heads": 1,
        "dtypes": list(dtypes),
        "backward": backward,
        "memory_limit_gb": limit / 1e9,
        "min_run_time_s": min_run_time,
        "time": "median of torch.utils.benchmark blocked_autorange",
        "memory": "torch.cuda.max_memory_allocated" if resolved.type == "cuda" else "torch.profiler memory events",
    }
    if out is not None:
        path = save_results("attention", rows, device=resolved, settings=settings, out=out)
        if verbose:
            print(f"wrote {path}")
    if verbose:
        print(format_attention_table(rows))
    return rows


def bench_train(
    mixers: Sequence[str] = TRAIN_MIXERS,
    *,
    batch_size: int = 128,
    steps: int = 10,
    warmup_steps: int = 2,
    base: ClassifierConfig | None = None,
    device: str = "auto",
    out: str | Path | None = RESULTS_DIR,
    verbose: bool = True,
) -> list[dict]:
    """Training images/s of the CIFAR classifier with each mixer.

    The model is ``base`` (default: ``ClassifierConfig()``, the book's classifier) with its
    mixer replaced. One step is forward, cross-entropy, backward and an SGD step, on random
    32x32 images (the speed does not depend on the pixels), channels_last, with bf16 autocast
    on CUDA only (on the CPU bf16 is slower). After ``warmup_steps``, each of ``steps`` steps
    is timed on its own; images/s comes from the median step, which a busy shared CPU
    disturbs less than the mean.
    """
    check_number(batch_size, "batch_size", low=1, integer=True)
    check_number(steps, "steps", low=1, integer=True)
    check_number(warmup_steps, "warmup_steps", low=0, integer=True)
    resolved = _device(device)
    base = base if base is not None else ClassifierConfig()
    amp = resolved.type == "cuda"
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 3, base.image_size, base.image_size, generator=generator)
    images = images.to(resolved, memory_format=torch.channels_last)
    labels = torch.randint(0, base.num_classes, (batch_size,), generator=generator).to(resolved)
    rows = []
    for mixer in tqdm(mixers, desc="train", disable=not verbose):
        torch.manual_seed(0)
        config = replace(base, mixer=mixer)
        model = Classifier(config).to(resolved, memory_format=torch.channels_last).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

        def step() -> None:
            with torch.autocast(resolved.type, dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(model(images).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(warmup_steps):
            step()
        seconds = torch.tensor([_timed(step, resolved) for _ in range(steps)], dtype=torch.float64)
        rows.append(
            {
                "mixer": mixer,
                "params": sum(p.numel() for p in model.parameters()),
                "batch_size": batch_size,
                "steps": steps,
                "step_ms": 1e3 * seconds.median().item(),
                "step_ms_mean": 1e3 * seconds.mean().item(),
                "images_per_s": batch_size / seconds.median().item(),
                "amp": "bfloat16" if amp else None,
                "channels_last": True,
            }
        )
    settings = {
        "mixers": list(mixers),
        "batch_size": batch_size,
        "steps": steps,
        "warmup_steps": warmup_steps,
        "model": base.to_dict(),
    }
    if out is not None:
        path = save_results("train", rows, device=resolved, settings=settings, out=out)
        if verbose:
            print(f"wrote {path}")
    if verbose:
        print(format_train_table(rows))
    return rows


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds that one call of ``fn`` takes, waiting for the GPU to finish."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def save_results(kind: str, rows: list[dict], *, device: torch.device, settings: dict, out: str | Path) -> Path:
    """Write ``{kind, date, device, settings, results}`` to ``out/<kind>-<device>-<date>.json``."""
    _check_kind(kind)
    now = datetime.datetime.now(datetime.timezone.utc)
    info = device_info(device)
    document = {
        "kind": kind,
        "date": now.date().isoformat(),
        "created": now.isoformat(timespec="seconds"),
        "device": info,
        "settings": settings,
        "results": rows,
    }
    path = Path(out) / f"{kind}-{device_slug(info)}-{document['date']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def load_results(kind: str, *, device: str | None = None, root: str | Path | None = None) -> dict:
    """The most recent results file of ``kind`` ("attention" or "train") as a dict.

    ``device`` ("cpu" or "cuda") keeps only files measured on that kind of device; ``root``
    defaults to ``benchmarks/results`` in the repository that holds this package.
    """
    _check_kind(kind)
    folder = Path(root) if root is not None else RESULTS_DIR
    documents = [json.loads(path.read_text()) for path in sorted(folder.glob(f"{kind}-*.json"))]
    documents = [doc for doc in documents if device is None or doc["device"]["type"] == device]
    if not documents:
        where = f" measured on {device}" if device is not None else ""
        raise FileNotFoundError(
            f"no {kind} benchmark results{where} in {folder}; run `python -m eaviz bench {kind}` "
            "in the repository to record them"
        )
    return max(documents, key=lambda doc: doc["created"])


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"expected kind to be one of {KINDS}, got {kind!r}")


def _rows(results: list[dict] | dict) -> list[dict]:
    """Accept the rows that the bench functions return or a document from :func:`load_results`."""
    return results["results"] if isinstance(results, dict) else results


def _cost(row: dict, key: str) -> float | None:
    """Forward + backward numbers when measured, else forward: key is "ms" or "peak_mb"."""
    return row.get(f"forward_backward_{key}", row.get(f"forward_{key}"))


def attention_ratios(results: list[dict] | dict) -> list[dict]:
    """External attention's time and peak memory divided by self-attention's, per (N, dtype).

    Uses forward + backward when measured. A ratio of 0.1 means external attention needs a
    tenth of it; None where either side was skipped.
    """
    rows = [row for row in _rows(results) if not row["skipped"]]
    found = {(row["tokens"], row["dtype"], row["mixer"]): row for row in rows}
    ratios = []
    for tokens, dtype in dict.fromkeys((row["tokens"], row["dtype"]) for row in _rows(results)):
        ea = found.get((tokens, dtype, "external"))
        ratio = {"tokens": tokens, "dtype": dtype}
        for mixer in ("self", "self_fused"):
            sa = found.get((tokens, dtype, mixer))
            for key, name in (("ms", "time"), ("peak_mb", "memory")):
                usable = ea is not None and sa is not None and _cost(sa, key)
                ratio[f"{name}_vs_{mixer}"] = _cost(ea, key) / _cost(sa, key) if usable else None
        ratios.append(ratio)
    return ratios


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def format_attention_table(results: list[dict] | dict) -> str:
    """Markdown tables: one row per measured case, then the EA / SA ratios per N."""
    lines = [
        "| N | mixer | dtype | forward ms | fwd+bwd ms | forward peak MiB | fwd+bwd peak MiB |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in _rows(results):
        head = f"| {row['tokens']} | {row['label']} | {row['dtype']} |"
        if row["skipped"]:
            lines.append(f"{head} skipped: {row['reason']} | | | |")
            continue
        keys = ("forward_ms", "forward_backward_ms", "forward_peak_mb", "forward_backward_peak_mb")
        lines.append(head + "".join(f" {_cell(row.get(key))} |" for key in keys))
    lines += [
        "",
        "| N | dtype | time EA / SA | time EA / SA fused | memory EA / SA | memory EA / SA fused |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for ratio in attention_ratios(results):
        keys = ("time_vs_self", "time_vs_self_fused", "memory_vs_self", "memory_vs_self_fused")
        lines.append(f"| {ratio['tokens']} | {ratio['dtype']} |" + "".join(f" {_cell(ratio[k], 2)} |" for k in keys))
    return "\n".join(lines)


def format_train_table(results: list[dict] | dict) -> str:
    """Markdown table of training throughput per mixer."""
    lines = ["| mixer | parameters | batch | median step ms | images/s |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in _rows(results):
        speed = f"{row['step_ms']:.1f} | {row['images_per_s']:.0f}"
        lines.append(f"| {row['mixer']} | {row['params']:,} | {row['batch_size']} | {speed} |")
    return "\n".join(lines)


def plot_attention_bench(results: list[dict] | dict):
    """Log-log plot of time and peak memory against N, one line per mixer and dtype.

    Grey guides with slope 1 (cost ~ N) and 2 (cost ~ N^2) show which curve grows how.
    Uses forward + backward numbers when measured. Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    rows = [row for row in _rows(results) if not row["skipped"]]
    colors = {"self": "tab:red", "self_fused": "tab:orange", "external": "tab:blue"}
    styles = {"float32": "-", "bfloat16": "--"}
    passes = "forward + backward" if any("forward_backward_ms" in row for row in rows) else "forward"
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    panels = ((axes[0], "ms", f"{passes} time (ms)"), (axes[1], "peak_mb", f"{passes} peak memory (MiB)"))
    for ax, key, ylabel in panels:
        for mixer, dtype in dict.fromkeys((row["mixer"], row["dtype"]) for row in rows):
            points = sorted((r["tokens"], _cost(r, key)) for r in rows if (r["mixer"], r["dtype"]) == (mixer, dtype))
            n, y = zip(*points)
            label = ATTENTION_MIXERS[mixer] + ("" if dtype == "float32" else f", {dtype}")
            ax.plot(n, y, styles.get(dtype, ":"), marker="o", color=colors[mixer], label=label)
        if rows:
            n_min = min(row["tokens"] for row in rows)
            n_max = max(row["tokens"] for row in rows)
            y_min = min(_cost(row, key) for row in rows if row["tokens"] == n_min)
            for slope, text in ((1, "~ N"), (2, "~ N²")):
                ax.plot([n_min, n_max], [y_min, y_min * (n_max / n_min) ** slope], color="0.75", lw=1, zorder=0)
                end = (n_max, y_min * (n_max / n_min) ** slope)
                ax.annotate(text, end, xytext=(-2, 4), textcoords="offset points", ha="right", color="0.5", fontsize=8)
        ax.set(xscale="log", yscale="log", xlabel="tokens N", ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    if isinstance(results, dict):
        device = results["device"]
        threads = f"{device['threads']} thread" + ("s" if device["threads"] != 1 else "")
        fig.suptitle(f"{device['name']} ({threads}), torch {device['torch']}, {results['date']}")
    return fig
