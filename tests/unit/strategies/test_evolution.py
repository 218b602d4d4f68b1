"""RegularizedEvolution: random start, tournament selection, aging, crossover, failures."""

from __future__ import annotations

import json

import pytest

from archsearch.errors import ConfigError
from archsearch.spaces import DartsCellSpace
from archsearch.strategies import RegularizedEvolution
from archsearch.testing import ToyObjective, best_score, categorical_space


class _Spy:
    """Records the arguments of a space method and forwards the call."""

    def __init__(self, monkeypatch, space, name):
        self.calls = []
        original = getattr(space, name)

        def spy(*args):
            self.calls.append(args[:-1])  # drop the rng
            return original(*args)

        monkeypatch.setattr(space, name, spy)


def _fill(strategy, scores):
    """Tell one random arch per score; return the archs."""
    archs = []
    for score in scores:
        arch = strategy.ask()
        strategy.tell(arch, score)
        archs.append(arch)
    return archs


@pytest.mark.parametrize("kwargs,match", [
    ({"population": 1}, "population must be at least 2"),
    ({"population": 2.5}, "population must be an integer"),
    ({"sample_size": 0}, "sample_size must be between 1 and population"),
    ({"population": 4, "sample_size": 5}, "sample_size must be between"),
    ({"crossover_prob": 1.5}, "crossover_prob"),
    ({"crossover_prob": -0.1}, "crossover_prob"),
])
def test_settings_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        RegularizedEvolution(categorical_space(), **kwargs)


def test_asks_stay_random_until_the_population_is_filled_by_tells(monkeypatch):
    space = categorical_space()
    mutate = _Spy(monkeypatch, space, "mutate")
    strategy = RegularizedEvolution(space, seed=0, population=4, sample_size=2)
    pending = [strategy.ask() for _ in range(10)]  # asks far ahead of any tell
    _fill(strategy, [1.0, 2.0, 3.0])
    strategy.ask()
    assert mutate.calls == []  # three members are not a population of four
    strategy.tell(pending[0], 4.0)
    strategy.ask()
    assert len(mutate.calls) == 1


def test_aging_removes_the_oldest_not_the_worst():
    strategy = RegularizedEvolution(categorical_space(), seed=0, population=3, sample_size=2)
    archs = _fill(strategy, [10.0, 1.0, 2.0, 3.0])
    assert strategy.members() == [(archs[1], 1.0), (archs[2], 2.0), (archs[3], 3.0)]


def test_the_tournament_mutates_its_best_member(monkeypatch):
    space = categorical_space()
    mutate = _Spy(monkeypatch, space, "mutate")
    strategy = RegularizedEvolution(space, seed=0, population=5, sample_size=5,
                                    crossover_prob=0.0)
    archs = _fill(strategy, [0.3, 0.9, 0.1, 0.5, 0.2])
    for _ in range(5):
        child = strategy.ask()
        assert mutate.calls[-1] == (archs[1],)  # the whole population competes
        assert child != archs[1] and space.contains(child)


def test_small_tournaments_let_every_member_win_sometimes(monkeypatch):
    space = categorical_space()
    mutate = _Spy(monkeypatch, space, "mutate")
    strategy = RegularizedEvolution(space, seed=1, population=4, sample_size=1,
                                    crossover_prob=0.0)
    archs = _fill(strategy, [0.1, 0.2, 0.3, 0.4])
    for _ in range(40):
        strategy.ask()
    assert {call[0].fingerprint() for call in mutate.calls} == {a.fingerprint() for a in archs}


def test_crossover_of_two_winners_is_then_mutated(monkeypatch):
    space = categorical_space()
    crossover = _Spy(monkeypatch, space, "crossover")
    mutate = _Spy(monkeypatch, space, "mutate")
    strategy = RegularizedEvolution(space, seed=0, population=4, sample_size=2,
                                    crossover_prob=1.0)
    archs = _fill(strategy, [0.1, 0.2, 0.3, 0.4])
    for _ in range(10):
        strategy.ask()
    assert len(crossover.calls) == len(mutate.calls) == 10
    winners = {a.fingerprint() for a in archs[1:]}  # the worst can never win a pair
    assert all({p.fingerprint() for p in parents} <= winners for parents in crossover.calls)


def test_no_crossover_when_its_probability_is_zero(monkeypatch):
    space = categorical_space()
    crossover = _Spy(monkeypatch, space, "crossover")
    strategy = RegularizedEvolution(space, seed=0, population=4, crossover_prob=0.0,
                                    sample_size=2)
    _fill(strategy, [0.1, 0.2, 0.3, 0.4] + [0.5] * 20)
    assert crossover.calls == []


def test_failed_trials_do_not_enter_the_population():
    strategy = RegularizedEvolution(categorical_space(), seed=0, population=3, sample_size=2)
    archs = _fill(strategy, [1.0, None, float("nan"), 2.0])
    assert strategy.members() == [(archs[0], 1.0), (archs[3], 2.0)]


def test_darts_proposals_are_always_valid():
    space = DartsCellSpace()
    objective = ToyObjective(space, seed=0)
    strategy = RegularizedEvolution(space, seed=0, population=8, sample_size=3,
                                    crossover_prob=0.5)
    for _ in range(150):
        arch = strategy.ask()
        assert space.contains(arch)
        strategy.tell(arch, objective(arch))


def test_finds_the_optimum_of_a_small_problem():
    space = categorical_space()
    strategy = RegularizedEvolution(space, seed=0, population=10, sample_size=4)
    assert best_score(strategy, ToyObjective(space, seed=0), 400) == 1.0


def test_state_roundtrip_in_the_tournament_phase():
    space = categorical_space()
    objective = ToyObjective(space, seed=0)
    strategy = RegularizedEvolution(space, seed=3, population=5, sample_size=3)
    best_score(strategy, objective, 12)  # 5 random, then 7 tournaments
    restored = RegularizedEvolution(space, seed=3, population=5, sample_size=3)
    restored.load_state_dict(json.loads(json.dumps(strategy.state_dict())))
    assert restored.members() == strategy.members()
    for _ in range(20):
        arch = strategy.ask()
        assert restored.ask() == arch
        for s in (strategy, restored):
            s.tell(arch, objective(arch))


def test_repr_shows_the_settings():
    strategy = RegularizedEvolution(categorical_space(), seed=1, population=8)
    assert repr(strategy) == ("RegularizedEvolution('toy_categorical', seed=1, population=8, "
                              "sample_size=5, crossover_prob=0.25)")
