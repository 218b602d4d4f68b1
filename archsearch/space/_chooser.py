"""Choosers: what a define-by-run builder asks for its decisions.

A builder `fn(c, **kwargs) -> nn.Module` calls `c.op(label, {name: factory})`,
`c.choice(label, values)` and `c.int(label, low, high)`. Which chooser it is handed decides
what the same function produces:

| chooser            | `c.op` returns                       | used for                  |
|--------------------|--------------------------------------|---------------------------|
| `RecordingChooser` | the first factory's module           | the dry run -> `dims`     |
| `FixedChooser`     | only the chosen factory's module     | the model of an Arch      |
| `SupernetChooser`  | a `MixedOp` over every factory (α)   | one-shot supernets        |

Choices are factories (classes, `functools.partial`), not modules, so a fixed build
constructs only what it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Protocol

from archsearch.errors import ArchError, ConfigError
from archsearch.space._dims import Categorical, Dimension, Int


class Chooser(Protocol):
    def op(self, label: str, candidates: Mapping[str, Callable[[], Any]]) -> Any: ...

    def choice(self, label: str, values: Sequence[Hashable]) -> Any: ...

    def int(self, label: str, low: int, high: int, *, step: int = 1) -> int: ...


def _op_names(label: str, candidates: Mapping[str, Callable[[], Any]]) -> tuple[str, ...]:
    if not candidates:
        raise ConfigError(f"c.op({label!r}) needs at least one candidate")
    for name, factory in candidates.items():
        if not isinstance(name, str) or not callable(factory):
            raise ConfigError(f"c.op({label!r}): candidates must map names to factories, "
                              f"got {name!r}: {factory!r}")
    return tuple(candidates)


class RecordingChooser:
    """Records each decision as a dimension; returns the first candidate. Used once, at
    space construction, to learn `dims`. A label asked twice is an error."""

    def __init__(self) -> None:
        self.dims: dict[str, Dimension] = {}
        self.op_labels: list[str] = []

    def _add(self, label: str, dim: Dimension) -> None:
        if not isinstance(label, str) or not label:
            raise ConfigError(f"decision labels must be non-empty strings, got {label!r}")
        if label in self.dims:
            raise ConfigError(f"the builder asks for decision {label!r} twice; labels must "
                              "be unique")
        self.dims[label] = dim

    def op(self, label: str, candidates: Mapping[str, Callable[[], Any]]) -> Any:
        names = _op_names(label, candidates)
        self._add(label, Categorical(names))
        self.op_labels.append(label)
        return candidates[names[0]]()

    def choice(self, label: str, values: Sequence[Hashable]) -> Any:
        dim = Categorical(values)
        self._add(label, dim)
        return dim.choices[0]

    def int(self, label: str, low: int, high: int, *, step: int = 1) -> int:
        self._add(label, Int(low, high, step=step))
        return low


class FixedChooser:
    """Answers every decision from an Arch's choices; `finish()` checks none went unused."""

    def __init__(self, choices: Mapping[str, Any]) -> None:
        self.choices = dict(choices)
        self.asked: list[str] = []

    def _value(self, label: str) -> Any:
        if label not in self.choices:
            raise ArchError(f"the builder asks for {label!r}, which the architecture lacks")
        self.asked.append(label)
        return self.choices[label]

    def op(self, label: str, candidates: Mapping[str, Callable[[], Any]]) -> Any:
        name = self._value(label)
        if name not in candidates:
            raise ArchError(f"{label} = {name!r} is not one of {', '.join(candidates)}")
        return candidates[name]()

    def choice(self, label: str, values: Sequence[Hashable]) -> Any:
        return self._value(label)

    def int(self, label: str, low: int, high: int, *, step: int = 1) -> int:
        return int(self._value(label))

    def finish(self) -> None:
        unused = [label for label in self.choices if label not in self.asked]
        if unused:
            raise ArchError(f"the builder never asked for {unused[0]!r}; the architecture "
                            "does not fit this space's settings")
