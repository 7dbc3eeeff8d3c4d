"""Files that survive crashes and concurrent runs.

- Atomic writes: a reader never sees half a file. Each write goes to ``.NAME.PID.RANDOM.tmp``
  beside the target, then a rename; the process id in the name lets the next start remove
  the leftovers of a process that was killed mid-write (:func:`remove_stale_temp_files`).
  Files are created with mode 0666 minus the user's umask, like any other file they write.
- :func:`claim_folder`: a lock file holding the process id, so two runs never write into
  the same output folder.
- :func:`read_checkpoint`, :func:`read_json`: loads whose errors name the file and the fix.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import socket
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

LOCK_NAME = ".lock"


def _temp_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _atomic(path: Path, write: Callable) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_save(payload: object, path: str | os.PathLike) -> Path:
    """``torch.save(payload, path)`` through a temporary file and a rename."""
    return _atomic(Path(path), lambda file: torch.save(payload, file))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """``Path(path).write_text(text)`` through a temporary file and a rename."""
    return _atomic(Path(path), lambda file: file.write(text.encode()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike, *, claimed: bool = False) -> list[Path]:
    """Delete the ``.NAME.PID.RANDOM.tmp`` files in ``folder`` whose process is gone; returns them.

    ``claimed``: the folder is held with :func:`claim_folder`, so temporary files without a
    process id in their name (written by older versions of eaviz) are leftovers too.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        parts = tmp.name.split(".")
        pid = parts[-3] if len(parts) >= 5 else ""
        if (pid.isdigit() and not _alive(int(pid))) or (claimed and not pid.isdigit()):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _lock_owner(lock: Path) -> tuple[str, int] | None:
    """(host, pid) written in a lock file, or None when it cannot be read."""
    try:
        host, pid = lock.read_text().strip().rsplit(":", 1)
        return host, int(pid)
    except (OSError, ValueError):
        return None


def _acquire(lock: Path, me: tuple[str, int]) -> None:
    """Create ``lock`` holding ``host:pid``, taking over a lock whose process is gone."""
    claim = _temp_name(lock)
    claim.write_text(f"{me[0]}:{me[1]}\n")
    try:
        while True:
            try:
                os.link(claim, lock)  # the lock appears with its content at once, or not at all
                return
            except FileExistsError:
                owner = _lock_owner(lock)
                if owner is not None and (owner[0] != me[0] or _alive(owner[1])):
                    raise RuntimeError(
                        f"{lock.parent} is in use by process {owner[1]} on {owner[0]} (lock file {lock}); wait for "
                        f"that run to end, choose another output folder, or delete {lock} if that process is gone"
                    ) from None
                warnings.warn(f"taking over {lock}: the process that wrote it ({owner or 'unknown'}) is gone")
                lock.unlink(missing_ok=True)
    finally:
        claim.unlink(missing_ok=True)


@contextmanager
def claim_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder/.lock`` (``host:pid``) while the block runs, so no second run writes there.

    Creates the folder and the lock, which also proves the folder is writable. A lock left by
    a process that no longer exists on this host is taken over with a warning; a live one
    raises RuntimeError. A folder this process already holds is simply entered again.
    Temporary files of killed writes are removed once the folder is ours.
    """
    if os.fspath(folder) == "":
        raise ValueError("expected an output folder, got an empty path; give a folder name such as runs/x")
    folder = Path(folder)
    lock, me = folder / LOCK_NAME, (socket.gethostname(), os.getpid())
    if _lock_owner(lock) == me:
        yield folder  # already ours: the outer claim releases it
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _acquire(lock, me)
    except (PermissionError, FileNotFoundError, NotADirectoryError, FileExistsError) as error:
        raise OSError(f"cannot write into the output folder {folder} ({error.strerror}); choose another one") from error
    try:
        remove_stale_temp_files(folder, claimed=True)
        yield folder
    finally:
        if _lock_owner(lock) == me:
            lock.unlink(missing_ok=True)


def read_json(path: str | os.PathLike) -> dict:
    """A JSON file as a dict; a broken file raises ValueError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); restore or regenerate the file") from None


def read_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict:
    """``torch.load(path, weights_only=True)`` whose errors say which file is broken and what to do.

    Only tensors and plain Python data are ever loaded: a file that needs more is refused,
    because unpickling arbitrary objects can run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is empty (was its save interrupted?); use another file or retrain")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error) and zipfile.is_zipfile(path):
            raise ValueError(
                f"checkpoint {path} holds Python objects other than tensors and plain data; eaviz does not load "
                "such files, because loading them can run code. Use a checkpoint written by eaviz"
            ) from None
        raise ValueError(f"checkpoint {path} is corrupt or not a torch file; use another file or retrain") from None
    except PermissionError as error:
        raise PermissionError(f"checkpoint {path} cannot be read: permission denied") from error
    except (RuntimeError, EOFError, IndexError, KeyError, ValueError, OSError) as error:
        raise ValueError(f"checkpoint {path} is truncated or corrupt; use another file or retrain") from error
    if not isinstance(payload, dict):
        raise ValueError(f"checkpoint {path} holds a {type(payload).__name__}, not an eaviz checkpoint (a dict)")
    return payload
