"""Build attention blocks by name: one registry for token mixers, one for segmentation heads.

A block says what it is on its class, so models, the CLI, the benchmarks and the recorder ask
the class instead of keeping lists::

    class MyMixer(nn.Module):
        kind = "external"    # its map is over S memory units: attn (B, N, S) or (B, heads, N, S)
        ...

    register_mixer("mine", MyMixer)          # now ClassifierConfig(mixer="mine") works

``kind`` is one of:

- ``"external"``: ``forward(x, return_attn=True)`` returns ``(y, attn)`` with attn
  ``(B, N, S)`` or ``(B, heads, N, S)``, a map over S memory units; the block has a
  ``memory_units`` attribute (S).
- ``"self"``: the same call returns attn ``(B, N, N)`` or ``(B, heads, N, N)``, a map over
  positions (row ``q`` is where position ``q`` looks).
- ``"none"``: no map (the call returns ``(y, None)``), or no ``return_attn`` at all.

A registered builder is a class, or a ``functools.partial`` of one (``partial(SelfAttention,
fused=False)``). Its keyword-only arguments (after ``*``) are its settings: a model passes the
config fields of the same names (see :meth:`Registry.settings`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from functools import partial

from torch import nn

from eaviz._checks import check_choice

KINDS = ("external", "self", "none")

Builder = type[nn.Module] | partial


def _class_of(block: object) -> type:
    cls = block.func if isinstance(block, partial) else block
    return cls if isinstance(cls, type) else type(cls)


def kind_of(block: object) -> str | None:
    """The ``kind`` a block's class declares (a module, a class or a partial of one); None if it declares none."""
    return getattr(_class_of(block), "kind", None)


class Registry(dict):
    """name -> builder for one family of blocks (``what``: "mixer" or "head"), in registration order."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what
        self._kinds: dict[str, str] = {}

    def register(self, name: str, builder: Builder | None = None, *, kind: str | None = None):
        """Add ``builder`` under ``name``; without ``builder`` this is a class decorator.

        The class declares ``kind``. Only a class you cannot edit that has no map (``nn.Identity``)
        may be given ``kind="none"`` here instead: a block with a map must say so on its class,
        because the recorder finds maps by asking the modules of a model.
        """
        if builder is None:
            return lambda cls: self.register(name, cls, kind=kind)
        if not isinstance(name, str) or not name:
            raise TypeError(f"expected {self.what} name to be a non-empty str, got {name!r}")
        declared = kind_of(builder)
        if declared is not None:
            check_choice(declared, KINDS, f"{_class_of(builder).__name__}.kind")
        if declared is None and kind != "none":
            raise TypeError(
                f"expected {self.what} {name!r} to declare what it is: a class attribute kind = one of {KINDS}"
            )
        if declared is not None and kind not in (None, declared):
            raise ValueError(f"{self.what} {name!r} declares kind={declared!r}; got kind={kind!r} as well")
        if name in self and self[name] is not builder:
            raise ValueError(f"a {self.what} named {name!r} is already registered: {self[name]!r}")
        self[name] = builder
        self._kinds[name] = declared or kind
        return builder

    def resolve(self, spec: str | Builder) -> Builder:
        """A registered name, a class or a partial -> the builder."""
        if isinstance(spec, str):
            return self[check_choice(spec, tuple(self), self.what)]
        if isinstance(spec, (type, partial)):
            return spec
        raise TypeError(f"expected {self.what} to be a name, a class or a functools.partial, got {type(spec).__name__}")

    def kind(self, spec: str | Builder) -> str:
        """"external", "self" or "none": what the blocks of ``spec`` map their tokens over."""
        if isinstance(spec, str):
            return self._kinds[check_choice(spec, tuple(self), self.what)]
        kind = kind_of(self.resolve(spec))
        if kind is None:
            raise TypeError(f"expected {spec!r} to declare a class attribute kind = one of {KINDS}")
        return kind

    def settings(self, spec: str | Builder, values: Mapping[str, object]) -> dict:
        """The entries of ``values`` (e.g. a config's fields) named like a keyword-only argument of ``spec``.

        ``settings("external", {"memory_units": 64, "heads": 4, "depth": 2}) == {"memory_units": 64}``.
        """
        parameters = inspect.signature(self.resolve(spec)).parameters.values()
        names = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
        return {name: value for name, value in values.items() if name in names}

    def build(self, spec: str | Builder, *args, **kwargs) -> nn.Module:
        """``builder(*args, **kwargs)`` for a name, a class or a partial."""
        return self.resolve(spec)(*args, **kwargs)

