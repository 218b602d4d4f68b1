"""NSGA-II: it beats random search's hypervolume on a two-objective problem, keeps the
Pareto front of everything it was told (elitism), cuts a front by crowding distance, and
passes the strategy contract with score vectors and with single floats."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from archsearch.errors import ConfigError
from archsearch.pareto import hypervolume_2d, pareto_front
from archsearch.strategies import NSGA2, RandomSearch
from archsearch.testing import categorical_space
from archsearch.testing.contracts import StrategyContract, ToyObjectives


class TestNSGA2Contract(StrategyContract):
    strategy_class = NSGA2
    strategy_kwargs = {"population": 6, "offspring": 3}
    beats_random_seeds = tuple(range(4))

    @pytest.mark.slow  # a new interpreter imports torch; tests/contract covers it by default
    def test_same_sequence_in_fresh_process(self) -> None:
        super().test_same_sequence_in_fresh_process()


def _run(strategy, objective, trials: int) -> list[tuple[float, float]]:
    told = []
    for _ in range(trials):
        arch = strategy.ask()
        scores = objective(arch)
        strategy.tell(arch, scores)
        told.append(scores)
    return told


def test_hypervolume_beats_random_search_with_the_same_budget():
    space = categorical_space()
    hv = {"nsga2": [], "random": []}
    for seed in range(6):
        objective = ToyObjectives(space, seed=100 + 2 * seed)  # conflicting optima
        nsga2 = _run(NSGA2(space, seed=seed, population=10), objective, 80)
        random = _run(RandomSearch(space, seed=seed), objective, 80)
        hv["nsga2"].append(hypervolume_2d(nsga2, (0.0, 0.0)))
        hv["random"].append(hypervolume_2d(random, (0.0, 0.0)))
    assert np.mean(hv["nsga2"]) > np.mean(hv["random"]) + 0.05, hv


def test_the_population_keeps_the_whole_front_of_everything_told():
    """(μ + λ) elitism: after each survival, every non-dominated point told so far is a
    parent (the front stays smaller than μ on this problem) and ranks 1 are exactly it."""
    space = categorical_space()
    objective = ToyObjectives(space, seed=7)
    strategy = NSGA2(space, seed=0, population=12, offspring=4)
    told: dict[str, tuple[float, float]] = {}
    survivals = 0
    for _ in range(120):
        arch = strategy.ask()
        told.setdefault(arch.fingerprint(), objective(arch))
        strategy.tell(arch, objective(arch))
        if len(strategy.members()) < 12 or strategy.state_dict()["children"]:
            continue
        survivals += 1
        keys = list(told)
        front = {keys[i] for i in pareto_front([told[k] for k in keys])}
        assert len(front) <= 12
        assert front <= {a.fingerprint() for a, _ in strategy.members()}
        assert {a.fingerprint() for a, _ in strategy.front()} == front
    assert survivals >= 5


def test_a_front_too_large_is_cut_by_crowding_distance_keeping_its_extremes():
    space = categorical_space()
    archs = list(space.enumerate())[:8]
    strategy = NSGA2(space, seed=0, population=4, offspring=4)
    # Eight points on one front (x + y = 7): the extremes have infinite crowding distance.
    for k, arch in enumerate(archs):
        strategy.tell(arch, (float(k), float(7 - k)))
    kept = sorted(scores for _, scores in strategy.members())
    assert (0.0, 7.0) in kept and (7.0, 0.0) in kept and len(kept) == 4
    assert len(strategy.front()) == 4


def test_same_seed_same_sequence_and_another_seed_differs():
    space = categorical_space()

    def proposals(seed):
        strategy = NSGA2(space, seed=seed, population=6)
        objective = ToyObjectives(space, seed=1)
        out = []
        for _ in range(30):
            arch = strategy.ask()
            strategy.tell(arch, objective(arch))
            out.append(arch.fingerprint())
        return out

    assert proposals(3) == proposals(3) != proposals(4)


def test_failures_repeats_and_single_floats():
    space = categorical_space()
    strategy = NSGA2(space, seed=0, population=3)
    arch = strategy.ask()
    strategy.tell(arch, None)
    strategy.tell(arch, (float("nan"), 1.0))
    assert strategy.members() == []  # failures carry no fitness
    strategy.tell(arch, 0.5)
    strategy.tell(arch, 0.5)  # a repeat (a cached trial) is not a second member
    assert strategy.members() == [(arch, (0.5,))]
    with pytest.raises(ConfigError, match="told 1 scores per trial, then 2"):
        strategy.tell(strategy.ask(), (0.1, 0.2))


@pytest.mark.parametrize("kwargs, message", [
    ({"population": 1}, "population"), ({"offspring": 0}, "offspring"),
    ({"crossover_prob": 1.5}, "crossover_prob"), ({"population": 2.5}, "integer")])
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        NSGA2(categorical_space(), **kwargs)


def _nb201_dir() -> Path:
    env = os.environ.get("ARCHSEARCH_NB201_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[4] / "shared" / "data" / "nb201"


@pytest.mark.slow
@pytest.mark.skipif(not (_nb201_dir() / "nb201_12epoch_accs.csv").is_file(),
                    reason="the NAS-Bench-201 tables are not available")
def test_nsga2_beats_random_search_on_nas_bench_201_accuracy_vs_macs():
    from archsearch import Budget, Objective, search
    from archsearch.benchmarks import NasBench201Table
    from archsearch.evaluators import TableEvaluator
    from archsearch.spaces.nasbench201 import NasBench201Space

    table = NasBench201Table.load(_nb201_dir(), expect_rows=None)
    space = NasBench201Space()
    evaluator = TableEvaluator(space, table, fidelity=12)
    objectives = [Objective("val_acc", "max"), Objective("macs", "min")]
    # About the median 12-epoch accuracy and the 90th percentile of MACs of the table.
    reference = (72.0, -1.14e8)

    def hypervolume(cls, seed):
        result = search(cls(space, seed=seed), evaluator, budget=Budget(trials=100),
                        objective=objectives, progress=False, dedup_key=space.canonical)
        return hypervolume_2d([t.score for t in result.front], reference)

    nsga2 = [hypervolume(NSGA2, seed) for seed in range(8)]
    random = [hypervolume(RandomSearch, seed) for seed in range(8)]
    assert np.mean(nsga2) > np.mean(random), (nsga2, random)
    assert sum(a > b for a, b in zip(nsga2, random, strict=True)) >= 6
