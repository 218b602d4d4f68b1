"""The NAS-Bench-201 reference network and its supernet (NAS-Bench-201: arXiv:2001.00326, §2).

The network of the benchmark's tables (its Figure 1): a 3×3 conv stem to C channels + BN;
N cells at C channels; a residual basic block with stride 2 to 2C; N cells at 2C; a residual
block to 4C; N cells at 4C; BN-ReLU, global average pooling and a linear classifier
(C = 16, N = 5 in the tables). Every cell of one network is the same searched cell.

Ops of an edge (in = out channels, stride 1): `nor_conv_k×k` = ReLU → k×k conv (no bias) →
BN; `avg_pool_3x3` with padding 1, the padded zeros not counted; `skip_connect` = identity;
`none` = zeros. With C=16, N=5 the parameter and MAC counts equal the benchmark's for every
cell, counting ops on edges that do not reach the output (the benchmark builds them).

`NasBench201Supernet` is the same network with every edge a softmax-weighted mixture of the
ops (DARTS: arXiv:1806.09055, eq. 2), one α row per edge shared by all cells.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.errors import ConfigError
from archsearch.ops import ReLUConvBN
from archsearch.ops.pool import avg_pool_3x3
from archsearch.spaces.nasbench201 import EDGES, LABELS, NB201_OPS

if TYPE_CHECKING:
    from archsearch.space import Arch
    from archsearch.spaces.nasbench201 import NasBench201Space

STAGES = 3  # channels C, 2C, 4C


class ZeroOp(nn.Module):
    """`none`: zeros of the input's shape, computed as `x · 0`.

    The product keeps the autograd graph connected, as in the benchmark's code: weights on
    edges that cannot reach the output get an exact zero gradient instead of none, so they
    are trained (weight decay) like the benchmark's and every parameter has a gradient.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def create_nb201_op(name: str, channels: int, *, affine: bool = True) -> nn.Module:
    """One edge op at stride 1 with `channels` in and out (`affine` for the convs' BN)."""
    if name == "none":
        return ZeroOp()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0, affine=affine)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1, affine=affine)
    if name == "avg_pool_3x3":
        return avg_pool_3x3(1)
    raise ConfigError(f"unknown NAS-Bench-201 op {name!r} (ops: {', '.join(NB201_OPS)})")


class ResidualBlock(nn.Module):
    """The basic residual block between stages: halves H and W, `c_in` -> `c_out` channels.

    Main path ReLU-conv3×3(stride 2)-BN then ReLU-conv3×3-BN; shortcut 2×2 average pooling
    then a 1×1 conv (no BN). H and W must be even.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2),
                                      nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class Nb201Cell(nn.Module):
    """Node 0 = input; node i = Σ_{j<i} edge_{j→i}(node j); the output is node 3.

    `edges` are the 6 edge modules in label order (`EDGES`). Discrete edges take one input;
    mixed edges also take their row of softmax(α), passed as `weights` (6, ops).
    """

    def __init__(self, edges: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(edges) != len(EDGES):
            raise ValueError(f"a NAS-Bench-201 cell has {len(EDGES)} edges, got {len(edges)}")
        self.edges = nn.ModuleList(edges)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        nodes = [x]  # each (B, C, H, W)
        for k, (i, j) in enumerate(EDGES):
            edge = self.edges[k]
            h = edge(nodes[j]) if weights is None else edge(nodes[j], weights[k])
            if len(nodes) == i:  # the first edge into node i (edges come grouped by node)
                nodes.append(h)
            else:
                nodes[i] = nodes[i] + h
        return nodes[-1]


class _Skeleton(nn.Module):
    """Stem, three stages of cells joined by residual blocks, and the head.

    `make_edges(channels)` returns the 6 edge modules of one new cell.
    """

    def __init__(self, make_edges: Callable[[int], list[nn.Module]], *, channels: int,
                 cells_per_stage: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        _check_sizes(channels, cells_per_stage, num_classes, in_channels)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        blocks: list[nn.Module] = []
        c = channels
        for stage in range(STAGES):
            if stage:
                blocks.append(ResidualBlock(c, 2 * c))
                c *= 2
            blocks.extend(Nb201Cell(make_edges(c)) for _ in range(cells_per_stage))
        self.blocks = nn.ModuleList(blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(c, num_classes)

    def _forward(self, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, weights) if isinstance(block, Nb201Cell) else block(x)
        x = self.lastact(x)
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))  # (B, classes)


class NasBench201Network(_Skeleton):
    """The benchmark's network of one cell.

    Args:
        edge_ops: the 6 ops in label order (`n1.e0, n2.e0, n2.e1, n3.e0, n3.e1, n3.e2`).
        channels: C, the channels of the first stage (16 in the benchmark).
        cells_per_stage: N, cells per stage (5 in the benchmark).
        num_classes: classifier outputs (10 CIFAR-10, 100 CIFAR-100, 120 ImageNet16-120).
        in_channels: image channels.
    """

    def __init__(self, edge_ops: Sequence[str], *, channels: int = 16, cells_per_stage: int = 5,
                 num_classes: int = 10, in_channels: int = 3) -> None:
        ops = tuple(edge_ops)
        if len(ops) != len(EDGES):
            raise ConfigError(f"a NAS-Bench-201 cell has {len(EDGES)} edges, got {len(ops)} ops")

        def make_edges(c: int) -> list[nn.Module]:
            return [create_nb201_op(op, c) for op in ops]

        super().__init__(make_edges, channels=channels, cells_per_stage=cells_per_stage,
                         num_classes=num_classes, in_channels=in_channels)
        self.edge_ops = ops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of images (B, in_channels, H, W), H and W divisible by 4."""
        return self._forward(x, None)


