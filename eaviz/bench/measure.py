"""How the benchmarks measure: the device, time per call and peak memory of one call."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from eaviz.profile import resolve_device

MB = 2**20  # every "_mb" number is in MiB (2**20 bytes), the unit torch.cuda reports in


def bench_device(device: str) -> torch.device:
    """``device`` ("auto", "cpu", "cuda", ...) as a torch.device this machine has."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"expected a device this machine has, got device={device!r} but CUDA is not available")
    return resolved


def time_call(fn: Callable[[], object], *, min_run_time: float) -> float:
    """Median seconds per call of ``fn`` from ``torch.utils.benchmark`` (warm-up included, CUDA synchronised)."""
    # Imported here: it loads torch.utils.cpp_extension, slow to import and, without CUDA, it
    # logs a "No CUDA runtime is found" warning that says nothing about the CPU benchmark.
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        logger.setLevel(level)

    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds that one call of ``fn`` takes, waiting for the GPU to finish."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def peak_memory_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Most bytes allocated at once during one call of ``fn``, above what was allocated before it.

    On CUDA from ``torch.cuda.max_memory_allocated``; on the CPU, which keeps no such counter,
    from the allocation and free events that ``torch.profiler`` records, summed in time order.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = prof.profiler.kineto_results.events()
    memory = [e for e in events if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    allocated = peak = 0
    for event in sorted(memory, key=lambda e: e.start_ns()):
        allocated += event.nbytes()
        peak = max(peak, allocated)
    return peak


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send what C++ code writes to file descriptor 2 to /dev/null inside the block.

    The profiler's native layer prints a note at every start and stop (and, without a GPU,
    that it found none); in a notebook those lines would bury the benchmark's table.
    """
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
