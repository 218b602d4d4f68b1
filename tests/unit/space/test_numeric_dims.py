"""Int and Float dimensions: values, sampling, mutation, encoding and their JSON form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archsearch.space import Categorical, Float, Int, dimension_from_json


def test_int_values_size_contains():
    dim = Int(2, 10, step=2)
    assert list(dim.grid()) == [2, 4, 6, 8, 10] and dim.size() == 5
    assert dim.contains(4) and not dim.contains(5) and not dim.contains(12)
    assert not dim.contains(True) and not dim.contains(4.0)


def test_int_sampling_is_uniform_and_seeded():
    dim = Int(0, 4)
    rng = np.random.default_rng(0)
    counts = np.bincount([dim.sample(rng) for _ in range(5000)], minlength=5)
    assert counts.min() > 900 and counts.max() < 1100
    assert dim.sample(np.random.default_rng(3)) == dim.sample(np.random.default_rng(3))


def test_log_int_favours_small_values_and_stays_on_the_grid():
    dim = Int(1, 1000, log=True)
    draws = [dim.sample(np.random.default_rng(s)) for s in range(400)]
    assert all(dim.contains(v) for v in draws)
    assert np.median(draws) < 100  # log-uniform median is about sqrt(1000) ≈ 32


def test_int_mutate_changes_and_encode_positions():
    dim = Int(0, 10)
    rng = np.random.default_rng(1)
    assert all(dim.mutate(5, rng) != 5 and dim.contains(dim.mutate(5, rng)) for _ in range(50))
    assert dim.encode(0) == [0.0] and dim.encode(10) == [1.0] and dim.encode(5) == [0.5]
    assert Int(3, 3).mutate(3, rng) == 3


def test_float_sampling_bounds_log_and_grid():
    rng = np.random.default_rng(0)
    lin, log = Float(-1.0, 1.0), Float(1e-4, 1.0, log=True)
    assert all(-1.0 <= lin.sample(rng) <= 1.0 for _ in range(200))
    logs = [log.sample(rng) for _ in range(2000)]
    # Log-uniform: each decade gets about a quarter of the draws.
    assert 0.2 < np.mean([x < 1e-3 for x in logs]) < 0.3
    assert lin.size() == math.inf and not list(Float(0.0, 1.0, step=0.25).grid()) == []
    grid = Float(0.0, 1.0, step=0.25)
    assert list(grid.grid()) == [0.0, 0.25, 0.5, 0.75, 1.0] and grid.size() == 5
    assert grid.contains(0.5) and not grid.contains(0.3)
    with pytest.raises(ValueError, match="no grid"):
        list(lin.grid())


def test_float_mutation_stays_in_range_and_moves():
    rng = np.random.default_rng(2)
    dim = Float(0.0, 1.0)
    moved = [dim.mutate(0.95, rng) for _ in range(500)]
    assert all(0.0 <= v <= 1.0 for v in moved) and np.std(moved) > 0.05
    log = Float(1e-3, 1.0, log=True)
    assert all(1e-3 <= log.mutate(0.5, rng) <= 1.0 for _ in range(200))
    assert Float(0.0, 1.0, step=0.5).mutate(0.5, rng) in (0.0, 1.0)


def test_discretize_gives_finite_values():
    assert Float(1.0, 100.0, log=True).discretize(3) == pytest.approx((1.0, 10.0, 100.0))
    assert Float(0.0, 1.0).discretize(5) == pytest.approx((0.0, 0.25, 0.5, 0.75, 1.0))
    assert Int(1, 3).discretize() == (1, 2, 3)


def test_bool_and_int_choices_are_not_confused():
    dim = Categorical((0, 1))
    assert dim.contains(1) and not dim.contains(True)


@pytest.mark.parametrize("dim", [Categorical(("a", 2)), Int(1, 9, step=2, log=False),
                                 Int(1, 64, log=True), Float(0.5, 2.0),
                                 Float(1e-3, 1.0, log=True), Float(0.0, 1.0, step=0.1)])
def test_json_round_trip(dim):
    assert dimension_from_json(dim.to_json()) == dim


@pytest.mark.parametrize("bad", [lambda: Int(5, 1), lambda: Int(0, 3, step=0),
                                 lambda: Int(0, 3, log=True), lambda: Float(2.0, 1.0),
                                 lambda: Float(0.0, 1.0, log=True),
                                 lambda: Float(0.0, math.inf), lambda: Int(0.5, 2)])
def test_bad_bounds_raise(bad):
    with pytest.raises(ValueError):
        bad()


def test_unknown_json_dimension():
    with pytest.raises(ValueError, match="unknown dimension type"):
        dimension_from_json({"type": "complex"})
