"""Compound scaling (EfficientNet): the α·β²·γ² ≈ 2 rule, grid search under MACs, 2^φ growth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archsearch.constraints import Constraint
from archsearch.errors import ArchError, ConfigError
from archsearch.hardware.counts import count_macs
from archsearch.space import SpaceExhausted
from archsearch.spaces import SPACES
from archsearch.spaces.compound import CompoundScalingSpace, compound_scale
from archsearch.spaces.mobilenet import MobileNetConfig, StageConfig, build_network
from archsearch.strategies.grid import GridSearch

torch.set_num_threads(1)
SPACE = CompoundScalingSpace()
# A base wide enough that rounding channels to multiples of 8 matters little.
BASE = MobileNetConfig(32, (StageConfig(32, 1, ((3, 4),) * 2), StageConfig(64, 2, ((3, 4),) * 2),
                            StageConfig(96, 2, ((3, 4),) * 2)), 32)


def _macs(config):
    return count_macs(build_network(config), (1, config.resolution, config.resolution))


def test_rule_holds_for_every_grid_point():
    points = list(SPACE.enumerate())
    assert len(points) == SPACE.size() > 10
    for p in points:
        assert min(p.values()) >= 1
        assert abs(p["alpha"] * p["beta"] ** 2 * p["gamma"] ** 2 - 2) <= 0.1 + 1e-9
    assert {"alpha": 1.2, "beta": 1.1, "gamma": 1.15} in [dict(p) for p in points]  # the paper's
    with pytest.raises(ArchError, match="α·β²·γ²"):
        SPACE.arch({"alpha": 1.0, "beta": 1.0, "gamma": 1.0})
    assert isinstance(SPACES.get("compound")(), CompoundScalingSpace)


def test_allowed_masks_values_without_a_valid_completion():
    assert 2.0 in SPACE.allowed("alpha", {})
    assert SPACE.allowed("beta", {"alpha": 2.0}) == [1.0]
    assert SPACE.allowed("gamma", {"alpha": 1.2, "beta": 1.1}) == [1.15, 1.2]


def test_grid_search_under_a_mac_budget_picks_the_best_feasible_point():
    macs = {arch: _macs(SPACE.scaled_config(arch)) for arch in SPACE.enumerate()}
    budget = Constraint("macs", "<=", float(np.median(list(macs.values()))))

    # Cheap objective: the larger the scaled network the better (a stand-in for accuracy),
    # with resolution preferred over width over depth to break ties.
    def objective(arch):
        return macs[arch] + 1e-3 * (3 * arch["gamma"] + 2 * arch["beta"] + arch["alpha"])

    strategy, scores = GridSearch(SPACE, seed=0, shuffle=True), {}
    while True:
        try:
            arch = strategy.ask()
        except SpaceExhausted:
            break
        scores[arch] = objective(arch) if budget.holds({"macs": macs[arch]}) else None
        strategy.tell(arch, scores[arch])
    assert set(scores) == set(macs)  # every grid point proposed once
    best = max((a for a, s in scores.items() if s is not None), key=scores.__getitem__)
    feasible = [a for a in macs if macs[a] <= budget.limit]
    assert macs[best] <= budget.limit
    assert objective(best) == max(objective(a) for a in feasible)  # ties may pick either
    assert not budget.holds({"macs": macs[max(macs, key=objective)]})  # the budget binds


def test_compound_scale_multipliers():
    scaled = compound_scale(BASE, 1.2, 1.1, 1.15, 2)
    assert [len(s.blocks) for s in scaled.stages] == [3, 3, 3]  # ceil(2·1.44)
    assert [s.channels for s in scaled.stages] == [40, 80, 120]  # nearest 8 to c·1.21
    assert scaled.resolution == round(32 * 1.15**2)
    assert compound_scale(BASE, 1.2, 1.1, 1.15, 0) == BASE
    with pytest.raises(ConfigError):
        compound_scale(BASE, 0.9, 1.1, 1.1, 1)


@pytest.mark.parametrize("coeffs", [(1.2, 1.1, 1.15), (2.0, 1.0, 1.0), (1.0, 1.4, 1.0),
                                    (1.0, 1.0, 1.4)])
@pytest.mark.parametrize("phi", [1, 2])
def test_scaling_multiplies_macs_by_about_two_to_the_phi(coeffs, phi):
    # Tolerance 0.75–1.35 × 2^φ: blocks round up, channels round to 8s, the resolution to an
    # integer, and the stem and classifier do not scale with depth (observed 0.96–1.19).
    ratio = _macs(compound_scale(BASE, *coeffs, phi)) / _macs(BASE)
    assert 0.75 * 2**phi <= ratio <= 1.35 * 2**phi


def test_mutation_moves_to_a_nearest_valid_point():
    rng = np.random.default_rng(0)
    for _ in range(20):
        parent = SPACE.sample(rng)
        child = SPACE.mutate(parent, rng)
        assert child != parent and SPACE.contains(child)


def test_build_is_the_scaled_base_network():
    arch = SPACE.arch({"alpha": 2.0, "beta": 1.0, "gamma": 1.0})
    model = SPACE.build(arch)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert SPACE.scaled_config(arch).resolution == 8
