"""Toy search spaces and an analytic objective with a known optimum, for strategy tests.

The idea is NNI's and Optuna's sanity checks: a strategy must find good architectures on
a problem whose answer is known and that costs microseconds to score, so correctness and
"beats random search" can be tested without training any network. No torch here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from archsearch.space import Arch, Categorical, Float, Int, SearchSpace, SpaceExhausted

# The toy spaces by name; `make_toy_space(name)` builds one (also in a fresh process).
TOY_SPACES = ("toy_categorical", "toy_mixed", "toy_single")


def categorical_space() -> SearchSpace:
    """Six categorical decisions of four choices each: 4,096 architectures."""
    ops = ("conv3", "conv5", "pool", "skip")
    dims = {f"block{i}.op": Categorical(ops) for i in range(6)}
    return SearchSpace.from_dims(dims, name="toy_categorical")


def mixed_space() -> SearchSpace:
    """Categorical, integer (linear, stepped, log) and float (linear, log) dimensions;
    infinite because of the continuous floats."""
    dims = {
        "op": Categorical(("conv3", "conv5", "pool", "skip")),
        "act": Categorical(("relu", "gelu", "swish")),
        "depth": Int(1, 8),
        "width": Int(8, 64, step=8),
        "heads": Int(1, 16, log=True),
        "dropout": Float(0.0, 0.5),
        "lr": Float(1e-4, 1e-1, log=True),
    }
    return SearchSpace.from_dims(dims, name="toy_mixed")


def single_space() -> SearchSpace:
    """A space with exactly one architecture (every dimension has a single value)."""
    dims = {"op": Categorical(("conv3",)), "depth": Int(3, 3), "lr": Float(0.1, 0.1)}
    return SearchSpace.from_dims(dims, name="toy_single")


def make_toy_space(name: str) -> SearchSpace:
    """The toy space called `name` (one of `TOY_SPACES`)."""
    makers = {"toy_categorical": categorical_space, "toy_mixed": mixed_space,
              "toy_single": single_space}
    if name not in makers:
        raise KeyError(f"unknown toy space {name!r} (known: {', '.join(TOY_SPACES)})")
    return makers[name]()


class ToyObjective:
    """An additive objective with a hidden optimum: score(arch) = Σ_d w_d · closeness_d.

    Per dimension d it draws a weight w_d (the weights sum to 1) and a target value from
    a valid architecture sampled from the space (`optimum`). Closeness is 1 at the
    target: for a categorical dimension every other choice has a fixed utility drawn
    from [0, 0.7), for numbers it is 1 − |position(value) − position(target)| with the
    position from `dim.encode` (log-scaled for log dimensions). So scores lie in [0, 1],
    `optimum` is the unique maximiser with `max_score` = 1, and every dimension can be
    improved on its own — structure that evolution, BO or a controller can exploit.

    Args:
        space: any search space (spaces with a cross rule work: the optimum is sampled
            with `space.sample`, so it is valid).
        seed: draws the weights, utilities and optimum.

    Example:
        >>> objective = ToyObjective(categorical_space(), seed=0)
        >>> objective(objective.optimum) == objective.max_score == 1.0
        True
    """

    max_score = 1.0

    def __init__(self, space: SearchSpace, seed: int | None = 0) -> None:
        rng = np.random.default_rng(seed)
        self.space = space
        self.optimum: Arch = space.sample(rng)
        weights = rng.uniform(0.5, 1.5, size=len(space.dims))
        self.weights = dict(zip(space.dims, weights / weights.sum(), strict=True))
        self._utilities: dict[str, dict[Any, float]] = {}
        for label, dim in space.dims.items():
            if isinstance(dim, Categorical):
                values = rng.uniform(0.0, 0.7, size=len(dim.choices))
                table = {c: float(v) for c, v in zip(dim.choices, values, strict=True)}
                table[self.optimum[label]] = 1.0
                self._utilities[label] = table

    def __repr__(self) -> str:
        return f"ToyObjective({self.space.name!r}, max_score={self.max_score})"

    def closeness(self, label: str, value: Any) -> float:
        """How close `value` is to the target of dimension `label`, in [0, 1]."""
        if label in self._utilities:
            return self._utilities[label][value]
        dim = self.space.dims[label]
        distance = abs(dim.encode(value)[0] - dim.encode(self.optimum[label])[0])
        return 1.0 - distance

    def __call__(self, arch: Arch) -> float:
        """The score of `arch` (maximised; `max_score` at `optimum`)."""
        total = sum(w * self.closeness(label, arch[label]) for label, w in self.weights.items())
        return float(min(total, self.max_score))  # rounding must not exceed the known max

    def metrics(self, arch: Arch) -> dict[str, float]:
        """The score as evaluator metrics (`{"score": ...}`): usable as an Evaluator."""
        return {"score": self(arch)}


def best_score(strategy: Any, objective: ToyObjective, trials: int) -> float:
    """Run ask -> objective -> tell for `trials` trials (fewer if the strategy runs out of
    architectures) and return the best score seen."""
    best = -np.inf
    for _ in range(trials):
        try:
            arch = strategy.ask()
        except SpaceExhausted:
            break
        score = objective(arch)
        strategy.tell(arch, score)
        best = max(best, score)
    return float(best)
