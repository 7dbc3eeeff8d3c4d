"""Run profiles: one notebook, two sizes.

Every chapter runs in one of two profiles, chosen by the environment variable
``EAVIZ_PROFILE``:

- ``"full"`` (the default): the sizes the book's figures and numbers come from.
- ``"smoke"``: tiny sizes, so that CI can execute every notebook top to bottom in minutes.

A notebook asks the profile for each size it needs::

    profile, device = setup(seed=0)
    epochs = profile.pick(full=30, smoke=1)
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

PROFILES = ("full", "smoke")
ENV_VAR = "EAVIZ_PROFILE"

T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """A named run profile; ``pick`` returns the value meant for it."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in PROFILES:
            raise ValueError(f"expected profile to be one of {PROFILES}, got {self.name!r}")

    @property
    def smoke(self) -> bool:
        """True in the tiny CI profile."""
        return self.name == "smoke"

    def pick(self, *, full: T, smoke: T) -> T:
        """The ``full`` value in the full profile, the ``smoke`` value in the smoke profile."""
        return smoke if self.smoke else full


def current_profile() -> Profile:
    """The profile named by ``$EAVIZ_PROFILE`` ("full" when unset)."""
    name = os.environ.get(ENV_VAR, "full")
    if name not in PROFILES:
        raise ValueError(f"expected ${ENV_VAR} to be one of {PROFILES}, got {name!r}")
    return Profile(name)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when a GPU is visible, else the CPU; anything else as ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def describe_device(device: torch.device | str) -> str:
    """A one-line description: the GPU's name and memory, or the CPU's thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    threads = torch.get_num_threads()
    return f"{device.type} ({threads} thread{'s' if threads > 1 else ''})"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (all GPUs included)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed: int = 0) -> tuple[Profile, torch.device]:
    """The first line of every chapter: seed, pick the device, say what runs where.

    Returns ``(profile, device)`` and prints one line such as
    ``profile: smoke | device: cpu (2 threads) | torch 2.14.1``. In a notebook, figures are
    from now on drawn at the book's column width (:func:`eaviz.viz.page.show_figures_at_page_width`).
    """
    from eaviz.viz.page import show_figures_at_page_width

    show_figures_at_page_width()
    profile = current_profile()
    seed_everything(seed)
    device = resolve_device("auto")
    print(f"profile: {profile.name} | device: {describe_device(device)} | torch {torch.__version__}")
    return profile, device


STAND_INS = {"cifar10": "shapes", "cifar100": "shapes", "voc": "shapes_seg"}


def chapter_data(name: str, split: str, *, profile: Profile, limit: int | None = None, **kwargs):
    """The dataset a chapter asks for, from ``$EAVIZ_DATA`` when it is there.

    Not on disk: the full profile downloads it (``download=True``, online and in Colab);
    the smoke profile, which must run offline, takes the built-in synthetic stand-in
    ("shapes" for CIFAR, "shapes_seg" for VOC) and says so in a printed line.
    """
    from eaviz.data import load_dataset

    try:
        return load_dataset(name, split, limit=limit, **kwargs)
    except FileNotFoundError as missing:
        if profile.smoke and name in STAND_INS:
            print(
                f"smoke profile: {name} is not on this machine, so this run uses the synthetic "
                f"{STAND_INS[name]!r} set instead ({missing.args[0].split(':')[0]})"
            )
            return load_dataset(STAND_INS[name], split, limit=limit)
        return load_dataset(name, split, limit=limit, download=True, **kwargs)
