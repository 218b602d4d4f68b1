"""Base classes of search strategies.

`SampleStrategy` (ask/tell) proposes architectures one at a time and learns from their
scores; it sees only the space's dimensions and the scores, never a model or data. The
search loop (`archsearch.search`) owns budgets, deduplication, failures and the journal.
`OneShotStrategy` (DARTS) trains a supernet and owns its loop.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from archsearch.space import Arch, SearchSpace

EpochCallback = Callable[[Mapping[str, Any]], None]


class SampleStrategy(abc.ABC):
    """Proposes architectures with `ask()` and learns from `tell(arch, score)`.

    Scores are maximised: the loop negates a metric that is to be minimised. A score of
    None means the trial failed. `ask()` raises `SpaceExhausted` when the strategy has
    nothing left to propose (grid search at the end of its grid).

    `state_dict()` is plain JSON (numbers, strings, lists, dicts), including the random
    generator's state, so a run can be resumed exactly from the saved state.

    Args:
        space: the search space; only `space.dims` and its sampling/mutation/encoding
            methods are used.
        seed: seeds every random choice; the same seed and the same scores give the same
            sequence of proposals.
    """

    # A strategy that adapts to scores can settle on architectures already evaluated; the
    # loop stops it after many repeats in a row. One that walks a fixed order (grid, random
    # without repeats) always moves on, however many equivalent archs it meets on the way.
    may_converge: bool = True

    def __init__(self, space: SearchSpace, *, seed: int | None = None) -> None:
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def ask(self) -> Arch:
        """The next architecture to evaluate."""

    def tell(self, arch: Arch, score: float | None) -> None:  # noqa: B027 (optional hook)
        """Report the score of an architecture returned by `ask` (None: the trial failed)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this strategy is (JSON values)."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        return f"{type(self).__name__}({self.space.name!r}{', ' + extra if extra else ''})"


class OneShotStrategy(abc.ABC):
    """A strategy that trains a supernet and derives one architecture from it.

    Unlike ask/tell strategies it sees data and a model: the bilevel optimisation *is* the
    algorithm, so the loop lives here rather than in a generic search loop.
    """

    @abc.abstractmethod
    def search(self, x_train: Any, y_train: Any, *, num_classes: int,
               on_epoch: EpochCallback | None = None, progress: bool = True) -> Any:
        """Run the search on training data and return the result (with the derived arch)."""

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
