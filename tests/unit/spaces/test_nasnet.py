"""The NASNet cell space: the published size, variants, labels, rendering, the network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from archsearch.errors import ArchsearchError, ConfigError
from archsearch.networks.nasnet import NasnetNetwork
from archsearch.spaces import SPACES
from archsearch.spaces.nasnet import Block, NasnetCellSpace, output_blocks

SPACE = NasnetCellSpace()


def _choices(blocks, cell="normal"):
    """The labels of cell `cell` for blocks [(in0, in1, op0, op1, combine), ...]."""
    choices = {}
    for k, (in0, in1, op0, op1, combine) in enumerate(blocks):
        choices.update({f"{cell}.b{k}.in0": in0, f"{cell}.b{k}.in1": in1,
                        f"{cell}.b{k}.op0": op0, f"{cell}.b{k}.op1": op1,
                        f"{cell}.b{k}.combine": combine})
    return choices


def _arch(space, blocks):
    return space.arch(_choices(blocks))


def test_size_is_the_published_figure():
    assert SPACE.size() == 320_000_000_000
    assert isinstance(SPACE.size(), int)
    assert SPACE.size() == (2 * 2 * 5 * 5 * 2) ** 5 == 4**5 * 5**10 * 2**5


def test_original_variant_and_reduction_sizes():
    original = NasnetCellSpace(variant="original")
    assert original.size() == math.prod((2 + k) ** 2 * 5**2 * 2 for k in range(5))
    assert NasnetCellSpace(reduction=True).size() == SPACE.size() ** 2
    assert NasnetCellSpace(variant="original", reduction=True).size() == original.size() ** 2
    small = NasnetCellSpace(blocks=2, ops=["skip_connect", "max_pool_3x3"], combines=["add"])
    assert small.size() == (2 * 2 * 2 * 2 * 1) ** 2 == len(list(small.enumerate()))


def test_labels_follow_the_controller_order_and_inputs_are_ints():
    assert SPACE.labels()[:5] == ["normal.b0.in0", "normal.b0.in1", "normal.b0.op0",
                                  "normal.b0.op1", "normal.b0.combine"]
    assert len(SPACE.dims) == 25
    assert SPACE.dims["normal.b4.in1"].choices == (0, 1)
    original = NasnetCellSpace(variant="original", reduction=True)
    assert original.dims["normal.b3.in0"].choices == (0, 1, 2, 3, 4)
    assert original.labels()[25] == "reduce.b0.in0" and len(original.dims) == 50


def test_describe_renders_blocks_inputs_and_the_unused_outputs():
    space = NasnetCellSpace(blocks=3, variant="original")
    arch = _arch(space, [(1, 0, "sep_conv_3x3", "skip_connect", "add"),
                         (2, 1, "max_pool_3x3", "sep_conv_5x5", "concat"),
                         (0, 0, "avg_pool_3x3", "skip_connect", "add")])
    assert space.describe(arch) == (
        "normal: b0 = add(sep_conv_3x3(h[i-1]), skip_connect(h[i-2])); "
        "b1 = concat(max_pool_3x3(b0), sep_conv_5x5(h[i-1])); "
        "b2 = add(avg_pool_3x3(h[i-2]), skip_connect(h[i-2])); out = concat(b1, b2)")
    assert space.cell(arch)[1] == Block((2, 1), ("max_pool_3x3", "sep_conv_5x5"), "concat")


def test_output_blocks_are_those_no_block_reads():
    blocks = [Block((0, 1), ("a", "a"), "add"), Block((2, 0), ("a", "a"), "add"),
              Block((3, 2), ("a", "a"), "add")]
    assert output_blocks(blocks) == [2]


@pytest.mark.parametrize(("size", "in_channels", "reduction"), [(8, 1, False), (32, 3, True)])
def test_network_output_shape(size, in_channels, reduction):
    space = NasnetCellSpace(variant="original", reduction=reduction)
    arch = space.sample(np.random.default_rng(size))
    net = space.build(arch, channels=4, cells=1, num_classes=7, in_channels=in_channels)
    assert net(torch.randn(2, in_channels, size, size)).shape == (2, 7)
    assert net.num_cells == 5  # 3 stages of 1 normal cell, 2 reduction cells


def test_network_halves_resolution_and_doubles_channels_per_stage():
    space = NasnetCellSpace(blocks=1)
    arch = _arch(space, [(0, 1, "sep_conv_3x3", "skip_connect", "concat")])
    net = space.build(arch, channels=4, cells=2, in_channels=1)
    shapes = []
    for cell in net.cells.values():
        cell.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape[1:])))
    net(torch.randn(2, 1, 8, 8))
    assert shapes == [(4, 8, 8)] * 2 + [(8, 4, 4)] * 3 + [(16, 2, 2)] * 3


def test_cells_nothing_reads_are_not_built_and_all_parameters_get_gradients():
    space = NasnetCellSpace(blocks=1)
    only_h2 = _arch(space, [(0, 0, "sep_conv_3x3", "skip_connect", "add")])  # reads h[i-2]
    net = space.build(only_h2, channels=4, cells=1, in_channels=1)
    # Cells 0..4; cell 4 reads cell 2, which reads cell 0; cells 1 and 3 are never read.
    assert sorted(net.cells) == ["0", "2", "4"]
    assert all(list(cell.preprocess) == ["0"] for cell in net.cells.values())
    net(torch.randn(2, 1, 8, 8)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_searched_reduction_cell_is_used_between_stages():
    space = NasnetCellSpace(blocks=1, reduction=True)
    arch = space.arch({**_choices([(1, 1, "skip_connect", "skip_connect", "add")]),
                       **_choices([(1, 1, "max_pool_3x3", "avg_pool_3x3", "add")], "reduce")})
    net = space.build(arch, channels=4, cells=1, in_channels=1)
    kinds = [type(cell.ops[0][0]).__name__ for cell in net.cells.values()]
    assert kinds == ["Identity", "MaxPool2d", "Identity", "MaxPool2d", "Identity"]
    fixed = NasnetCellSpace(blocks=1)
    net = fixed.build(_arch(fixed, [(1, 1, "skip_connect", "skip_connect", "add")]),
                      channels=4, cells=1, in_channels=1)
    # Without a searched reduction cell, the normal cell runs at stride 2: a factorized
    # reduction stands in for the identity.
    kinds = [type(cell.ops[0][0]).__name__ for cell in net.cells.values()]
    assert kinds == ["Identity", "FactorizedReduce", "Identity", "FactorizedReduce", "Identity"]


def test_registered_and_rebuilt_from_space_args():
    space = SPACES.get("nasnet")(variant="original", blocks=3)
    arch = space.sample(np.random.default_rng(0))
    rebuilt = SPACES.get(arch.space)(**arch.space_args)
    assert rebuilt.space_hash == space.space_hash and rebuilt.contains(arch)
    assert not SPACE.contains(arch)


@pytest.mark.parametrize("kwargs", [{"variant": "nasnet-b"}, {"blocks": 0},
                                    {"combines": ["mul"]}, {"combines": []},
                                    {"ops": ["skip_connect", "skip_connect"]}, {"ops": []}])
def test_bad_settings_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        NasnetCellSpace(**kwargs)


def test_unknown_op_and_odd_channels_are_user_errors():
    with pytest.raises(ArchsearchError, match="sep_conv_3x3"):
        NasnetCellSpace(ops=["sep_conv3x3"])
    block = [Block((0, 1), ("skip_connect", "skip_connect"), "add")]
    with pytest.raises(ConfigError, match="even"):
        NasnetNetwork(block, channels=5)
