"""The strategy contract (`archsearch.testing.contracts`) for every registered ask/tell
strategy, on the toy spaces and on every registered space with its default settings.

New strategies and spaces are picked up from the registries; one-shot strategies (DARTS)
have their own tests. Grid search runs only on spaces small enough to enumerate, and is
held to finding the known optimum instead of to beating random search.
"""

from __future__ import annotations

import functools
import math

import pytest

from archsearch.space import MAX_ENUMERATE, SearchSpace
from archsearch.spaces import SPACES
from archsearch.strategies import STRATEGIES, SampleStrategy
from archsearch.strategies.grid import GridSearch
from archsearch.strategies.random import RandomSearch
from archsearch.testing import TOY_SPACES, make_toy_space
from archsearch.testing.contracts import (
    check_asks_before_tells,
    check_asks_in_space,
    check_beats_random,
    check_exhaustive_finds_optimum,
    check_failed_trials_tolerated,
    check_same_seed_same_sequence,
    check_same_sequence_in_fresh_process,
    check_score_vectors,
    check_state_roundtrip,
)

SAMPLE_STRATEGIES = [name for name in STRATEGIES.names()
                     if issubclass(STRATEGIES.get(name), SampleStrategy)]
SPACE_NAMES = [*TOY_SPACES, *SPACES.names()]
# Strategies that learn from scores; random and grid search do not.
LEARNING = [name for name in SAMPLE_STRATEGIES
            if not issubclass(STRATEGIES.get(name), RandomSearch | GridSearch)]
EXHAUSTIVE = [name for name in SAMPLE_STRATEGIES
              if issubclass(STRATEGIES.get(name), GridSearch)]
# Strategies told tuples of scores in a multi-objective search (NSGA-II).
MULTI_OBJECTIVE = [name for name in SAMPLE_STRATEGIES
                   if getattr(STRATEGIES.get(name), "multi_objective", False)]


@functools.cache
def _space(name: str) -> SearchSpace:
    """A toy space, or a registered one with its default settings (built once)."""
    return make_toy_space(name) if name in TOY_SPACES else SPACES.get(name)()


def _enumerable(space: SearchSpace) -> bool:
    size = space.size()
    return size != math.inf and size <= MAX_ENUMERATE


def _factory(strategy: str, space: SearchSpace):
    cls = STRATEGIES.get(strategy)
    if issubclass(cls, GridSearch) and not _enumerable(space):
        pytest.skip("grid search needs a space small enough to enumerate")
    return lambda sp, seed: cls(sp, seed=seed)


def test_the_built_in_strategies_are_registered():
    assert {"random", "grid", "evolution"} <= set(SAMPLE_STRATEGIES)
    assert "darts" not in SAMPLE_STRATEGIES  # one-shot: not an ask/tell strategy


# Small budgets keep the file fast: an ask of the GP-based "bo" costs 50-100 ms of CPU
# once its random phase is over, and it runs on every space below. Evolution's tournament
# phase (after `population` = 20 tells) and its state are covered by its unit tests.
TRIALS = 14
ROUNDTRIP_WARMUP, ROUNDTRIP_COMPARE = 14, 6


@pytest.mark.parametrize("space_name", SPACE_NAMES)
@pytest.mark.parametrize("strategy", SAMPLE_STRATEGIES)
class TestContract:
    """The checks whose outcome depends on the space (its rule, its values' JSON)."""

    def test_asks_in_space(self, strategy, space_name):
        space = _space(space_name)
        check_asks_in_space(_factory(strategy, space), space, trials=TRIALS)

    def test_same_seed_same_sequence(self, strategy, space_name):
        space = _space(space_name)
        check_same_seed_same_sequence(_factory(strategy, space), space, trials=TRIALS)

    def test_state_roundtrip(self, strategy, space_name):
        space = _space(space_name)
        check_state_roundtrip(_factory(strategy, space), space, warmup=ROUNDTRIP_WARMUP,
                              compare=ROUNDTRIP_COMPARE)


@pytest.mark.parametrize("space_name", TOY_SPACES)
@pytest.mark.parametrize("strategy", SAMPLE_STRATEGIES)
class TestToyContract:
    """The checks of how a strategy is driven, which the toy spaces cover."""

    def test_failed_trials_tolerated(self, strategy, space_name):
        space = _space(space_name)
        check_failed_trials_tolerated(_factory(strategy, space), space, trials=TRIALS)

    def test_asks_before_tells(self, strategy, space_name):
        space = _space(space_name)
        check_asks_before_tells(_factory(strategy, space), space, pending=6, trials=6)


def test_same_sequence_in_fresh_process():
    """One new interpreter replays every strategy on the mixed toy space (grid search,
    which cannot enumerate it, on the categorical one)."""
    specs = [{"strategy": strategy, "seed": 3, "trials": TRIALS,
              "space": "toy_categorical" if strategy in EXHAUSTIVE else "toy_mixed"}
             for strategy in SAMPLE_STRATEGIES]
    check_same_sequence_in_fresh_process(specs)


@pytest.mark.parametrize("strategy", LEARNING)
def test_learning_strategies_beat_random_search(strategy):
    space = _space("toy_categorical")
    check_beats_random(_factory(strategy, space), space, trials=40, seeds=range(4))


@pytest.mark.slow
@pytest.mark.parametrize("space_name", ["toy_categorical", "toy_mixed"])
@pytest.mark.parametrize("strategy", LEARNING)
def test_learning_strategies_beat_random_search_more_often(strategy, space_name):
    space = _space(space_name)
    check_beats_random(_factory(strategy, space), space, trials=80, seeds=range(8))


@pytest.mark.parametrize("space_name", TOY_SPACES)
@pytest.mark.parametrize("strategy", MULTI_OBJECTIVE)
def test_multi_objective_strategies_take_score_vectors(strategy, space_name):
    space = _space(space_name)
    check_score_vectors(_factory(strategy, space), space, trials=TRIALS)


@pytest.mark.parametrize("space_name", ["toy_categorical", "toy_single"])
@pytest.mark.parametrize("strategy", EXHAUSTIVE)
def test_exhaustive_strategies_find_the_known_optimum(strategy, space_name):
    space = _space(space_name)
    check_exhaustive_finds_optimum(_factory(strategy, space), space)
