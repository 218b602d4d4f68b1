"""Bayesian optimisation (GP + expected improvement): the acquisition formula, that it finds
known optima faster than random search, failures, no repeats, resumable state, DARTS."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from archsearch.errors import ConfigError
from archsearch.space import Categorical, Int, SearchSpace, SpaceExhausted
from archsearch.spaces.darts import DartsCellSpace
from archsearch.strategies.bo import BayesianOptimization, expected_improvement
from archsearch.testing.toys import ToyObjective, best_score, categorical_space, mixed_space


def line_space() -> SearchSpace:
    return SearchSpace.from_dims({"x": Int(0, 99)}, name="line")


def peak(arch) -> float:
    """Smooth, single optimum at x = 73."""
    return -((arch["x"] - 73) / 10) ** 2


def trials_to_optimum(strategy, objective, optimum: float, limit: int = 100) -> int:
    for trial in range(1, limit + 1):
        arch = strategy.ask()
        score = objective(arch)
        if score == optimum:
            return trial
        strategy.tell(arch, score)
    return limit + 1


def run(strategy, objective, trials: int) -> list:
    archs = []
    for _ in range(trials):
        arch = strategy.ask()
        strategy.tell(arch, objective(arch))
        archs.append(arch)
    return archs


def test_expected_improvement_matches_hand_computation():
    # μ = 1, σ = 2, f* = 0.5, ξ = 0.1: z = 0.2, Φ(0.2) = 0.5792597094, φ(0.2) = 0.3910426940,
    # EI = 0.4 · 0.5792597094 + 2 · 0.3910426940 = 1.0137892713.
    assert expected_improvement([1.0], [2.0], 0.5, 0.1)[0] == pytest.approx(1.0137892713)
    # σ = 0: the improvement is certain, and never negative.
    np.testing.assert_allclose(expected_improvement([1.0, 0.2], [0.0, 0.0], 0.5), [0.5, 0.0])
    # Far below the best with little uncertainty: essentially nothing to gain.
    assert 0.0 <= expected_improvement([-10.0], [0.1], 0.0)[0] < 1e-12
    # More uncertainty at the same mean is worth more; a larger ξ asks for more.
    ei = expected_improvement([0.0, 0.0], [0.5, 1.0], 0.0)
    assert ei[1] > ei[0] > 0
    assert expected_improvement([0.0], [1.0], 0.0, xi=0.5)[0] < ei[1]


def test_finds_a_known_optimum_faster_than_random_search():
    # Random search without repeats needs (100 + 1) / 2 = 50.5 trials on average to hit the
    # one optimum of 100 points; the GP should home in right after its 5 random trials.
    counts = [trials_to_optimum(BayesianOptimization(line_space(), seed=seed, initial_trials=5),
                                peak, 0.0) for seed in range(5)]
    assert np.mean(counts) < 20, counts
    assert max(counts) < 40, counts


def test_beats_random_search_on_a_categorical_toy():
    # 4,096 archs: more than the candidate pool, so this exercises sampled + mutated pools.
    space = categorical_space()
    bo_best, random_best = [], []
    for seed in range(2):
        objective = ToyObjective(space, seed=seed)
        rng = np.random.default_rng(seed + 10)
        random_best.append(max(objective(space.sample(rng)) for _ in range(20)))
        bo = BayesianOptimization(space, seed=seed + 10, initial_trials=8, candidates=128)
        bo_best.append(best_score(bo, objective, 20))
    assert all(b > r for b, r in zip(bo_best, random_best, strict=True)), (bo_best, random_best)
    assert min(bo_best) > 0.95


def test_failed_trials_are_imputed_and_avoided():
    # Everything left of x = 50 fails; the optimum is at 73. The failures are imputed the
    # worst score, so the surrogate steers away from them instead of crashing or ignoring them.
    def objective(arch):
        return None if arch["x"] < 50 else peak(arch)

    for seed in range(3):
        bo = BayesianOptimization(line_space(), seed=seed, initial_trials=6)
        found, failed_after_init = False, 0
        for trial in range(30):
            arch = bo.ask()
            score = objective(arch)
            failed_after_init += trial >= 6 and score is None
            bo.tell(arch, score)
            if score == 0.0:
                found = True
                break
        assert found, seed
        assert failed_after_init <= 2, (seed, failed_after_init)


def test_only_failures_keep_it_random_and_nan_counts_as_failure():
    bo = BayesianOptimization(line_space(), seed=0, initial_trials=2)
    for _ in range(5):
        bo.tell(bo.ask(), None)
    bo.tell(bo.ask(), float("nan"))
    arch = bo.ask()  # no finite score yet: a random proposal, not an error
    assert line_space().contains(arch)
    assert [s for _, s in bo._told] == [None] * 6


def test_never_proposes_an_arch_twice_and_stops_when_the_space_is_used_up():
    space = SearchSpace.from_dims({"a": Categorical("pqrs"), "b": Int(1, 5)}, name="small")
    bo = BayesianOptimization(space, seed=0, initial_trials=3)
    archs = run(bo, lambda a: a["b"] + (a["a"] == "q"), 20)
    assert len({a.fingerprint() for a in archs}) == 20
    with pytest.raises(SpaceExhausted):
        bo.ask()


def test_pending_asks_are_not_proposed_again():
    # Parallel use: many asks before their tells, in a space bigger than the pool.
    space, objective = categorical_space(), ToyObjective(categorical_space(), seed=1)
    bo = BayesianOptimization(space, seed=0, initial_trials=4, candidates=64)
    told = run(bo, objective, 6)
    pending = [bo.ask() for _ in range(8)]
    fingerprints = {a.fingerprint() for a in told + pending}
    assert len(fingerprints) == 14


def test_same_seed_same_proposals_and_the_seed_matters():
    space, objective = mixed_space(), ToyObjective(mixed_space(), seed=0)
    first = run(BayesianOptimization(space, seed=3, initial_trials=4, candidates=64), objective,
                8)
    again = run(BayesianOptimization(space, seed=3, initial_trials=4, candidates=64), objective,
                8)
    other = run(BayesianOptimization(space, seed=4, initial_trials=4, candidates=64), objective,
                8)
    assert first == again
    assert first[4:] != other[4:]


def test_state_round_trip_continues_identically():
    space, objective = mixed_space(), ToyObjective(mixed_space(), seed=2)
    settings = {"seed": 5, "initial_trials": 4, "candidates": 64}
    original = BayesianOptimization(space, **settings)
    run(original, objective, 7)
    pending = original.ask()  # saved while a trial is still running
    state = json.loads(json.dumps(original.state_dict()))  # plain JSON
    restored = BayesianOptimization(space, **settings)
    restored.load_state_dict(state)
    for strategy in (original, restored):
        strategy.tell(pending, objective(pending))
    assert run(restored, objective, 4) == run(original, objective, 4)


def test_proposals_in_the_darts_space_are_valid_and_improve():
    space = DartsCellSpace()

    def objective(arch):
        return sum(op == "sep_conv_3x3" for op in arch.values())

    bo = BayesianOptimization(space, seed=0, initial_trials=4, candidates=64)
    archs = run(bo, objective, 10)
    for arch in archs:
        space.validate(arch)
    assert len({a.fingerprint() for a in archs}) == len(archs)
    assert max(map(objective, archs[4:])) > max(map(objective, archs[:4]))


@pytest.mark.parametrize("setting", [{"initial_trials": 0}, {"candidates": 0}, {"xi": -0.1},
                                     {"xi": math.nan}, {"top_k": -1}, {"restarts": 1.5}])
def test_bad_settings_raise_config_error(setting):
    with pytest.raises(ConfigError):
        BayesianOptimization(line_space(), **setting)


def test_registered_as_bo():
    from archsearch.strategies import STRATEGIES

    assert STRATEGIES.get("bo") is BayesianOptimization
