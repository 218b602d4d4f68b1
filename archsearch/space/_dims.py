"""Dimensions of a search space: one labelled decision each.

A strategy sees only dimensions, never models. Every dimension offers what the strategies
need: `sample` (random search), `grid` (grid search), `mutate` (evolution), `discretize`
(the RL controller's softmax over values) and `encode` (BO's feature vector), plus
`contains` for validation and a JSON form that identifies the space (`space_hash`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Union

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

    def size(self) -> int:
        return len(self.choices)

    def contains(self, value: Any) -> bool:
        # `True == 1` in Python; a bool must not pass for an int choice or vice versa.
        return any(value == c and type(value) is type(c) for c in self.choices)

    def sample(self, rng: np.random.Generator) -> Hashable:
        return self.choices[int(rng.integers(len(self.choices)))]

    def grid(self) -> Iterator[Hashable]:
        return iter(self.choices)

    def discretize(self, num: int = 10) -> tuple[Hashable, ...]:
        return self.choices

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

    def describe(self) -> str:
        return "{" + ", ".join(map(str, self.choices)) + "}"


@dataclass(frozen=True)
class Int:
    """An integer in [low, high] (both inclusive) on a grid of `step`, optionally log-spaced.

    With `log=True`, sampling is uniform in log space (values must be positive) and the
    encoding is the log-scaled position; the value set is still every step-th integer.
    """

    low: int
    high: int
    step: int = 1
    log: bool = False

    def __post_init__(self) -> None:
        for name in ("low", "high", "step"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"Int {name} must be an integer, got {value!r}")
        if self.high < self.low:
            raise ValueError(f"Int needs low <= high, got [{self.low}, {self.high}]")
        if self.step < 1:
            raise ValueError(f"Int step must be at least 1, got {self.step}")
        if self.log and self.low < 1:
            raise ValueError(f"a log-scaled Int needs low >= 1, got {self.low}")

    def values(self) -> range:
        return range(self.low, self.high + 1, self.step)

    def size(self) -> int:
        return len(self.values())

    def contains(self, value: Any) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool)
                and value in self.values())

    def sample(self, rng: np.random.Generator) -> int:
        values = self.values()
        if not self.log:
            return values[int(rng.integers(len(values)))]
        u = rng.uniform(math.log(self.low), math.log(values[-1] + 1))
        return self._snap(math.exp(u))

    def grid(self) -> Iterator[int]:
        return iter(self.values())

    def discretize(self, num: int = 10) -> tuple[int, ...]:
        return tuple(self.values())

    def mutate(self, value: int, rng: np.random.Generator) -> int:
        """A different value, uniformly over the grid; the same value if there is no other."""
        others = [v for v in self.values() if v != value]
        return others[int(rng.integers(len(others)))] if others else value

    def encode(self, value: int) -> list[float]:
        """The value's position in [0, 1] (log-scaled when `log`)."""
        return [_position(value, self.low, self.values()[-1], self.log)]

    def to_json(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "step": self.step,
                "log": self.log}

    def describe(self) -> str:
        step = f" step {self.step}" if self.step != 1 else ""
        return f"int [{self.low}, {self.high}]{step}{' log' if self.log else ''}"

    def _snap(self, x: float) -> int:
        k = round((x - self.low) / self.step)
        k = min(max(k, 0), len(self.values()) - 1)
        return self.values()[k]


@dataclass(frozen=True)
class Float:
    """A real number in [low, high]; `log` samples log-uniformly, `step` makes it a grid."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"Float bounds must be finite, got [{self.low}, {self.high}]")
        if self.high < self.low:
            raise ValueError(f"Float needs low <= high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scaled Float needs low > 0, got {self.low}")
        if self.step is not None and (self.step <= 0 or self.log):
            raise ValueError("Float step must be positive and cannot be combined with log")

    def size(self) -> int | float:
        """The number of values: finite only with a `step`."""
        if self.step is None:
            return 1 if self.low == self.high else math.inf
        return len(self._steps())

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not self.low <= value <= self.high:
            return False
        return self.step is None or any(math.isclose(value, v) for v in self._steps())

    def sample(self, rng: np.random.Generator) -> float:
        if self.step is not None:
            steps = self._steps()
            return steps[int(rng.integers(len(steps)))]
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def grid(self) -> Iterator[float]:
        if self.step is None and self.low != self.high:
            raise ValueError("a continuous Float has no grid; give it a step")
        return iter(self._steps() if self.step is not None else [float(self.low)])

    def discretize(self, num: int = 10) -> tuple[float, ...]:
        """The grid, or `num` evenly (log-)spaced values for a continuous Float."""
        if self.step is not None or self.low == self.high:
            return tuple(self.grid())
        if self.log:
            return tuple(float(v) for v in np.geomspace(self.low, self.high, num))
        return tuple(float(v) for v in np.linspace(self.low, self.high, num))

    def mutate(self, value: float, rng: np.random.Generator) -> float:
        """A Gaussian step of 0.2 of the (log-)range, reflected into range; grids move ±1."""
        if self.step is not None:
            steps = self._steps()
            k = min(range(len(steps)), key=lambda i: abs(steps[i] - value))
            k = min(max(k + (1 if rng.random() < 0.5 else -1), 0), len(steps) - 1)
            return steps[k]
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        x = math.log(value) if self.log else value
        x = _reflect(x + rng.normal(0.0, 0.2 * (hi - lo)), lo, hi)
        return float(math.exp(x)) if self.log else float(x)

    def encode(self, value: float) -> list[float]:
        return [_position(value, self.low, self.high, self.log)]

    def to_json(self) -> dict[str, Any]:
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log,
                "step": self.step}

    def describe(self) -> str:
        extra = " log" if self.log else (f" step {self.step}" if self.step else "")
        return f"float [{self.low}, {self.high}]{extra}"

    def _steps(self) -> list[float]:
        assert self.step is not None
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [float(self.low + k * self.step) for k in range(count)]


Dimension = Union[Categorical, Int, Float]  # noqa: UP007 (a runtime alias)


def dimension_from_json(doc: Any) -> Dimension:
    """Inverse of `to_json`; an unknown or malformed document raises ValueError."""
    if not isinstance(doc, dict):
        raise ValueError(f"a dimension must be a JSON object, got {doc!r}")
    kind = doc.get("type")
    if kind == "categorical":
        return Categorical(doc["choices"])
    if kind == "int":
        return Int(doc["low"], doc["high"], step=doc.get("step", 1), log=doc.get("log", False))
    if kind == "float":
        return Float(doc["low"], doc["high"], log=doc.get("log", False), step=doc.get("step"))
    raise ValueError(f"unknown dimension type {kind!r}")


def _position(value: float, low: float, high: float, log: bool) -> float:
    if high == low:
        return 0.0
    if log:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (value - low) / (high - low)


def _reflect(x: float, lo: float, hi: float) -> float:
    span = hi - lo
    if span == 0:
        return lo
    x = (x - lo) % (2 * span)
    return lo + (x if x <= span else 2 * span - x)
