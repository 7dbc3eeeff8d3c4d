"""Training throughput: images per second of the CIFAR classifier with each token mixer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from eaviz._checks import check_number
from eaviz.attention import MIXERS
from eaviz.bench.measure import bench_device, timed
from eaviz.bench.results import finish, result_rows
from eaviz.models import Classifier, ClassifierConfig
from eaviz.paths import writable_folder


def bench_train(
    mixers: Sequence[str] | None = None,
    *,
    batch_size: int = 128,
    steps: int = 10,
    warmup_steps: int = 2,
    base: ClassifierConfig | None = None,
    device: str = "auto",
    out: str | Path | None = None,
    verbose: bool = True,
) -> list[dict]:
    """Training images/s of the CIFAR classifier with each of ``mixers`` (default: every registered mixer).

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
    resolved = bench_device(device)
    if out is not None:
        writable_folder(out, argument="out (--out)")
    mixers = list(MIXERS) if mixers is None else list(mixers)
    base = base if base is not None else ClassifierConfig()
    configs = [replace(base, mixer=mixer) for mixer in mixers]  # unknown names fail here, before any timing
    amp = resolved.type == "cuda"
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 3, base.image_size, base.image_size, generator=generator)
    images = images.to(resolved, memory_format=torch.channels_last)
    labels = torch.randint(0, base.num_classes, (batch_size,), generator=generator).to(resolved)
    rows = []
    for config in tqdm(configs, desc="train", disable=not verbose):
        torch.manual_seed(0)
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
        seconds = torch.tensor([timed(step, resolved) for _ in range(steps)], dtype=torch.float64)
        rows.append(
            {
                "mixer": config.mixer,
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
        "mixers": mixers,
        "batch_size": batch_size,
        "steps": steps,
        "warmup_steps": warmup_steps,
        "model": base.to_dict(),
    }
    table = format_train_table(rows)
    finish("train", rows, device=resolved, settings=settings, out=out, table=table, verbose=verbose)
    return rows


def format_train_table(results: list[dict] | dict) -> str:
    """Markdown table of training throughput per mixer."""
    lines = ["| mixer | parameters | batch | median step ms | images/s |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in result_rows(results):
        speed = f"{row['step_ms']:.1f} | {row['images_per_s']:.0f}"
        lines.append(f"| {row['mixer']} | {row['params']:,} | {row['batch_size']} | {speed} |")
    return "\n".join(lines)
