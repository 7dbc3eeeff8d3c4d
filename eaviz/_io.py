"""Atomic writes: a reader never sees half a file, and concurrent writers never collide."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def _atomic(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_save(payload: object, path: str | os.PathLike) -> Path:
    """``torch.save(payload, path)`` through a unique temporary file and a rename."""
    return _atomic(Path(path), lambda file: torch.save(payload, file))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """``Path(path).write_text(text)`` through a unique temporary file and a rename."""
    return _atomic(Path(path), lambda file: file.write(text.encode()))
