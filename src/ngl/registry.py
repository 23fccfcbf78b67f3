"""One registry type for every family (losses, datasets, models, fitness functions, executors).

As timm's ``register_model``: entries register next to their definition, names are unique, the
CLI's choices, the tests' parametrisation and the report's rows come from ``names()``, and an
unknown name is a one-line error that names the close matches.

>>> COLORS = Registry("color")
>>> @COLORS.register("red")
... def red():
...     return "#f00"
>>> COLORS.names()
['red']
>>> COLORS.get("red")()
'#f00'
>>> COLORS.get("rde")
Traceback (most recent call last):
...
ngl.errors.UnknownNameError: unknown color 'rde' (did you mean 'red'?); registered: red
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Args:
        kind: what an entry is, for messages (``"loss"``, ``"dataset"``).
        hint: appended to the unknown-name message (e.g. other accepted spellings).
    """

    def __init__(self, kind: str, *, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name already taken is an error."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator form of :meth:`add`; the name defaults to the object's ``__name__``."""
        def deco(obj: T) -> T:
            self.add(name or getattr(obj, "__name__"), obj)
            return obj
        return deco

    def get(self, name: str) -> T:
        """The entry named ``name``, or :class:`~ngl.errors.UnknownNameError` with close matches."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.6)
        did = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"unknown {self.kind} {name!r}{did}; registered: {', '.join(self._entries)}{hint}"

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
