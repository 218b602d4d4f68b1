"""A differentiable expected hardware cost of the DARTS supernet, for cost-aware search.

The expected cost of the relaxed network is Σ over cells, edges and ops of
softmax(α)_o · cost(o at that edge), as in ProxylessNAS's expected latency (Cai et al.,
ICLR 2019, eq. 3) and FBNet's latency-aware loss, here with conv and linear MACs as the
cost. Each op's MACs depend only on where it sits (channels, resolution, stride), not on
α, so they are counted once into one table per cell type: (edges, ops), summed over the
cells of that type (all normal cells share α_normal). Added to the architecture loss with a
weight, it pulls α towards cheap ops; the table is constant, so the term's gradient is
exact in first- and second-order DARTS alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from archsearch.hardware.counts import count_macs
from archsearch.supernet.darts import DartsSupernet


def op_macs_table(net: DartsSupernet, image_size: int) -> dict[str, Tensor]:
    """MACs of every op on every edge, summed over the cells of each type.

    Args:
        net: the supernet.
        image_size: the input's height = width (the stem keeps it; reductions halve it).

    Returns:
        {"normal": (edges, ops), "reduce": (edges, ops)} float64 tensors; `none`, pooling
        and the identity skip cost 0 (they have no conv or linear layer).
    """
    ops = net.space.ops
    tables = {cell: torch.zeros(net.space.num_edges, len(ops), dtype=torch.float64)
              for cell in ("normal", "reduce")}
    size = image_size
    for cell in net.cells:
        kind = "reduce" if cell.reduction else "normal"
        for e, edge in enumerate(cell.edges):
            for k, name in enumerate(ops):
                if name in edge.ops:
                    channels = _in_channels(edge.ops[name])
                    tables[kind][e, k] += count_macs(edge.ops[name], (channels, size, size))
        if cell.reduction:
            size = (size + 1) // 2
    return tables


def expected_macs(net: DartsSupernet, tables: dict[str, Tensor]) -> Tensor:
    """Σ softmax(α)·MACs over both cell types: a scalar, differentiable in α."""
    total = net.alpha_normal.new_zeros((), dtype=torch.float64)
    for kind, alpha in (("normal", net.alpha_normal), ("reduce", net.alpha_reduce)):
        weights = F.softmax(alpha, dim=-1).to(torch.float64)  # (edges, ops)
        total = total + (weights * tables[kind].to(alpha.device)).sum()
    return total


def _in_channels(module: torch.nn.Module) -> int:
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            return m.in_channels
    raise ValueError(f"op {module!r} has no convolution")
