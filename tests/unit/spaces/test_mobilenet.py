"""The mobilenet space: labels, MBConv network shapes, ignored decisions, size, cost trends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archsearch.errors import ConfigError
from archsearch.hardware.counts import count_macs, num_params
from archsearch.spaces import SPACES
from archsearch.spaces.mobilenet import MBConv, MobileNetSpace, make_divisible

torch.set_num_threads(1)
SPACE = MobileNetSpace()
TINY = MobileNetSpace(channels=[8, 16], strides=[1, 2], depths=[1, 2], kernels=[3, 5],
                      expands=[3, 6], width_mults=[1.0], resolutions=[8])


def _arch(space=SPACE, **changes):
    """The first-choice arch of `space` with `changes` (labels with '.' written as '__')."""
    choices = {label: dim.choices[0] for label, dim in space.dims.items()}
    choices.update({k.replace("__", "."): v for k, v in changes.items()})
    return space.arch(choices)


def _blocks(model):
    return [m for m in model.modules() if isinstance(m, MBConv)]


def _macs(space, arch):
    return count_macs(space.build(arch), space.input_shape(arch))


def test_labels_and_registry():
    labels = SPACE.labels()
    assert labels[:3] == ["width_mult", "resolution", "stage0.depth"]
    assert "stage0.block1.kernel" in labels and "stage2.block3.expand" in labels
    assert len(labels) == 2 + 3 * (1 + 2 * 4)
    assert SPACE.dims["stage1.block0.kernel"].choices == (3, 5, 7)
    assert isinstance(SPACES.get("mobilenet")(), MobileNetSpace)


def test_build_gives_logits_for_any_input_size():
    arch = SPACE.sample(np.random.default_rng(0))
    model = SPACE.build(arch, num_classes=7, in_channels=3)
    for side in (8, 12, 16):
        assert model(torch.randn(2, 3, side, side)).shape == (2, 7)
    assert SPACE.input_shape(arch) == (1, arch["resolution"], arch["resolution"])


def test_depth_decisions_set_the_block_count_and_residuals():
    shallow = SPACE.build(_arch(stage0__depth=2, stage1__depth=2, stage2__depth=2))
    deep = SPACE.build(_arch(stage0__depth=4, stage1__depth=3, stage2__depth=2))
    assert len(_blocks(shallow)) == 6 and len(_blocks(deep)) == 9
    # Only the first block of a stage changes width or stride; the others are residual.
    assert [b.residual for b in _blocks(deep)][:5] == [True, True, True, True, False]


def test_ignored_decisions_do_not_change_the_network():
    a = _arch(stage0__depth=2, stage0__block3__kernel=3)
    b = _arch(stage0__depth=2, stage0__block3__kernel=7, stage0__block2__expand=6)
    assert a != b and SPACE.canonical(a) == SPACE.canonical(b)
    torch.manual_seed(0)
    sa = SPACE.build(a).state_dict()
    torch.manual_seed(0)
    sb = SPACE.build(b).state_dict()
    assert {k: v.shape for k, v in sa.items()} == {k: v.shape for k, v in sb.items()}
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # A decision within the depth is kept by canonical().
    c = _arch(stage0__depth=4, stage0__block3__kernel=7)
    assert SPACE.canonical(c) == c


def test_mutation_changes_only_decisions_that_shape_the_network():
    rng = np.random.default_rng(1)
    for _ in range(30):
        parent = SPACE.sample(rng)
        child = SPACE.mutate(parent, rng)
        assert SPACE.canonical(child) != SPACE.canonical(parent)


def test_macs_and_params_grow_with_width_expand_and_kernel():
    base = _arch()
    assert _macs(SPACE, _arch(width_mult=1.25)) > _macs(SPACE, base)
    assert _macs(SPACE, _arch(stage1__block0__expand=6)) > _macs(SPACE, base)
    assert _macs(SPACE, _arch(stage1__block0__kernel=7)) > _macs(SPACE, base)
    assert _macs(SPACE, _arch(resolution=16)) > _macs(SPACE, base)
    assert num_params(SPACE.build(_arch(width_mult=1.25))) > num_params(SPACE.build(base))
    assert (num_params(SPACE.build(_arch(stage0__block1__kernel=5)))
            > num_params(SPACE.build(base)))
    # Resolution changes the compute (the network resizes its input), never the weights.
    assert num_params(SPACE.build(_arch(resolution=16))) == num_params(SPACE.build(base))


def test_size_counts_distinct_networks():
    # |W|·|R|·(Σ_d (|K|·|E|)^d)^stages
    assert SPACE.size() == 3 * 3 * (9**2 + 9**3 + 9**4) ** 3
    assert TINY.size() == (4 + 4**2) ** 2
    archs = list(TINY.enumerate())
    assert len(archs) == TINY.size()
    assert all(TINY.canonical(a) == a for a in archs)
    networks = {tuple(TINY.config(a).stages) for a in archs}
    assert len(networks) == TINY.size()


def test_make_divisible_rounds_to_multiples_of_8():
    assert [make_divisible(v) for v in (12, 18, 24, 30, 40, 3)] == [16, 24, 24, 32, 40, 8]


@pytest.mark.parametrize("kwargs", [{"kernels": [4]}, {"strides": [1, 3, 2]},
                                    {"depths": []}, {"width_mults": [0]},
                                    {"channels": [8], "strides": [1, 2]}])
def test_bad_settings_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        MobileNetSpace(**kwargs)
