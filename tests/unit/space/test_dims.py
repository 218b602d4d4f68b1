"""Categorical dimensions: what ask/tell strategies will use to sample, mutate and encode."""

from __future__ import annotations

import numpy as np
import pytest

from archsearch.space import Categorical, hash_dims


def test_sample_covers_every_choice_and_is_seeded():
    dim = Categorical(("a", "b", "c"))
    draws = [dim.sample(np.random.default_rng(s)) for s in range(60)]
    assert set(draws) == {"a", "b", "c"}
    assert dim.sample(np.random.default_rng(7)) == dim.sample(np.random.default_rng(7))


def test_mutate_always_changes_the_value_when_it_can():
    rng = np.random.default_rng(0)
    dim = Categorical((1, 2, 3))
    assert all(dim.mutate(2, rng) != 2 for _ in range(50))
    assert Categorical(("only",)).mutate("only", rng) == "only"


def test_grid_encode_contains_and_json():
    dim = Categorical(("x", "y"))
    assert list(dim.grid()) == ["x", "y"]
    assert dim.encode("y") == [0.0, 1.0]
    assert dim.contains("x") and not dim.contains("z")
    assert dim.to_json() == {"type": "categorical", "choices": ["x", "y"]}


@pytest.mark.parametrize("choices", [(), ("a", "a")])
def test_invalid_choices(choices):
    with pytest.raises(ValueError):
        Categorical(choices)


def test_space_hash_depends_on_order_and_values():
    a = hash_dims({"e": Categorical(("p", "q")).to_json()})
    b = hash_dims({"e": Categorical(("q", "p")).to_json()})
    assert a.startswith("sha256:") and a != b
    assert a == hash_dims({"e": Categorical(("p", "q")).to_json()})
