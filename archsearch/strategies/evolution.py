"""Regularized (aging) evolution (Real, Aggarwal, Huang & Le, AAAI 2019, arXiv:1802.01548).

The population is a queue of the last `population` scored architectures. A child is made
by a tournament: `sample_size` members are drawn at random and the best is mutated (one
decision changed, `space.mutate`). Its score is appended to the queue and the *oldest*
member is removed, not the worst: the aging that gives the method its name and that keeps
a lucky early score from dominating forever. With probability `crossover_prob` the child
is instead the uniform crossover of two tournament winners, then mutated, as in the
evolutionary search of Once-for-All (Cai et al., arXiv:1908.09791).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from archsearch.errors import ConfigError
from archsearch.space import Arch, SearchSpace
from archsearch.strategies._base import SampleStrategy


class RegularizedEvolution(SampleStrategy):
    """Aging evolution with tournament selection and optional uniform crossover.

    Until `population` architectures have been *scored* (told with a score), every ask is
    a uniform random sample, so asking ahead of the results works from the first trial on.
    Failed trials (score None) never enter the population.

    Args:
        space: the search space; uses `sample`, `mutate` and `crossover`.
        seed: seeds every random choice.
        population: the number of most recent scored architectures kept (P in the paper,
            which uses 100 on large spaces).
        sample_size: tournament size (S in the paper; 25 with P = 100). Larger is greedier.
        crossover_prob: the probability that a child is the crossover of two tournament
            winners (then mutated) rather than a mutant of one.

    Raises:
        ConfigError: if population < 2, sample_size is not in [1, population] or
            crossover_prob is not in [0, 1].

    Example:
        >>> from archsearch.testing import ToyObjective, categorical_space
        >>> space = categorical_space()
        >>> objective = ToyObjective(space, seed=0)
        >>> strategy = RegularizedEvolution(space, seed=0, population=10, sample_size=3)
        >>> for _ in range(50):
        ...     arch = strategy.ask()
        ...     strategy.tell(arch, objective(arch))
        >>> len(strategy.members())
        10
    """

    def __init__(self, space: SearchSpace, *, seed: int | None = None, population: int = 20,
                 sample_size: int = 5, crossover_prob: float = 0.25) -> None:
        super().__init__(space, seed=seed)
        _check_settings(population, sample_size, crossover_prob)
        self.population = population
        self.sample_size = sample_size
        self.crossover_prob = float(crossover_prob)
        # (arch, score), oldest first; the aging queue of the paper's Algorithm 1.
        self._members: deque[tuple[Arch, float]] = deque(maxlen=population)

    def extra_repr(self) -> str:
        return (f"seed={self.seed}, population={self.population}, "
                f"sample_size={self.sample_size}, crossover_prob={self.crossover_prob}")

    def members(self) -> list[tuple[Arch, float]]:
        """The current population as (arch, score) pairs, oldest first."""
        return list(self._members)

    def ask(self) -> Arch:
        if len(self._members) < self.population:
            return self.space.sample(self.rng)  # the random initial population
        if self.crossover_prob > 0 and self.rng.random() < self.crossover_prob:
            child = self.space.crossover(self._tournament(), self._tournament(), self.rng)
        else:
            child = self._tournament()
        return self.space.mutate(child, self.rng)

    def _tournament(self) -> Arch:
        """The best of `sample_size` members drawn without replacement (ties: first drawn).

        NOTE: the paper's Algorithm 1 draws with replacement; without it, `sample_size =
        population` deterministically selects the best member, which is the usual meaning.
        """
        picks = self.rng.choice(len(self._members), size=self.sample_size, replace=False)
        best = max((self._members[int(k)] for k in picks), key=lambda member: member[1])
        return best[0]

    def tell(self, arch: Arch, score: float | None) -> None:
        if score is None or math.isnan(score):
            return  # a failed trial carries no information about fitness
        # The deque's maxlen drops the oldest member: aging, not removal of the worst.
        self._members.append((arch, float(score)))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["members"] = [[dict(arch), score] for arch, score in self._members]
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._members.clear()
        for choices, score in state["members"]:
            self._members.append((self.space.arch(choices), float(score)))


def _check_settings(population: int, sample_size: int, crossover_prob: float) -> None:
    for name, value in (("population", population), ("sample_size", sample_size)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    if population < 2:
        raise ConfigError(f"population must be at least 2, got {population}")
    if not 1 <= sample_size <= population:
        raise ConfigError(f"sample_size must be between 1 and population ({population}), "
                          f"got {sample_size}")
    if (isinstance(crossover_prob, bool) or not isinstance(crossover_prob, int | float)
            or not 0.0 <= crossover_prob <= 1.0):
        raise ConfigError(f"crossover_prob must be a number in [0, 1], got {crossover_prob!r}")
