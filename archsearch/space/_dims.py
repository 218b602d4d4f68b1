"""Dimensions of a search space: one labelled decision each.

A strategy sees only dimensions, never models: sampling, enumeration, mutation and a numeric
encoding are all it needs (grid search, evolution, RL and BO respectively).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Categorical:
    """A choice among a fixed, ordered tuple of JSON-friendly values (str, int, float, bool)."""

    choices: tuple[Hashable, ...]

    def __init__(self, choices: Sequence[Hashable]) -> None:
        values = tuple(choices)
        if not values:
            raise ValueError("Categorical needs at least one choice")
        if len(set(values)) != len(values):
            raise ValueError(f"Categorical choices must be distinct, got {values!r}")
        object.__setattr__(self, "choices", values)

    def __len__(self) -> int:
        return len(self.choices)

    def contains(self, value: Any) -> bool:
        return value in self.choices

    def sample(self, rng: np.random.Generator) -> Hashable:
        return self.choices[int(rng.integers(len(self.choices)))]

    def grid(self) -> Iterator[Hashable]:
        return iter(self.choices)

    def mutate(self, value: Hashable, rng: np.random.Generator) -> Hashable:
        """A different value, uniformly; the same value if there is no other."""
        others = [c for c in self.choices if c != value]
        return others[int(rng.integers(len(others)))] if others else value

    def encode(self, value: Hashable) -> list[float]:
        """One-hot encoding in choice order."""
        onehot = [0.0] * len(self.choices)
        onehot[self.choices.index(value)] = 1.0
        return onehot

    def to_json(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": list(self.choices)}
