"""The DARTS continuous relaxation of one cell (DARTS: arXiv:1806.09055, eq. 2).

Each edge (i, j) computes  ō(x_j) = Σ_o softmax(α_ij)_o · o(x_j).  This file computes exactly
that, but organised around the *source* node instead of the edge, which removes work that
a per-edge implementation repeats:

* `none` contributes softmax(α)_none · 0 = 0 to the sum and is never computed (its α still
  gets the right gradient through the softmax normalisation of the other ops).
* Parameter-free ops (max/avg pooling followed by a non-affine BN, identity skip) depend only
  on the source node and the stride, so the pooling is computed once per source node and
  shared by every edge leaving it, instead of once per edge. Each edge folds its op weight
  into the BN (a batch-statistics BN without affine parameters: w·(p − μ)/σ in one kernel),
  so no normalised copy of the pooled map is kept for backward, only the pooled map itself.
* Every conv op starts with ReLU(x_j); that ReLU is computed once per source node.
* A node's terms are summed in place into one map; the folded BNs write into it directly
  (`batch_norm_add_`), so no term needs a map of its own.

The output equals the per-edge formulation up to floating-point summation order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.ops import POOLING_OPS, PreActivated, create_op
from archsearch.ops.batch_norm import batch_norm, batch_norm_add_
from archsearch.ops.conv import channel_scale
from archsearch.ops.layout import cat_channels
from archsearch.ops.norm_relu import fusable_norm
from archsearch.ops.phase import pixel_phases
from archsearch.ops.pool import pool_3x3


class SourceFeatures:
    """What every edge leaving one node shares: the node, its ReLU, its pooled versions and,
    for strided edges, the ReLU's pixel phases."""

    __slots__ = ("x", "relu", "pooled", "phases")

    def __init__(self, x: torch.Tensor, relu: torch.Tensor | None,
                 pooled: dict[str, tuple[torch.Tensor, nn.BatchNorm2d | None]],
                 phases: tuple[torch.Tensor, ...] | None = None) -> None:
        self.x = x  # (B, C, H, W)
        self.relu = relu  # (B, C, H, W) or None when no op needs it
        # op name -> (pooled (B, C, H/s, W/s), its BN still to apply, or None when applied)
        self.pooled = pooled
        # relu[:, :, a::2, a::2] for a = 0 (and 1), (B, C, ⌈H/2⌉, ⌈W/2⌉); None at stride 1
        self.phases = phases


class MixedEdge(nn.Module):
    """The parametric part of one mixed edge: the conv ops and a strided skip."""

    def __init__(self, ops: Sequence[str], channels: int, stride: int) -> None:
        super().__init__()
        self.op_names = tuple(ops)
        self.weighted_names = tuple(name for name in ops if name != "none")  # the computed ops
        self.stride = stride
        # Parametric ops only; shared ones are looked up in SourceFeatures.
        self.ops = nn.ModuleDict({
            name: create_op(name, channels, stride, affine=False)
            for name in ops if _is_parametric(name, stride)})

    def forward(self, src: SourceFeatures, weights: torch.Tensor | None,
                channel_weights: torch.Tensor | None = None,
                out: torch.Tensor | None = None) -> torch.Tensor | None:
        """Σ_o weights[o] · o(x) over the ops of this edge; `weights` is (K,) after softmax.

        `channel_weights`, optional, holds the weights of the ops other than `none`, in
        order, each repeated per channel: (K − #none, C), contiguous. The BNs that fold an
        op weight in take their (C,) weight vector from it; `weights` is then not needed
        (None is fine).

        `out`, optional, is the sum the terms are added to, in place (the node's sum of
        the edges before this one); it is returned.
        """
        names = self.weighted_names
        # One unbind instead of an index per op: its backward is one stack, where indexing
        # costs a zero-filled gradient per op and the sum of them (measured: about 15 % of
        # all ATen calls of a second-order search step). Every row is used, so the stack
        # fills in no zeros either.
        if channel_weights is None:
            if weights is None:
                raise ValueError("a mixed edge needs its op weights")
            scales = [weights[self.op_names.index(name)] for name in names]
        else:
            scales = list(channel_weights.unbind(0))
        for name, scale in zip(names, scales, strict=True):
            out = self._weighted_op(name, src, scale, out)
        return out

    def _weighted_op(self, name: str, src: SourceFeatures, scale: torch.Tensor,
                     out: torch.Tensor | None) -> torch.Tensor:
        """scale · op(x) for a scalar or per-channel (C,) `scale`, added to `out` in place
        unless it is None; conv ops fold the scale into their last BN (no extra product).

        In place is safe: the sum starts as a fresh term that no backward step needs (BN
        keeps its input, a product its factors), so it needs no new buffer per term; the
        folded BNs write into it directly.
        """
        if name in src.pooled:
            pooled, bn = src.pooled[name]
            if bn is None:
                return _add_scaled(out, pooled, scale)
            weight = channel_scale(scale, pooled)
            if out is None:
                return batch_norm(pooled, weight, bn.eps)
            return batch_norm_add_(out, pooled, weight, bn.eps)
        if name == "skip_connect" and self.stride == 1:
            return _add_scaled(out, src.x, scale)
        op = self.ops[name]
        if isinstance(op, PreActivated) and src.relu is not None:
            return op.forward_scaled(src.relu, scale, src.phases, out)
        return _add_scaled(out, op(src.x), scale)


