"""Where eaviz reads what it ships, and where it writes what you make.

- Shipped files (checkpoints and their cards, recorded benchmark results) are package data,
  read with ``importlib.resources``, so they are there in a wheel, in Colab and in a checkout
  alike. Nothing ever writes into the installed package.
- What you make (retrained checkpoints, new benchmark results) goes to a folder you own:
  ``$EAVIZ_HOME``, else ``~/.cache/eaviz``, unless a command is given another folder.
"""

from __future__ import annotations

import os
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

HOME_ENV = "EAVIZ_HOME"


def shipped(folder: str) -> Traversable:
    """A folder of the package's data, e.g. ``shipped("checkpoints")``."""
    return files("eaviz") / folder


def user_dir(folder: str) -> Path:
    """``$EAVIZ_HOME/folder``, else ``~/.cache/eaviz/folder``: where eaviz writes by default."""
    home = os.environ.get(HOME_ENV)
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "eaviz") / folder


def writable_folder(path: str | os.PathLike, *, argument: str) -> Path:
    """Create the folder ``path`` if needed and check that a file can be written in it.

    Checked before a long run starts, so that it does not fail at the end. Raises a
    ValueError naming ``argument`` (the option that chose the folder) when it cannot write.
    """
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ValueError(
            f"expected {argument} to be a folder you can write to, got {str(path)!r} ({error.strerror}); "
            f"choose another folder, or set ${HOME_ENV}"
        ) from None
    return path
