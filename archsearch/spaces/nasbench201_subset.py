"""The NAS-Bench-201 space (Dong & Yang, ICLR 2020, arXiv:2001.00326) restricted to the cells
of a partial table, so that `archsearch bench` runs on a test fixture of a few dozen rows as
it does on the whole 15,625-cell table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from archsearch.benchmarks.nb201 import NasBench201Table
from archsearch.space import Arch
from archsearch.spaces.nasbench201 import LABELS, NasBench201Space, parse_string

__all__ = ["TableSubspace"]


class TableSubspace(NasBench201Space):
    """The NAS-Bench-201 space restricted to the cells of a partial table (a test fixture):
    sampling, mutation, enumeration and the RL controller's masks only ever yield cells the
    table holds, so a benchmark on a few dozen rows runs like one on the whole table.

    Args:
        table: the (partial) table whose cells make the space.
    """

    def __init__(self, table: NasBench201Table) -> None:
        super().__init__()
        self._cells = [parse_string(table.string_of(int(i))) for i in table.indices]
        self._members = {self._key(cell) for cell in self._cells}

    @staticmethod
    def _key(choices: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(choices.get(label) for label in LABELS)

    def size(self) -> int:
        return len(self._members)

    def check(self, choices: Mapping[str, Any]) -> str | None:
        return None if self._key(choices) in self._members else "not a cell of the table"

    def allowed(self, label: str, partial: Mapping[str, Any]) -> list[Any]:
        fits = [c for c in self._cells if all(c[k] == v for k, v in partial.items())]
        return [op for op in self.ops if any(c[label] == op for c in fits)]

    def sample(self, rng: np.random.Generator) -> Arch:
        return self._make(self._cells[int(rng.integers(len(self._cells)))])

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """A uniformly chosen cell among the nearest (fewest edges changed) other cells."""
        distance = [sum(c[k] != arch.get(k) for k in LABELS) for c in self._cells]
        nearest = min((d for d in distance if d > 0), default=0)
        options = [c for c, d in zip(self._cells, distance, strict=True) if d == nearest]
        return self._make(options[int(rng.integers(len(options)))])

    def crossover(self, first: Arch, second: Arch, rng: np.random.Generator) -> Arch:
        child = super().crossover(first, second, rng)
        return child if self.check(child) is None else self.mutate(child, rng)
