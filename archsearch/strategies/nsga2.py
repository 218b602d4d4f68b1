"""NSGA-II: multi-objective evolution that keeps a non-dominated population (Deb, Pratap,
Agarwal & Meyarivan, "A Fast and Elitist Multiobjective Genetic Algorithm: NSGA-II", IEEE
Transactions on Evolutionary Computation 6(2), 2002).

The parent population P (μ = `population` members) is ranked by non-dominated sorting
(rank 1 = the Pareto front of P) and, within a rank, by crowding distance. Children are
made by binary tournaments under the crowded-comparison operator ≺n (lower rank wins, then
the larger crowding distance), uniform crossover of two winners (`space.crossover`, with
probability `crossover_prob`) and mutation (`space.mutate`: one decision changed, the
discrete analogue of the paper's per-variable mutation with rate 1/n). Once λ = `offspring`
children have been scored, survival is (μ + λ) and elitist: P ∪ Q is sorted into fronts,
whole fronts are kept while they fit, and the last one is cut by crowding distance.

Scores are maximised vectors, `tell(arch, (acc, -macs))`; the search loop hands them over
when it optimises several objectives (`multi_objective = True`). A single float is one
objective, which makes this a (μ + λ) genetic algorithm with binary tournaments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from archsearch.errors import ConfigError
from archsearch.pareto import crowding_distance, non_dominated_sort
from archsearch.space import Arch, SearchSpace
from archsearch.strategies._base import SampleStrategy


class _Member(NamedTuple):
    arch: Arch
    scores: tuple[float, ...]
    fingerprint: str


class NSGA2(SampleStrategy):
    """NSGA-II with binary crowded tournaments and (μ + λ) elitist survival.

    Until `population` distinct architectures have been scored, every ask is a uniform
    random sample (the paper's random P0), so asks may run ahead of tells. Failed trials
    (None) and architectures already in the population or the offspring pool (repeats
    carry no new information) are ignored.

    Args:
        space: the search space; uses `sample`, `mutate` and `crossover`.
        seed: seeds every random choice.
        population: μ, the parents kept after each survival.
        offspring: λ, the scored children that trigger a survival (default μ, as in the
            paper; 1 gives a steady-state variant).
        crossover_prob: the probability that a child is the uniform crossover of two
            tournament winners (0.9 in the paper) rather than a copy of one; either way it
            is then mutated.

    Raises:
        ConfigError: on a population below 2, offspring below 1, a crossover_prob outside
            [0, 1], or scores whose length changes between tells.

    Example:
        >>> from archsearch.testing import ToyObjective, categorical_space
        >>> space = categorical_space()
        >>> accuracy, cost = ToyObjective(space, seed=0), ToyObjective(space, seed=1)
        >>> strategy = NSGA2(space, seed=0, population=8)
        >>> for _ in range(40):
        ...     arch = strategy.ask()
        ...     strategy.tell(arch, (accuracy(arch), cost(arch)))
        >>> len(strategy.members())
        8
    """

    multi_objective = True  # tell() takes a vector of maximised scores

    def __init__(self, space: SearchSpace, *, seed: int | None = None, population: int = 20,
                 offspring: int | None = None, crossover_prob: float = 0.9) -> None:
        super().__init__(space, seed=seed)
        offspring = population if offspring is None else offspring
        _check_settings(population, offspring, crossover_prob)
        self.population, self.offspring = population, offspring
        self.crossover_prob = float(crossover_prob)
        self.num_objectives: int | None = None  # fixed by the first scored tell
        self._parents: list[_Member] = []
        self._children: list[_Member] = []  # Q: scored children awaiting survival
        self._rank = np.zeros(0, dtype=int)
        self._crowding = np.zeros(0)

    def extra_repr(self) -> str:
        return (f"seed={self.seed}, population={self.population}, "
                f"offspring={self.offspring}, crossover_prob={self.crossover_prob}")

    def members(self) -> list[tuple[Arch, tuple[float, ...]]]:
        """The parent population as (arch, scores) pairs."""
        return [(m.arch, m.scores) for m in self._parents]

    def front(self) -> list[tuple[Arch, tuple[float, ...]]]:
        """The parents of rank 1: the non-dominated members of the population."""
        return [(m.arch, m.scores) for m, r in zip(self._parents, self._rank, strict=True)
                if r == 0]

    # --- ask -------------------------------------------------------------------------------
    def ask(self) -> Arch:
        if len(self._parents) < self.population:
            return self.space.sample(self.rng)  # the random initial population P0
        first = self._tournament()
        if self.crossover_prob > 0 and self.rng.random() < self.crossover_prob:
            child = self.space.crossover(first, self._tournament(), self.rng)
        else:
            child = first
        return self.space.mutate(child, self.rng)

    def _tournament(self) -> Arch:
        """Binary tournament under ≺n: lower rank wins, then larger crowding distance
        (ties: the first drawn)."""
        a, b = (int(k) for k in self.rng.choice(len(self._parents), size=2, replace=False))
        key_a = (self._rank[a], -self._crowding[a])
        key_b = (self._rank[b], -self._crowding[b])
        return self._parents[b if key_b < key_a else a].arch

    # --- tell ------------------------------------------------------------------------------
    def tell(self, arch: Arch, score: float | Sequence[float] | None) -> None:
        scores = self._vector(score)
        if scores is None:
            return  # a failed trial carries no information about fitness
        fingerprint = arch.fingerprint()
        if any(m.fingerprint == fingerprint for m in (*self._parents, *self._children)):
            return
        member = _Member(arch, scores, fingerprint)
        if len(self._parents) < self.population:
            self._parents.append(member)
            if len(self._parents) == self.population:
                self._rank_parents()
            return
        self._children.append(member)
        if len(self._children) >= self.offspring:
            self._survive()

    def _vector(self, score: float | Sequence[float] | None) -> tuple[float, ...] | None:
        if score is None:
            return None
        values = (float(score),) if isinstance(score, int | float | np.number) else tuple(
            float(s) for s in score)
        if any(math.isnan(v) for v in values):
            return None
        if self.num_objectives is None:
            self.num_objectives = len(values)
        elif len(values) != self.num_objectives:
            raise ConfigError(f"NSGA2 was told {self.num_objectives} scores per trial, then "
                              f"{len(values)}")
        return values

    def _survive(self) -> None:
        """(μ + λ) elitist survival (the paper's main loop): whole fronts of R = P ∪ Q while
        they fit, then the least crowded members of the front that does not."""
        pool = self._parents + self._children
        survivors: list[int] = []
        for front in non_dominated_sort([m.scores for m in pool]):
            if len(survivors) + len(front) <= self.population:
                survivors += front
                continue
            crowding = crowding_distance([pool[i].scores for i in front])
            by_crowding = np.argsort(-crowding, kind="stable")  # stable: ties keep order
            survivors += [front[int(k)] for k in by_crowding[:self.population - len(survivors)]]
            break
        self._parents = [pool[i] for i in sorted(survivors)]
        self._children = []
        self._rank_parents()

    def _rank_parents(self) -> None:
        """Rank and crowding distance of every parent, for the tournaments.

        NOTE: computed on P itself, not carried over from the fronts of R before the cut as
        in the paper; the two agree except on the cut front, and this way the state needs
        only the members (no infinities in its JSON).
        """
        scores = [m.scores for m in self._parents]
        self._rank = np.zeros(len(scores), dtype=int)
        self._crowding = np.zeros(len(scores))
        for rank, front in enumerate(non_dominated_sort(scores)):
            self._rank[front] = rank
            self._crowding[front] = crowding_distance([scores[i] for i in front])

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(num_objectives=self.num_objectives,
                     parents=[[dict(m.arch), list(m.scores)] for m in self._parents],
                     children=[[dict(m.arch), list(m.scores)] for m in self._children])
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.num_objectives = state["num_objectives"]
        self._parents = [self._member(c, s) for c, s in state["parents"]]
        self._children = [self._member(c, s) for c, s in state["children"]]
        if len(self._parents) >= self.population:
            self._rank_parents()

    def _member(self, choices: Mapping[str, Any], scores: Sequence[float]) -> _Member:
        arch = self.space.arch(choices)
        return _Member(arch, tuple(float(s) for s in scores), arch.fingerprint())


def _check_settings(population: int, offspring: int, crossover_prob: float) -> None:
    for name, value in (("population", population), ("offspring", offspring)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    if population < 2:
        raise ConfigError(f"population must be at least 2, got {population}")
    if offspring < 1:
        raise ConfigError(f"offspring must be at least 1, got {offspring}")
    if (isinstance(crossover_prob, bool) or not isinstance(crossover_prob, int | float)
            or not 0.0 <= crossover_prob <= 1.0):
        raise ConfigError(f"crossover_prob must be a number in [0, 1], got {crossover_prob!r}")
