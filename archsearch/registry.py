"""Name -> object registries for the CLI and config files.

The Python API takes instances; registries exist so that a name typed on the command line
(or in a config) resolves to an implementation, and so contract tests can loop over every
registered entry. Registering a name twice is an error, and an unknown name suggests the
closest known one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from archsearch.errors import ArchsearchError

T = TypeVar("T")


class UnknownNameError(ArchsearchError, KeyError):
    """A registry was asked for a name it does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """An ordered mapping from a unique name to an object (a class, a factory, a value)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers its argument under `name`; a duplicate name raises."""

        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._entries, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(self._entries)
        return f"unknown {self.kind} {name!r}{hint} (known: {known})"

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
