"""Base class of one-shot strategies, which own their training loop."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any

EpochCallback = Callable[[Mapping[str, Any]], None]


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
