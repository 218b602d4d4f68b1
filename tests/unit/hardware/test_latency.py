"""Measured latency and the ArchCost model."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from archsearch.errors import ConfigError
from archsearch.hardware import ArchCost, count_macs, measure_latency, num_params
from archsearch.spaces import SPACES


class Sleeper(nn.Module):
    """A forward pass that takes a known time."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        time.sleep(self.seconds)
        return x


def test_latency_measures_the_forward_pass_after_warmup():
    model = Sleeper(0.004)
    stats = measure_latency(model, (1, 3, 4, 4), warmup=2, repeats=5)
    assert model.calls == 7 and stats.repeats == 5
    assert 4.0 <= stats.min_ms <= stats.median_ms <= stats.max_ms < 100.0
    assert stats.iqr_ms >= 0.0 and set(stats.to_json()) >= {"median_ms", "iqr_ms"}


def test_latency_restores_training_mode_and_orders_models():
    small, big = nn.Conv2d(3, 4, 3), nn.Sequential(*[nn.Conv2d(64, 64, 3, padding=1)] * 4)
    big.train()
    assert measure_latency(big, (1, 64, 32, 32), repeats=3).median_ms > \
        measure_latency(small, (1, 3, 8, 8), repeats=3).median_ms
    assert big.training


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"warmup": -1}])
def test_latency_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        measure_latency(nn.Identity(), (1, 3), **kwargs)
    with pytest.raises(ConfigError, match="shape"):
        measure_latency(nn.Identity(), (1, 0))


def test_arch_cost_counts_the_built_network():
    space = SPACES.get("chain")(layers=2)
    arch = space.sample(np.random.default_rng(0))
    cost = ArchCost(space, (1, 8, 8), build_kwargs={"num_classes": 10})
    costs = cost(arch)
    model = space.build(arch, num_classes=10)
    assert costs == {"num_params": num_params(model), "macs": count_macs(model, (1, 8, 8))}
    assert cost.metric_names() == ("num_params", "macs")
    timed = ArchCost(space, (1, 8, 8), latency=True, repeats=2)(arch)
    assert timed["latency_ms"] > 0


def test_arch_cost_leaves_the_global_rng_alone():
    space = SPACES.get("chain")(layers=1)
    arch = space.sample(np.random.default_rng(0))
    state = torch.random.get_rng_state()
    ArchCost(space, (1, 8, 8))(arch)
    assert torch.equal(state, torch.random.get_rng_state())
