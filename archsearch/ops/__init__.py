"""Candidate operations: a registry from op name to a factory `(channels, stride, affine)`.

`DARTS_OPS` is the DARTS op set in the column order of α.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from archsearch.ops.conv import DilConv, FactorizedReduce, PreActivated, ReLUConvBN, SepConv
from archsearch.ops.misc import Zero
from archsearch.ops.pool import avg_pool_3x3, max_pool_3x3
from archsearch.registry import Registry

OpFactory = Callable[[int, int, bool], nn.Module]

OPS: Registry[OpFactory] = Registry("op")

DARTS_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

# Ops without weights whose result depends only on the input and the stride. A supernet may
# compute them once per source node and share them between the edges leaving that node.
POOLING_OPS: frozenset[str] = frozenset({"max_pool_3x3", "avg_pool_3x3"})


def _skip_connect(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine)


OPS.add("none", lambda c, stride, affine: Zero(stride))
OPS.add("max_pool_3x3", lambda c, stride, affine: max_pool_3x3(stride))
OPS.add("avg_pool_3x3", lambda c, stride, affine: avg_pool_3x3(stride))
OPS.add("skip_connect", _skip_connect)
OPS.add("sep_conv_3x3", lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine=affine))
OPS.add("sep_conv_5x5", lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine=affine))
OPS.add("dil_conv_3x3", lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine=affine))
OPS.add("dil_conv_5x5", lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine=affine))


def create_op(name: str, channels: int, stride: int, affine: bool = True) -> nn.Module:
    """Build op `name` for `channels` channels (in = out) at `stride`."""
    return OPS.get(name)(channels, stride, affine)


__all__ = [
    "DARTS_OPS",
    "OPS",
    "POOLING_OPS",
    "DilConv",
    "FactorizedReduce",
    "OpFactory",
    "PreActivated",
    "ReLUConvBN",
    "SepConv",
    "Zero",
    "create_op",
]