class Nb201MixedEdge(nn.Module):
    """One supernet edge: Σ_o w_o · o(x) with w = softmax(α row) (DARTS eq. 2).

    The convs' BN has no affine parameters, as in DARTS' search. `none` adds w · 0 = 0 and
    is not computed; its α still gets a gradient through the softmax normalisation.
    """

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.op_names = tuple(ops)
        self.ops = nn.ModuleList(create_nb201_op(op, channels, affine=False) for op in ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """`weights` (ops,) is this edge's row of softmax(α)."""
        out: torch.Tensor | None = None
        for k, (name, op) in enumerate(zip(self.op_names, self.ops, strict=True)):
            if name != "none":
                term = weights[k] * op(x)
                out = term if out is None else out + term
        return x.mul(0.0) if out is None else out  # an op set of only `none`


class NasBench201Supernet(_Skeleton):
    """The benchmark's network with every edge mixing the ops of `space`.

    α has shape (6 edges, ops), one row per label in label order, shared by all cells and
    saved in `state_dict()` as `alpha`. Every BN normalises with the batch statistics, also
    in eval mode (α changes which ops matter faster than running averages follow).

    Args:
        space: the NAS-Bench-201 space (its op set is the α-column order).
        channels, cells_per_stage, num_classes, in_channels: as for `NasBench201Network`.
        alpha_init_std: α starts as `alpha_init_std · N(0, 1)` (the global torch RNG, like
            the weights' initialisation), as in the DARTS code.
    """

    def __init__(self, space: NasBench201Space, *, channels: int = 16, cells_per_stage: int = 5,
                 num_classes: int = 10, in_channels: int = 3,
                 alpha_init_std: float = 1e-3) -> None:
        ops = space.ops

        def make_edges(c: int) -> list[nn.Module]:
            return [Nb201MixedEdge(ops, c) for _ in EDGES]

        super().__init__(make_edges, channels=channels, cells_per_stage=cells_per_stage,
                         num_classes=num_classes, in_channels=in_channels)
        self.space = space
        self.alpha = nn.Parameter(alpha_init_std * torch.randn(len(EDGES), len(ops)))
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.track_running_stats = False
                m.running_mean = m.running_var = m.num_batches_tracked = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x, F.softmax(self.alpha, dim=-1))

    def arch_parameter_names(self) -> tuple[str, ...]:
        return ("alpha",)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "alpha"]

    def alphas(self) -> dict[str, list[float]]:
        """label -> α row (before softmax), for `space.derive` and logs."""
        rows = self.alpha.detach().cpu().tolist()
        return dict(zip(LABELS, rows, strict=True))

    def derive(self) -> Arch:
        """The discrete cell of the current α: the argmax op of every edge."""
        return self.space.derive(self.alphas())


def _check_sizes(channels: int, cells_per_stage: int, num_classes: int,
                 in_channels: int) -> None:
    for name, value, low in (("channels", channels, 1), ("cells_per_stage", cells_per_stage, 0),
                             ("num_classes", num_classes, 1), ("in_channels", in_channels, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{name} must be an integer of at least {low}, got {value!r}")
