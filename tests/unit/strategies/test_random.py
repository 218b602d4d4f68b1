"""RandomSearch: uniform valid proposals, no repeats by default, and exhaustion."""

from __future__ import annotations

import collections
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from archsearch.errors import ConfigError
from archsearch.space import Arch, Categorical, Int, SearchSpace, SpaceExhausted
from archsearch.spaces import DartsCellSpace
from archsearch.strategies import RandomSearch
from archsearch.testing import mixed_space


def _small_space() -> SearchSpace:
    return SearchSpace.from_dims({"a": Categorical(("x", "y", "z")), "b": Int(1, 4)},
                                 name="small")


class _DistinctPair(SearchSpace):
    """Two 3-valued dims that must differ: 6 valid archs, but `size()` counts all 9."""

    def __init__(self) -> None:
        super().__init__({"a": Categorical((0, 1, 2)), "b": Categorical((0, 1, 2))},
                         name="distinct")

    def check(self, choices: Mapping[str, Any]) -> str | None:
        return None if choices["a"] != choices["b"] else "a and b must differ"


class _Diagonal(SearchSpace):
    """Four Int(0, 99) dims that must all be equal: 100 valid archs among 10^8, too many
    to enumerate; `sample` draws valid ones directly, as a space with a rule should."""

    def __init__(self) -> None:
        super().__init__({f"d{i}": Int(0, 99) for i in range(4)}, name="diagonal")

    def check(self, choices: Mapping[str, Any]) -> str | None:
        return None if len(set(choices.values())) == 1 else "all values must be equal"

    def sample(self, rng: np.random.Generator) -> Arch:
        value = int(rng.integers(100))
        return self._make({label: value for label in self.dims})


def _ask_all(strategy: RandomSearch, limit: int = 10_000) -> list[Arch]:
    archs = []
    with pytest.raises(SpaceExhausted):
        for _ in range(limit):
            archs.append(strategy.ask())
    return archs


def test_proposes_every_arch_once_then_is_exhausted():
    space = _small_space()
    strategy = RandomSearch(space, seed=0)
    archs = _ask_all(strategy)
    assert len(archs) == 12 == space.size()
    assert {a.fingerprint() for a in archs} == {a.fingerprint() for a in space.enumerate()}
    with pytest.raises(SpaceExhausted, match="all 12 architectures"):
        strategy.ask()  # stays exhausted


def test_exhausts_exactly_the_valid_archs_when_size_overcounts():
    # size() says 9; only 6 are valid. Rejection stalls after 6 and the strategy falls
    # back to enumerating what is left, which is nothing.
    space = _DistinctPair()
    archs = _ask_all(RandomSearch(space, seed=1))
    assert sorted((a["a"], a["b"]) for a in archs) == sorted(
        (a, b) for a in range(3) for b in range(3) if a != b)


def test_gives_up_when_rejections_stall_and_the_space_cannot_be_enumerated():
    space = _Diagonal()
    strategy = RandomSearch(space, seed=0)
    archs = []
    with pytest.raises(SpaceExhausted, match="no new architecture"):
        for _ in range(200):
            archs.append(strategy.ask())
    assert len({a.fingerprint() for a in archs}) == len(archs) == 100


class _Sticky(SearchSpace):
    """Ten archs, but a (bad) sampler that always draws the first: rejection sampling
    stalls at once, so the strategy must finish by enumeration."""

    def __init__(self) -> None:
        super().__init__({"a": Categorical(tuple(range(10)))}, name="sticky")

    def sample(self, rng: np.random.Generator) -> Arch:
        return self._make({"a": 0})


def test_the_end_game_is_uniform_over_the_rest_and_resumes_identically():
    space = _Sticky()
    strategy = RandomSearch(space, seed=2)
    first = [strategy.ask()["a"] for _ in range(3)]
    state = json.loads(json.dumps(strategy.state_dict()))
    assert first[0] == 0 and state["enumerating"] is True
    restored = RandomSearch(space, seed=2)
    restored.load_state_dict(state)
    rest = [a["a"] for a in _ask_all(strategy)]
    assert [a["a"] for a in _ask_all(restored)] == rest
    assert sorted(first + rest) == list(range(10)) and rest != sorted(rest)


def test_allow_duplicates_repeats_and_never_exhausts():
    space = SearchSpace.from_dims({"a": Categorical(("x", "y"))}, name="two")
    strategy = RandomSearch(space, seed=0, allow_duplicates=True)
    archs = [strategy.ask() for _ in range(50)]
    assert collections.Counter(a["a"] for a in archs).keys() == {"x", "y"}


def test_samples_uniformly():
    space = _small_space()
    strategy = RandomSearch(space, seed=3, allow_duplicates=True)
    counts = collections.Counter(strategy.ask().fingerprint() for _ in range(6000))
    assert len(counts) == 12
    assert all(400 < c < 600 for c in counts.values())  # expected 500 each, sd ≈ 21


def test_seeded_sequences():
    space = mixed_space()

    def sequence(seed):
        strategy = RandomSearch(space, seed=seed)
        return [strategy.ask().fingerprint() for _ in range(10)]

    assert sequence(5) == sequence(5)
    assert sequence(5) != sequence(6)


def test_darts_proposals_are_valid_and_distinct():
    space = DartsCellSpace()
    strategy = RandomSearch(space, seed=0)
    archs = [strategy.ask() for _ in range(50)]
    assert all(space.contains(a) for a in archs)
    assert len({a.fingerprint() for a in archs}) == 50


def test_settings_are_checked_and_shown():
    with pytest.raises(ConfigError, match="allow_duplicates"):
        RandomSearch(_small_space(), allow_duplicates="yes")
    assert repr(RandomSearch(_small_space(), seed=4)) == (
        "RandomSearch('small', seed=4, allow_duplicates=False)")
