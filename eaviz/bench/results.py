"""Where benchmark numbers live: JSON files named after kind, device and date.

The results the book shows ship inside the package (``eaviz/results/``); new ones go to a folder
the user owns (:func:`results_dir`), never into the installed package.

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
from eaviz.paths import shipped, user_dir

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


def results_dir() -> Path:
    """Where ``python -m eaviz bench`` writes new results: ``$EAVIZ_HOME/results``, else ``~/.cache/eaviz/results``."""
    return user_dir("results")


def load_results(kind: str, *, device: str | None = None, root: str | Path | None = None) -> dict:
    """The most recent results file of ``kind`` ("attention" or "train") as a dict.

    ``device`` ("cpu" or "cuda") keeps only files measured on that kind of device. Without
    ``root``, looks at the results shipped with eaviz (``eaviz/results/``) and at those you
    measured (:func:`results_dir`); with ``root``, in that folder only.
    """
    check_choice(kind, KINDS, "kind")
    folders = [Path(root)] if root is not None else [shipped("results"), results_dir()]
    files = [file for folder in folders if folder.is_dir() for file in folder.iterdir()]
    files = [file for file in files if file.name.startswith(f"{kind}-") and file.name.endswith(".json")]
    documents = [json.loads(file.read_text()) for file in sorted(files, key=lambda file: file.name)]
    documents = [doc for doc in documents if device is None or doc["device"]["type"] == device]
    if not documents:
        where = f" measured on {device}" if device is not None else ""
        looked = root if root is not None else f"the results shipped with eaviz or {results_dir()}"
        raise FileNotFoundError(
            f"no {kind} benchmark results{where} in {looked}; record them with `python -m eaviz bench {kind}`"
        )
    return max(documents, key=lambda doc: doc["created"])


def load_recorded(name: str) -> dict:
    """A recorded experiment shipped with eaviz, by name: ``"cifar10-mixers"`` or ``"voc-heads"``.

    These are the seeded comparisons behind the book's tables (``eaviz/results/{name}.json``,
    written by ``python -m eaviz fast compare`` and ``benchmarks/voc_heads.py``).
    """
    names = sorted(file.name.removesuffix(".json") for file in shipped("results").iterdir())
    recorded = [n for n in names if not n.startswith(tuple(f"{kind}-" for kind in KINDS))]
    check_choice(name, recorded, "name")
    return json.loads((shipped("results") / f"{name}.json").read_text())


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
