"""Discrete networks built from a DARTS genotype (DARTS: arXiv:1806.09055, §3.2–3.3).

`DartsNetwork` stacks cells into the CIFAR-style network (one 3×3 stem) or the
ImageNet-style one (two stride-2 stems), with reduction cells at 1/3 and 2/3 of the depth,
an optional auxiliary head after the cell at 2/3 depth, and drop-path on the non-identity
ops of each cell. Parameter counts match the paper's published implementation exactly.
`forward(x)` returns logits; training code that wants the auxiliary logits calls
`forward_with_aux`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.errors import ConfigError
from archsearch.ops import FactorizedReduce, ReLUConvBN, create_op
from archsearch.ops.layout import cat_channels, make_output_channels_last, match_grad_layout
from archsearch.spaces.darts import Genotype


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of a branch with probability `drop_prob`, rescaling the rest."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


def reduction_indices(layers: int) -> tuple[int, ...]:
    """Cells that halve the resolution and double the channels: at 1/3 and 2/3 depth."""
    return (layers // 3, 2 * layers // 3)


class DiscreteCell(nn.Module):
    """One cell of a found architecture: each node sums two ops of earlier nodes."""

    def __init__(self, genotype: Genotype, c_prev_prev: int, c_prev: int, c: int,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        pairs = genotype.reduce if reduction else genotype.normal
        self.concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self.inputs = tuple(j for _, j in pairs)
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0)
        self.ops = nn.ModuleList(
            create_op(op, c, 2 if reduction and j < 2 else 1) for op, j in pairs)
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in range(0, len(self.ops), 2):
            node = 0
            for op, j in ((self.ops[k], self.inputs[k]), (self.ops[k + 1], self.inputs[k + 1])):
                h = op(states[j])
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                node = node + h
            states.append(node)
        return cat_channels([states[i] for i in self.concat])  # (B, multiplier·C, H, W)


class AuxiliaryHead(nn.Module):
    """Classifier on the features after the cell at 2/3 depth (weight 0.4 in the loss).

    CIFAR style (8×8 input at 32×32 images): ReLU, 5×5 avg-pool stride 3, 1×1 conv to 128,
    BN, ReLU, 2×2 conv to 768, BN, ReLU, linear. The ImageNet head pools with stride 2 and
    has no BN after the 2×2 conv. Maps smaller than 5×5 (small images) skip the pool.
    """

    def __init__(self, c: int, num_classes: int, *, imagenet: bool = False) -> None:
        super().__init__()
        self.pool_stride = 2 if imagenet else 3
        self.conv = nn.Sequential(
            nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            *(() if imagenet else (nn.BatchNorm2d(768),)), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if x.size(-1) >= 5:
            x = F.avg_pool2d(x, 5, stride=self.pool_stride, count_include_pad=False)
        x = F.adaptive_avg_pool2d(self.conv(x), 1)
        return self.classifier(x.flatten(1))


class DartsNetwork(nn.Module):
    """A network of `layers` cells of a genotype, CIFAR-style or ImageNet-style.

    Args:
        genotype: the normal and reduction cells.
        channels: C, the channels of the first cells (36 for CIFAR, 48 for ImageNet).
        layers: number of cells (20 for CIFAR, 14 for ImageNet).
        num_classes: outputs of the classifier.
        in_channels: image channels (3 for colour, 1 for digits).
        auxiliary: add the auxiliary head after the cell at 2/3 depth.
        imagenet: two stride-2 stems (for 224×224 inputs) instead of one 3×3 stem.
        drop_path_prob: probability of dropping a non-identity op's output in training;
            the trainer raises it linearly over the epochs.
    """

    def __init__(self, genotype: Genotype, *, channels: int = 36, layers: int = 20,
                 num_classes: int = 10, in_channels: int = 3, auxiliary: bool = False,
                 imagenet: bool = False, stem_multiplier: int = 3,
                 drop_path_prob: float = 0.0) -> None:
        super().__init__()
        _check_sizes(channels, layers, num_classes, in_channels)
        self.drop_path_prob = drop_path_prob
        c = channels
        if imagenet:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c // 2), nn.ReLU(inplace=True),
                nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c))
            c_pp, c_p, c_cur, reduction_prev = c, c, c, True
        else:
            c_stem = stem_multiplier * c
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
            c_pp, c_p, c_cur, reduction_prev = c_stem, c_stem, c, False
        make_output_channels_last(self.stem[0])  # also from one-channel (grey) images
        self._split_stem = imagenet  # ImageNet: s0 = stem0(x), s1 = stem1(s0)
        self.cells = nn.ModuleList()
        self.aux_index = 2 * layers // 3
        c_aux = 0
        for i in range(layers):
            reduction = i in reduction_indices(layers)
            c_cur = c_cur * 2 if reduction else c_cur
            cell = DiscreteCell(genotype, c_pp, c_p, c_cur, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_cur
            if i == self.aux_index:
                c_aux = c_p
        self.aux_head = AuxiliaryHead(c_aux, num_classes, imagenet=imagenet) if auxiliary else None
        self.classifier = nn.Linear(c_p, num_classes)

    def _stems(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._split_stem:
            s = self.stem(x)
            return s, s
        s0 = self.stem[:5](x)  # conv-BN-ReLU-conv-BN: the ImageNet stem0
        return s0, self.stem[5:](s0)  # ReLU-conv-BN: stem1

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, auxiliary logits or None); the auxiliary head runs only in training."""
        # channels_last: oneDNN's depthwise and 1×1 convolutions are 2-4× faster in NHWC.
        s0, s1 = self._stems(x.contiguous(memory_format=torch.channels_last))
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.aux_head is not None and self.training:
                aux = self.aux_head(match_grad_layout(s1))
        # The pooling's backward gives NCHW gradients; the cells' BNs want channels-last.
        logits = self.classifier(F.adaptive_avg_pool2d(match_grad_layout(s1), 1).flatten(1))
        return logits, aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]


def check_network_size(channels: int, layers: int) -> None:
    """Sizes every DARTS network needs: even C (factorized reduction halves it), ≥ 3 cells."""
    if channels < 2 or channels % 2:
        raise ConfigError(f"--channels must be an even number ≥ 2, got {channels}")
    if layers < 3:
        raise ConfigError(f"--layers must be at least 3 (two of them reduce), got {layers}")


def _check_sizes(channels: int, layers: int, num_classes: int, in_channels: int) -> None:
    check_network_size(channels, layers)
    if num_classes < 2:
        raise ConfigError(f"need at least 2 classes, got {num_classes}")
    if in_channels < 1:
        raise ConfigError(f"need at least 1 input channel, got {in_channels}")
