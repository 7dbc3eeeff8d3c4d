"""Benchmarks: what external attention saves as the number of tokens N grows, and what it costs in training.

One file per benchmark, each recording its numbers the same way:

- ``attention``: :func:`bench_attention` times one mixer call (forward, and forward +
  backward) and measures its peak memory at several N; :func:`plot_attention_bench` draws it.
- ``train``: :func:`bench_train` measures training images/s of the CIFAR classifier per mixer.
- ``measure``: timing (``torch.utils.benchmark``) and peak memory (``torch.cuda`` counters, or
  the memory events of ``torch.profiler`` on the CPU).
- ``results``: given a folder, each run writes a JSON file there (the CLI: :func:`results_dir`);
  :func:`load_results` reads the latest shipped or measured file back, so the book shows
  recorded numbers instead of timing on the reader's machine.

Any mixer registered in ``eaviz.attention.MIXERS`` can be benchmarked by name.
"""

from eaviz.bench.attention import (
    ATTENTION_MIXERS,
    DTYPES,
    attention_ratios,
    bench_attention,
    estimate_attention_bytes,
    format_attention_table,
    plot_attention_bench,
)
from eaviz.bench.measure import MB, peak_memory_bytes, time_call
from eaviz.bench.results import (
    KINDS,
    device_info,
    device_slug,
    load_recorded,
    load_results,
    results_dir,
    save_results,
)
from eaviz.bench.train import bench_train, format_train_table

__all__ = [
    "ATTENTION_MIXERS",
    "DTYPES",
    "KINDS",
    "MB",
    "attention_ratios",
    "bench_attention",
    "bench_train",
    "device_info",
    "device_slug",
    "estimate_attention_bytes",
    "format_attention_table",
    "load_recorded",
    "format_train_table",
    "load_results",
    "peak_memory_bytes",
    "plot_attention_bench",
    "results_dir",
    "save_results",
    "time_call",
]
