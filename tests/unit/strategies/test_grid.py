"""GridSearch: the stable enumeration order, shuffling, refusal of large spaces, resume."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from archsearch.errors import ConfigError
from archsearch.space import Categorical, Int, SearchSpace, SpaceExhausted
from archsearch.spaces import DartsCellSpace
from archsearch.strategies import GridSearch
from archsearch.testing import categorical_space, mixed_space


def _space() -> SearchSpace:
    return SearchSpace.from_dims({"a": Categorical(("x", "y", "z")), "b": Int(1, 4)},
                                 name="small")


def _run(strategy: GridSearch) -> list[tuple]:
    seen = []
    with pytest.raises(SpaceExhausted, match="grid search has proposed all"):
        for _ in range(10_000):
            arch = strategy.ask()
            seen.append(tuple(arch.values()))
            strategy.tell(arch, -float(len(seen)))  # scores must not change the order
    return seen


def test_visits_the_grid_in_enumeration_order_then_is_exhausted():
    strategy = GridSearch(_space())
    seen = _run(strategy)
    assert seen == [(a, b) for a in ("x", "y", "z") for b in (1, 2, 3, 4)]  # last fastest
    with pytest.raises(SpaceExhausted):
        strategy.ask()


def test_skips_archs_that_break_the_spaces_rule():
    class Distinct(SearchSpace):
        def check(self, choices: Mapping[str, Any]) -> str | None:
            return None if choices["a"] != choices["b"] else "equal"

    space = Distinct({"a": Categorical((0, 1, 2)), "b": Categorical((0, 1, 2))})
    assert _run(GridSearch(space)) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]


def test_shuffle_is_a_seeded_permutation():
    ordered = _run(GridSearch(_space()))
    shuffled = _run(GridSearch(_space(), seed=1, shuffle=True))
    assert sorted(shuffled) == sorted(ordered) and shuffled != ordered
    assert _run(GridSearch(_space(), seed=1, shuffle=True)) == shuffled
    assert _run(GridSearch(_space(), seed=2, shuffle=True)) != shuffled


@pytest.mark.parametrize("shuffle,seed", [(False, None), (True, 7), (True, None)])
def test_resumes_from_its_position(shuffle, seed):
    space = categorical_space()
    strategy = GridSearch(space, seed=seed, shuffle=shuffle)
    for _ in range(100):
        strategy.ask()
    state = json.loads(json.dumps(strategy.state_dict()))
    assert state["position"] == 100
    restored = GridSearch(space, seed=seed, shuffle=shuffle)
    restored.load_state_dict(state)
    assert [restored.ask() for _ in range(20)] == [strategy.ask() for _ in range(20)]


@pytest.mark.parametrize("space,shown", [(mixed_space(), "infinitely many"),
                                         (DartsCellSpace(), "1,076,")])
def test_refuses_infinite_and_huge_spaces(space, shown):
    with pytest.raises(ConfigError, match=f"grid search needs a finite space.*{shown}"):
        GridSearch(space)


def test_refuses_a_huge_space_without_enumerating_it(monkeypatch):
    space = SearchSpace.from_dims({f"d{i}": Int(0, 99) for i in range(4)})  # 10^8 archs

    def enumerate_forbidden(**kwargs):
        raise AssertionError("enumerate() must not be called before the size check")

    monkeypatch.setattr(space, "enumerate", enumerate_forbidden)
    with pytest.raises(ConfigError, match="100,000,000"):
        GridSearch(space)


def test_settings_are_checked_and_shown():
    with pytest.raises(ConfigError, match="shuffle"):
        GridSearch(_space(), shuffle=1)
    strategy = GridSearch(_space())
    strategy.ask()
    assert repr(strategy) == "GridSearch('small', size=12, shuffle=False, position=1)"