def _add_scaled(out: torch.Tensor | None, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """out + x·scale in place (one pass), or x·scale when `out` is None; `scale` a scalar
    or a (C,) vector."""
    scale = scale.view(1, -1, 1, 1) if scale.dim() else scale
    return x * scale if out is None else out.addcmul_(x, scale)


def _is_parametric(name: str, stride: int) -> bool:
    if name == "none" or name in POOLING_OPS:
        return False
    return not (name == "skip_connect" and stride == 1)


class SearchCell(nn.Module):
    """A supernet cell: 2 preprocessed inputs, `nodes` intermediate nodes of mixed edges.

    Edges are stored in α-row order: node 2 reads nodes 0, 1; node 3 reads 0, 1, 2; ...
    """

    def __init__(self, *, ops: Sequence[str], nodes: int, c_prev_prev: int, c_prev: int,
                 channels: int, reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        from archsearch.ops import FactorizedReduce, ReLUConvBN

        self.nodes = nodes
        self.channels = channels
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_prev_prev, channels, affine=False)
                            if reduction_prev else
                            ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            MixedEdge(ops, channels, self._stride(j))
            for i in range(2, nodes + 2) for j in range(i))
        self.pool_names = tuple(op for op in ops if op in POOLING_OPS)
        # One non-affine BN after each pooling op, per source node (the last node is no source).
        self.pool_bn = nn.ModuleList(
            nn.ModuleDict({op: nn.BatchNorm2d(channels, affine=False) for op in self.pool_names})
            for _ in range(nodes + 1))
        # α's columns of the ops that are computed (all but `none`), in order.
        self.weighted_columns = tuple(k for k, op in enumerate(ops) if op != "none")
        self.needs_relu = any(isinstance(m, PreActivated)
                              for e in self.edges for m in e.ops.values())
        # Pixel phases the strided edges' ops read (see `archsearch.ops.phase`).
        self.phase_offsets = tuple(sorted({
            a for e in self.edges if e.stride == 2 for m in e.ops.values()
            if isinstance(m, PreActivated) for a in m.phase_offsets()}))

    def _stride(self, source: int) -> int:
        return 2 if self.reduction and source < 2 else 1

    def _source(self, j: int, x: torch.Tensor) -> SourceFeatures:
        stride = self._stride(j)
        pooled = {}
        for op in self.pool_names:
            p = pool_3x3(x, stride, "max" if op == "max_pool_3x3" else "avg")
            bn = self.pool_bn[j][op]
            # Batch-statistics BNs are applied per edge, with the op weight folded in.
            pooled[op] = (p, bn) if fusable_norm(bn) else (bn(p), None)
        relu = F.relu(x) if self.needs_relu else None
        phases = None
        if relu is not None and stride == 2 and self.phase_offsets:
            # Taken once here and shared by every strided op that reads only these pixels
            # (dil convs: phase 0; the factorized-reduce skip: phases 0 and 1).
            phases = pixel_phases(relu, 2, self.phase_offsets)
        return SourceFeatures(x, relu, pooled, phases)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """`weights` is softmax(α) of this cell type, (edges, ops); returns (B, nodes·C, H, W)."""
        sources = [self._source(0, self.preprocess0(s0)), self._source(1, self.preprocess1(s1))]
        # (edges, ops other than none, C): one copy per cell instead of one expand + copy per
        # folded BN, and one unbind into the edges' rows instead of an index per edge.
        channel_weights = (_columns(weights, self.weighted_columns).unsqueeze(-1)
                           .expand(-1, -1, self.channels).contiguous())
        edge_channel_weights = channel_weights.unbind(0)
        states: list[torch.Tensor] = []
        row = 0
        for i in range(2, self.nodes + 2):
            node: torch.Tensor | None = None
            for j in range(i):
                # Every edge adds its terms to the node's sum in place.
                node = self.edges[row + j](sources[j], None, edge_channel_weights[row + j],
                                           node)
            row += i
            # The space guarantees an op other than `none`, so every edge adds a term.
            assert node is not None
            states.append(node)
            if i < self.nodes + 1:
                sources.append(self._source(i, node))
        return cat_channels(states)  # (B, nodes·C, H, W)


def _columns(weights: torch.Tensor, columns: tuple[int, ...]) -> torch.Tensor:
    """weights[:, columns]; a slice when the columns are a range (`none` first or last)."""
    if columns == tuple(range(columns[0], columns[-1] + 1)):
        return weights[:, columns[0]:columns[-1] + 1]
    return weights.index_select(1, torch.tensor(columns, device=weights.device))
