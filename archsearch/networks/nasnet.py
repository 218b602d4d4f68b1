"""A small NASNet-style network built from searched cells (Zoph et al., CVPR 2018,
arXiv:1707.07012, §3 and Fig. 2, CIFAR layout).

Layout: a 3×3 conv-BN stem to C channels, then three stages of `cells` normal cells with a
reduction cell between stages (resolution halved, channels doubled), then ReLU, global
average pooling and a linear classifier. A cell reads the outputs of the two cells before
it, h_{i-2} and h_{i-1} (both the stem output for the first cell).

Inside a cell, as in NASNet and DARTS: each used input is first mapped to the cell's C
channels by a ReLU-1×1 conv-BN (a factorized reduction when h_{i-2} is at twice the
resolution, i.e. after a reduction cell); each block applies its two ops and merges the
results by addition, or by channel concatenation followed by a ReLU-1×1 conv-BN back to C
channels; the blocks that no other block reads are concatenated and a ReLU-1×1 conv-BN
projects them back to C channels, so every cell outputs C channels.

The reduction cell is the searched `reduce` cell when there is one; otherwise it is the normal
cell with stride 2 on every op that reads a cell input (the blocks it reads are already
reduced), the same convention as DARTS reduction cells.

Cells whose output nothing reads (a cell that uses only h_{i-2} leaves the cell before it
unread, for instance) are not built: they could not change the logits, and an unbuilt cell has
no parameters left without gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.errors import ConfigError
from archsearch.ops import FactorizedReduce, ReLUConvBN, create_op
from archsearch.spaces.nasnet import CELL_INPUTS, Block, output_blocks, used_cell_inputs

STAGES = 3


class NasnetCell(nn.Module):
    """One cell: preprocess the two inputs, run the blocks, concatenate the unread ones.

    Args:
        blocks: the cell's blocks (see `NasnetCellSpace.cell`).
        c_prev_prev, c_prev: channels of h_{i-2} and h_{i-1}.
        channels: C, the channels of every state inside the cell and of its output.
        reduction: halve the resolution (stride 2 on the ops that read a cell input).
        reduction_prev: h_{i-2} is at twice the resolution of h_{i-1}.
    """

    def __init__(self, blocks: Sequence[Block], c_prev_prev: int, c_prev: int, channels: int,
                 *, reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        c = channels
        self.blocks = tuple(blocks)
        self.outputs = output_blocks(self.blocks)
        used = used_cell_inputs(self.blocks)
        # Only inputs that some block reads get a preprocessing op (and parameters).
        self.preprocess = nn.ModuleDict()
        if 0 in used:
            self.preprocess["0"] = (FactorizedReduce(c_prev_prev, c) if reduction_prev
                                    else ReLUConvBN(c_prev_prev, c, 1, 1, 0))
        if 1 in used:
            self.preprocess["1"] = ReLUConvBN(c_prev, c, 1, 1, 0)
        self.ops = nn.ModuleList(
            nn.ModuleList(create_op(op, c, 2 if reduction and i < CELL_INPUTS else 1)
                          for op, i in zip(block.ops, block.inputs, strict=True))
            for block in self.blocks)
        # "concat" doubles the channels; a 1×1 conv brings them back to C for later blocks.
        self.merge = nn.ModuleDict({str(k): ReLUConvBN(2 * c, c, 1, 1, 0)
                                    for k, block in enumerate(self.blocks)
                                    if block.combine == "concat"})
        self.project = ReLUConvBN(len(self.outputs) * c, c, 1, 1, 0)

    def forward(self, s0: torch.Tensor | None, s1: torch.Tensor | None) -> torch.Tensor:
        states: list[torch.Tensor | None] = [
            self.preprocess[str(i)](s) if str(i) in self.preprocess else None
            for i, s in enumerate((s0, s1))]
        for k, (block, ops) in enumerate(zip(self.blocks, self.ops, strict=True)):
            a, b = (op(states[i]) for op, i in zip(ops, block.inputs, strict=True))
            if block.combine == "add":
                states.append(a + b)
            else:
                states.append(self.merge[str(k)](torch.cat([a, b], dim=1)))  # (B, 2C, H, W)
        out = torch.cat([states[CELL_INPUTS + k] for k in self.outputs], dim=1)
        return self.project(out)


class NasnetNetwork(nn.Module):
    """Stem, three stages of `cells` normal cells joined by reduction cells, classifier.

    Args:
        normal: the normal cell's blocks.
        reduce: the reduction cell's blocks, or None for the normal cell at stride 2.
        channels: C of the first stage (even: factorized reduction halves it).
        cells: normal cells per stage.
        num_classes: outputs of the classifier.
        in_channels: image channels.
    """

    def __init__(self, normal: Sequence[Block], reduce: Sequence[Block] | None = None, *,
                 channels: int = 16, cells: int = 3, num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        _check_sizes(channels, cells, num_classes, in_channels)
        reduce = normal if reduce is None else reduce
        plan = [(reduce, True) if (i + 1) % (cells + 1) == 0 else (normal, False)
                for i in range(STAGES * (cells + 1) - 1)]
        live = _live_cells([used_cell_inputs(blocks) for blocks, _ in plan])
        self.num_cells = len(plan)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.cells = nn.ModuleDict()  # position -> cell; unread cells are left out
        c, c_pp, c_p, reduction_prev = channels, channels, channels, False
        for i, (blocks, reduction) in enumerate(plan):
            c = 2 * c if reduction else c
            if live[i]:
                self.cells[str(i)] = NasnetCell(blocks, c_pp, c_p, c, reduction=reduction,
                                                reduction_prev=reduction_prev)
            c_pp, c_p, reduction_prev = c_p, c, reduction
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)  # (B, C, H, W)
        for i in range(self.num_cells):
            cell = self.cells[str(i)] if str(i) in self.cells else None
            s0, s1 = s1, (cell(s0, s1) if cell is not None else None)
        assert s1 is not None  # the last cell is always live
        return self.classifier(F.adaptive_avg_pool2d(F.relu(s1), 1).flatten(1))


def _live_cells(uses: Sequence[set[int]]) -> list[bool]:
    """Which cells the logits depend on, walking back from the last one: cell i reads cell
    i−1 when it uses h_{i-1} (input 1) and cell i−2 when it uses h_{i-2} (input 0)."""
    live = [False] * len(uses)
    live[-1] = True
    for i in reversed(range(len(uses))):
        if not live[i]:
            continue
        for back, index in ((1, 1), (2, 0)):
            if index in uses[i] and i - back >= 0:
                live[i - back] = True
    return live


def _check_sizes(channels: int, cells: int, num_classes: int, in_channels: int) -> None:
    if channels < 2 or channels % 2:
        raise ConfigError(f"channels must be an even number ≥ 2, got {channels}")
    if cells < 1:
        raise ConfigError(f"cells (normal cells per stage) must be at least 1, got {cells}")
    if num_classes < 2:
        raise ConfigError(f"need at least 2 classes, got {num_classes}")
    if in_channels < 1:
        raise ConfigError(f"need at least 1 input channel, got {in_channels}")
