"""Grid search: every architecture of a small finite space, once each.

Exhaustive evaluation is how tabular benchmarks such as NAS-Bench-201 (Dong & Yang,
arXiv:2001.00326) were built; as a strategy it is the reference that finds the optimum for
certain once the whole grid has been evaluated. The order is `space.enumerate()`'s stable
order (the last dimension varies fastest), optionally shuffled by the seed so that a
truncated budget still covers the space evenly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from archsearch.errors import ConfigError
from archsearch.space import MAX_ENUMERATE, Arch, SearchSpace, SpaceExhausted
from archsearch.strategies._base import SampleStrategy


class GridSearch(SampleStrategy):
    """Proposes the architectures of `space.enumerate()` in order, then raises SpaceExhausted.

    Scores do not influence the order, so `tell` only exists to satisfy the interface.
    The state is the position in the grid (plus the random generator's state): a restored
    strategy re-enumerates the space and skips what was already proposed.

    Args:
        space: a finite space of at most `MAX_ENUMERATE` architectures.
        seed: with `shuffle`, fixes the permutation.
        shuffle: visit the grid in a random order (drawn from `seed`) instead of its
            stable order. The shuffled grid is held in memory.

    Raises:
        ConfigError: if the space is infinite or too large to enumerate.

    Example:
        >>> from archsearch.testing import categorical_space
        >>> strategy = GridSearch(categorical_space())
        >>> first = strategy.ask()
        >>> first == next(categorical_space().enumerate())
        True
    """

    may_converge = False  # never settles: it walks a fixed order or never repeats

    def __init__(self, space: SearchSpace, *, seed: int | None = None,
                 shuffle: bool = False) -> None:
        super().__init__(space, seed=seed)
        size = space.size()
        # Checked here, before anything is enumerated, so a huge space fails at once.
        if size == math.inf or size > MAX_ENUMERATE:
            shown = "infinitely many" if size == math.inf else f"{size:,}"
            raise ConfigError(f"grid search needs a finite space of at most {MAX_ENUMERATE:,} "
                              f"architectures; space {space.name!r} has {shown} "
                              "(use random, evolution, rl or bo)")
        if not isinstance(shuffle, bool):
            raise ConfigError(f"shuffle must be true or false, got {shuffle!r}")
        self.shuffle = shuffle
        # The permutation's own seed, drawn once and kept in the state, so that a restored
        # strategy rebuilds the same permutation even when `seed` is None.
        self._shuffle_seed = int(self.rng.integers(2**63)) if shuffle else 0
        self.position = 0  # how many archs have been proposed
        self._order: Iterator[Arch] | None = None  # built lazily, from `position`

    def extra_repr(self) -> str:
        return f"size={self.space.size():,}, shuffle={self.shuffle}, position={self.position}"

    def ask(self) -> Arch:
        if self._order is None:
            self._order = self._grid_from(self.position)
        arch = next(self._order, None)
        if arch is None:
            raise SpaceExhausted(f"grid search has proposed all {self.position:,} "
                                 f"architectures of space {self.space.name!r}")
        self.position += 1
        return arch

    def _grid_from(self, start: int) -> Iterator[Arch]:
        """The grid from its `start`-th arch on."""
        archs = self.space.enumerate()
        if self.shuffle:
            ordered = list(archs)
            permutation = np.random.default_rng(self._shuffle_seed).permutation(len(ordered))
            archs = (ordered[int(k)] for k in permutation)
        return itertools.islice(archs, start, None)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(position=self.position, shuffle_seed=self._shuffle_seed)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.position = int(state["position"])
        self._shuffle_seed = int(state["shuffle_seed"])
        self._order = None
