"""The chain space: its decisions, width changes around skip and pool, build overrides."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from archsearch.errors import ConfigError
from archsearch.spaces import SPACES
from archsearch.spaces.chain import CHAIN_OPS, chain_space
from archsearch.testing.space_contract import check_supernet

SPACE = chain_space()


def _arch(space, layers):
    """An arch from [(width, op), ...]."""
    return space.arch({k: v for i, (width, op) in enumerate(layers)
                       for k, v in ((f"layer{i}.width", width), (f"layer{i}.op", op))})


def test_one_width_and_one_op_decision_per_layer():
    assert SPACE.labels()[:4] == ["layer0.width", "layer0.op", "layer1.width", "layer1.op"]
    assert len(SPACE.dims) == 8
    assert SPACE.dims["layer3.width"].choices == (8, 16, 32)
    assert SPACE.dims["layer0.op"].choices == tuple(CHAIN_OPS)
    assert SPACE.size() == (3 * 5) ** 4
    assert SPACE.space_args == {"layers": 4, "widths": [8, 16, 32], "num_classes": 10,
                                "in_channels": 1}


def test_skip_and_pool_project_only_when_the_width_changes():
    arch = _arch(SPACE, [(8, "conv3x3"), (8, "skip"), (16, "skip"), (16, "max_pool")])
    net = SPACE.build(arch)
    assert isinstance(net[1], nn.Identity)
    assert isinstance(net[2][0], nn.Conv2d) and net[2][0].kernel_size == (1, 1)
    assert isinstance(net[3][1], nn.Identity)  # pool at an unchanged width: no projection
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_build_overrides_classes_and_input_channels():
    arch = SPACE.sample(np.random.default_rng(0))
    net = SPACE.build(arch, num_classes=3, in_channels=3)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert net[-1].in_features == arch["layer3.width"]


def test_space_args_rebuild_the_space_through_the_registry():
    space = SPACES.get("chain")(layers=2, widths=(4, 12))
    arch = space.sample(np.random.default_rng(1))
    rebuilt = SPACES.get(arch.space)(**arch.space_args)
    assert rebuilt.space_hash == space.space_hash and rebuilt.contains(arch)
    assert not SPACE.contains(arch)


def test_one_width_means_op_decisions_only_and_a_darts_supernet():
    space = chain_space(layers=3, widths=[8])
    assert space.labels() == ["layer0.op", "layer1.op", "layer2.op"]
    check_supernet(space, in_channels=1)
    with pytest.raises(NotImplementedError, match="layer0.width"):
        SPACE.build_supernet()


@pytest.mark.parametrize("kwargs", [{"layers": 0}, {"widths": []}, {"widths": [8, 8]},
                                    {"widths": [8, 0]}, {"widths": "8,16"},
                                    {"num_classes": 1}])
def test_bad_settings_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        chain_space(**kwargs)
