"""The space contract (`archsearch.testing.space_contract`) over every registered space.

Each space runs with its default settings plus a few extra configurations that reach other
code paths; model checks use tiny build settings so the file stays fast on one core.
"""

from __future__ import annotations

import json
from functools import cache, partial
from typing import Any

import pytest
from torch import nn

from archsearch.space import BuilderSpace, Categorical, SearchSpace
from archsearch.spaces import SPACES
from archsearch.testing import space_contract as contract

# Small `build` kwargs per space (add one when registering a space): 8×8 inputs, few channels.
BUILD_KWARGS: dict[str, dict[str, Any]] = {
    "darts": {"channels": 4, "layers": 3, "num_classes": 10, "in_channels": 1},
    "nasnet": {"channels": 4, "cells": 1, "num_classes": 10, "in_channels": 1},
    "chain": {"num_classes": 10, "in_channels": 1},
    "nb201": {"channels": 4, "cells_per_stage": 1, "num_classes": 10, "in_channels": 1},
    "mobilenet": {"num_classes": 10, "in_channels": 1},
    "compound": {"num_classes": 10, "in_channels": 1},
}
# Space settings small enough to enumerate, so `size()` can be checked by counting.
TINY_SPACE_KWARGS: dict[str, dict[str, Any]] = {
    "darts": {"nodes": 1, "ops": ["skip_connect", "max_pool_3x3"]},
    "nasnet": {"blocks": 1, "ops": ["skip_connect", "max_pool_3x3"]},
    "chain": {"layers": 2},
    "nb201": {"ops": ["none", "skip_connect", "nor_conv_1x1"]},
    "mobilenet": {"channels": [8], "strides": [1], "depths": [1, 2], "kernels": [3, 5],
                  "expands": [3], "width_mults": [1.0], "resolutions": [8]},
    "compound": {"alphas": [1.0, 1.2, 2.0], "betas": [1.0, 1.1], "gammas": [1.0, 1.15]},
}
# Non-default settings that take other paths: cross-block inputs and a searched reduction
# cell; a single-width chain, which has op decisions only and so a supernet.
EXTRA_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("nasnet", {"variant": "original", "reduction": True}),
    ("chain", {"widths": [8]}),
]
CONFIGS = [(name, {}) for name in SPACES.names()] + EXTRA_CONFIGS


def _config_id(config: tuple[str, dict[str, Any]]) -> str:
    name, kwargs = config
    return "-".join([name, *(f"{k}={v}" for k, v in kwargs.items())])


@cache
def _space(name: str, frozen_kwargs: str) -> SearchSpace:
    return SPACES.get(name)(**json.loads(frozen_kwargs))


@pytest.fixture(params=CONFIGS, ids=_config_id)
def config(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param


@pytest.fixture
def space(config: tuple[str, dict[str, Any]]) -> SearchSpace:
    name, kwargs = config
    return _space(name, json.dumps(kwargs, sort_keys=True))


def test_every_registered_space_has_tiny_settings():
    missing = [n for n in SPACES.names() if n not in BUILD_KWARGS or n not in TINY_SPACE_KWARGS]
    assert not missing, f"add BUILD_KWARGS / TINY_SPACE_KWARGS entries for {missing}"


def test_dims_json_round_trip(space):
    contract.check_dims_json(space)


def test_space_hash_is_stable_and_space_args_rebuild_the_space(config):
    name, kwargs = config
    contract.check_hash_stable(SPACES.get(name), **kwargs)


@pytest.mark.parametrize("name", SPACES.names())
def test_size_is_exact_and_counts_the_enumeration(name):
    tiny = SPACES.get(name)(**TINY_SPACE_KWARGS.get(name, {}))
    assert isinstance(tiny.size(), int) and tiny.size() <= 20_000, "tiny space too large"
    contract.check_size(tiny)
    contract.check_size(SPACES.get(name)())


def test_samples_are_valid_and_seeded(space):
    contract.check_sampling(space)


def test_mutation_changes_a_decision_and_stays_valid(space):
    contract.check_mutation(space)


def test_crossover_stays_valid_and_inherits_every_value(space):
    contract.check_crossover(space)


def test_encoding_has_fixed_length(space):
    contract.check_encoding(space)


def test_arch_json_round_trip(space):
    contract.check_arch_json(space)


def test_bad_label_or_value_raises_arch_error_naming_it(space):
    contract.check_bad_archs_raise(space)


def test_build_runs_forward_and_backward_with_all_gradients(space, config):
    contract.check_build(space, **BUILD_KWARGS.get(config[0], {}))


def test_supernet_of_builder_spaces(space, config):
    if not isinstance(space, BuilderSpace):
        pytest.skip("not a builder space (its supernet, if any, is its own)")
    contract.check_supernet(space, **BUILD_KWARGS.get(config[0], {}))


# --- the contract itself must be able to fail ------------------------------------------
class _RuleWithoutSize(SearchSpace):
    """Forbids a == b but inherits the plain product as its size: a wrong size()."""

    def check(self, choices):
        return "a equals b" if choices["a"] == choices["b"] else None


def _broken_builder(c, *, num_classes=10, in_channels=1):
    body = c.op("op", {"conv": partial(nn.Conv2d, in_channels, 4, 3, padding=1),
                       "wide": partial(nn.Conv2d, in_channels, 4, 5, padding=2)})
    body.unused = nn.Linear(2, 2)  # a parameter no forward pass reaches
    return nn.Sequential(body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


def test_contract_catches_a_wrong_size():
    space = _RuleWithoutSize({"a": Categorical((0, 1)), "b": Categorical((0, 1))})
    with pytest.raises(AssertionError, match="enumerate"):
        contract.check_size(space)


def test_contract_catches_a_mutation_that_changes_nothing():
    space = SearchSpace.from_dims({"a": Categorical((0, 1, 2))})
    space.mutate = lambda arch, rng: arch
    with pytest.raises(AssertionError, match="unchanged"):
        contract.check_mutation(space)


def test_contract_catches_a_parameter_without_gradient():
    space = BuilderSpace(_broken_builder, name="broken")
    with pytest.raises(AssertionError, match="unused"):
        contract.check_build(space, in_channels=1)
