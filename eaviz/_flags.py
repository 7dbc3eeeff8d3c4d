"""Command-line flags made from config dataclasses, and values checked where they enter.

A field such as ``lr: float = 0.1  # peak learning rate`` becomes ``--lr LR`` with the help
"peak learning rate (default: 0.1)": the comment beside the field is its documentation, so
the dataclass stays the one place where a setting, its default and its meaning live.
"""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import math
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import MISSING


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block): the flag, what is wrong, where to look."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def integer(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an int >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def number(above: float | None = None) -> Callable[[str], float]:
    """An argparse ``type``: a finite float (> ``above`` when given); ``nan`` and ``inf`` are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"expected a number > {above:g}, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


def folder(text: str) -> str:
    """An argparse ``type``: a folder name that is not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder name, got an empty one")
    return text


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The comment beside each field of dataclass ``cls``: ``dim: int = 128  # token dimension``."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    docs = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            tail = lines[node.end_lineno - 1][node.end_col_offset :].strip()
            if tail.startswith("#"):
                docs[node.target.id] = tail.lstrip("# ").strip()
    return docs


def _default(cls: type, name: str) -> str:
    spec = cls.__dataclass_fields__[name]
    value = spec.default if spec.default is not MISSING else spec.default_factory()
    if isinstance(value, bool) or value is None:
        return "on" if value else "off"
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _per_config(values: dict[type, str], between: str, separator: str) -> str:
    """One value, or ``classifier<between>X<separator>segmenter<between>Y`` where the configs disagree."""
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return separator.join(f"{cls.__name__.removesuffix('Config').lower()}{between}{v}" for cls, v in values.items())


def add_field_flag(
    group,
    fields: dict[type, str],
    dest: str,
    *,
    options: Sequence[str] | None = None,
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
) -> None:
    """Add ``--dest`` for a field of one or more configs; ``fields`` maps each config to its field's name.

    The type comes from the annotation (int, float, str, a tuple of floats, or bool, which
    gives ``--name`` when off by default and ``--no-name`` when on), the help from the field
    comments and the defaults. The flag's value is None when it is not given.
    """
    first, name = next(iter(fields.items()))
    spec = first.__dataclass_fields__[name]
    options = options or ("--" + dest.replace("_", "-"),)
    docs = {cls: field_docs(cls).get(field, f"{cls.__name__}.{field}") for cls, field in fields.items()}
    defaults = {cls: _default(cls, field) for cls, field in fields.items()}
    help_text = f"{_per_config(docs, ': ', '; ')} (default: {_per_config(defaults, ' ', ', ')})"
    if spec.type == "bool":
        on = spec.default is False
        options = options if on else ("--no-" + dest.replace("_", "-"),)
        group.add_argument(*options, dest=dest, action="store_const", const=on, help=help_text)
        return
    kind = spec.type.replace(" | None", "")
    nargs = kind.count(",") + 1 if kind.startswith("tuple[") else None
    value_type = number() if nargs or kind == "float" else {"int": integer(-(2**63)), "str": str}[kind]
    if metavar is None and choices is None:
        metavar = dest.upper()
    group.add_argument(
        *options, dest=dest, type=value_type, nargs=nargs, choices=choices, metavar=metavar, help=help_text
    )


def build_config(cls: type, given: dict, parser: argparse.ArgumentParser, flag_of: dict[str, str] | None = None):
    """``cls(**given)``; a value the config refuses is reported as a parser error of the flag that set it."""
    try:
        return cls(**given)
    except (TypeError, ValueError) as error:
        field = next((name for name in given if re.search(rf"\b{name}\b", str(error))), None)
        flag = (flag_of or {}).get(field, "--" + str(field).replace("_", "-"))
        parser.error(f"argument {flag}: {error}" if field else str(error))
