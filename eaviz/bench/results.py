"""Where benchmark numbers live: JSON files in ``benchmarks/results/``, named after kind, device and date.

Every file is ``{kind, date, created, device, settings, results}``; ``results`` is the list of
rows a bench function returned, so the book shows recorded numbers instead of timing on the
reader's machine.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
from pathlib import Path

import torch

from eaviz._checks import check_choice

RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
KINDS = ("attention", "train")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


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


def device_slug(info: dict) -> str:
    """``{"type": "cuda", "name": "NVIDIA H100 80GB HBM3"}`` -> ``"cuda-nvidia-h100-80gb-hbm3"``."""
    return re.sub(r"[^a-z0-9]+", "-", f"{info['type']} {info['name']}".lower()).strip("-")


def save_results(kind: str, rows: list[dict], *, device: torch.device, settings: dict, out: str | Path) -> Path:
    """Write ``{kind, date, device, settings, results}`` to ``out/<kind>-<device>-<date>.json``."""
    check_choice(kind, KINDS, "kind")
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
    check_choice(kind, KINDS, "kind")
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


def result_rows(results: list[dict] | dict) -> list[dict]:
    """The rows of a bench function's return value or of a document from :func:`load_results`."""
    return results["results"] if isinstance(results, dict) else results


def finish(kind: str, rows: list[dict], *, device: torch.device, settings: dict, out, table: str, verbose: bool):
    """Save the rows when ``out`` is a folder, and print where and the markdown ``table`` when ``verbose``."""
    if out is not None:
        path = save_results(kind, rows, device=device, settings=settings, out=out)
        if verbose:
            print(f"wrote {path}")
    if verbose:
        print(table)
