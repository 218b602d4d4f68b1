"""The DARTS search network: a stack of supernet cells sharing α (DARTS: arXiv:1806.09055).

All normal cells share `alpha_normal` and all reduction cells share `alpha_reduce`, each of
shape (edges, ops) = (14, 8) for 4 nodes and the DARTS op set. Both are registered
`nn.Parameter`s, so they are saved by `state_dict()`; `arch_parameter_names()` tells the
bilevel optimiser which parameters are α and which are weights w.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.networks.darts import check_network_size, reduction_indices
from archsearch.ops.layout import make_output_channels_last, match_grad_layout
from archsearch.space import Arch
from archsearch.spaces.darts import CELL_TYPES, DartsCellSpace
from archsearch.supernet._mixed import SearchCell

ARCH_PARAMETER_NAMES = ("alpha_normal", "alpha_reduce")


class CellSearchNetwork(nn.Module):
    """What every one-shot supernet of the DARTS cell space shares: the network that
    `build_search_network` gives it (stem, cells of `cell_class`, classifier, α of both
    cell types) and the accessors the optimisers and results read. Subclasses add how a
    cell combines its edges (`forward`)."""

    space: DartsCellSpace
    alpha_normal: nn.Parameter
    alpha_reduce: nn.Parameter

    def __init__(self, space: DartsCellSpace, cell_class: type[nn.Module], *, channels: int,
                 layers: int, num_classes: int, in_channels: int, stem_multiplier: int,
                 alpha_init_std: float) -> None:
        super().__init__()
        build_search_network(self, space, cell_class, channels=channels, layers=layers,
                             num_classes=num_classes, in_channels=in_channels,
                             stem_multiplier=stem_multiplier, alpha_init_std=alpha_init_std)

    def arch_parameter_names(self) -> tuple[str, ...]:
        return ARCH_PARAMETER_NAMES

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce]

    def alpha(self, cell: str) -> nn.Parameter:
        """α of cell type `cell` ("normal" or "reduce"), (edges, ops)."""
        return self.alpha_reduce if cell == "reduce" else self.alpha_normal

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n not in ARCH_PARAMETER_NAMES]

    def alphas(self) -> dict[str, list[list[float]]]:
        """α of both cell types as nested lists (rows = edges in label order, cols = ops)."""
        return {c: self.alpha(c).detach().cpu().tolist() for c in CELL_TYPES}

    def derive(self) -> Arch:
        """The discrete architecture of the current α (two strongest inputs per node)."""
        return self.space.derive(self.alphas())


class DartsSupernet(CellSearchNetwork):
    """The over-parameterised network whose α DARTS optimises.

    Args:
        space: the cell space (nodes per cell, op set and α-column order).
        channels: C of the first cells (16 in the paper's search).
        layers: number of cells (8 in the paper's search).
        num_classes: classifier outputs.
        in_channels: image channels.
        stem_multiplier: the stem outputs `stem_multiplier · C` channels.
        alpha_init_std: α starts as `alpha_init_std · N(0, 1)`, as in the published code.
    """

    def __init__(self, space: DartsCellSpace, *, channels: int = 16, layers: int = 8,
                 num_classes: int = 10, in_channels: int = 3, stem_multiplier: int = 3,
                 alpha_init_std: float = 1e-3) -> None:
        super().__init__(space, SearchCell, channels=channels, layers=layers,
                         num_classes=num_classes, in_channels=in_channels,
                         stem_multiplier=stem_multiplier, alpha_init_std=alpha_init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of the relaxed network at the current α."""
        # channels_last: oneDNN's depthwise and 1×1 convolutions are 2-4× faster in NHWC.
        x = x.contiguous(memory_format=torch.channels_last)
        w_normal = F.softmax(self.alpha_normal, dim=-1)  # (edges, ops)
        w_reduce = F.softmax(self.alpha_reduce, dim=-1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        # The pooling's backward gives NCHW gradients; the cells' BNs want channels-last.
        return self.classifier(F.adaptive_avg_pool2d(match_grad_layout(s1), 1).flatten(1))


def _use_batch_statistics(module: nn.Module) -> None:
    """Make every BN normalise with the statistics of the batch at hand, also in eval mode.

    The supernet's weights change fast and its α changes which ops matter, so running
    averages lag far behind the batch statistics the search trains with; evaluating with
    them under-reports accuracy badly. Search itself always uses batch statistics anyway.
    Without running buffers the architecture-gradient passes also have no state to disturb.
    """
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None


def build_search_network(net: nn.Module, space: DartsCellSpace, cell_class: type[nn.Module], *,
                         channels: int, layers: int, num_classes: int, in_channels: int,
                         stem_multiplier: int, alpha_init_std: float) -> None:
    """Give `net` the DARTS search network: stem, `layers` cells of `cell_class` (reductions
    at 1/3 and 2/3 of the depth), classifier, and α of both cell types, (edges, ops) each.

    One construction order for every one-shot supernet, so the same seed gives the same
    weights whichever cell computes the edges (DARTS's mixtures, ProxylessNAS's gates).
    """
    check_network_size(channels, layers)
    net.space = space
    c_stem = stem_multiplier * channels
    net.stem = nn.Sequential(
        nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
    make_output_channels_last(net.stem[0])  # also from one-channel (grey) images
    c_pp, c_p, c_cur = c_stem, c_stem, channels
    net.cells = nn.ModuleList()
    reduction_prev = False
    for i in range(layers):
        reduction = i in reduction_indices(layers)
        c_cur = c_cur * 2 if reduction else c_cur
        net.cells.append(cell_class(
            ops=space.ops, nodes=space.nodes, c_prev_prev=c_pp, c_prev=c_p, channels=c_cur,
            reduction=reduction, reduction_prev=reduction_prev))
        reduction_prev = reduction
        c_pp, c_p = c_p, space.nodes * c_cur
    net.classifier = nn.Linear(c_p, num_classes)
    # Sampled or relaxed paths change every step: running BN statistics would be useless.
    _use_batch_statistics(net)
    shape = (space.num_edges, len(space.ops))
    net.alpha_normal = nn.Parameter(alpha_init_std * torch.randn(shape))
    net.alpha_reduce = nn.Parameter(alpha_init_std * torch.randn(shape))
