"""Convolutional DARTS operations in ReLU-Conv-BN order (DARTS: arXiv:1806.09055, §2.1).

Every op here begins with a ReLU of its input. The supernet feeds one input to many ops, so
each op also exposes `forward_activated(x_relu)`, which skips that first ReLU: the supernet
computes `relu(x)` once per source node instead of once per op. The result is the same;
only work and memory are saved. All convolutions are bias-free, as in the paper's code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.ops.batch_norm import batch_norm, batch_norm_add_
from archsearch.ops.depthwise import (
    DepthwiseConv2d,
    depthwise_pointwise,
    is_pointwise,
    reads_one_phase,
)
from archsearch.ops.layout import cat_channels, exporting
from archsearch.ops.norm_relu import fusable_norm, norm_relu_depthwise_pointwise
from archsearch.ops.phase import pixel_phases
from archsearch.ops.pointwise import pointwise


class PreActivated(nn.Module):
    """An op of the form `body(relu(x))`; subclasses fill `self.body`."""

    body: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_activated(F.relu(x))

    def forward_activated(self, x_relu: torch.Tensor) -> torch.Tensor:
        """The op applied to an input that has already gone through ReLU."""
        return run_layers(list(self.body), x_relu)

    def forward_scaled(self, x_relu: torch.Tensor, scale: torch.Tensor,
                       phases: Sequence[torch.Tensor] | None = None,
                       out: torch.Tensor | None = None) -> torch.Tensor:
        """`scale · op(x)` for an input that has already gone through ReLU.

        `scale` is a scalar tensor, or that value repeated per output channel ((C,),
        contiguous) when the caller has it at hand. When the op ends in a BN without affine
        parameters that normalises with batch statistics (the supernet's BNs), `scale`
        becomes that BN's weight: w·(z − μ)/σ in one kernel, with ∂/∂w computed by BN's own
        backward. That saves the supernet a multiplication and a stored activation per op.
        Otherwise: a plain product.

        `phases`, optional, are the pixel phases `pixel_phases(x_relu, 2, (0, 1))` (or the
        first of them) when the caller shares them between ops; strided ops that read
        only those pixels take them instead of computing their own.

        `out`, optional, is a sum the result is added to, in place (and returned): the
        folded BN then writes into it directly (`batch_norm_add_`). No backward step may
        need `out`'s value.
        """
        bn = self.final_bn()
        if bn is None or bn.affine or bn.track_running_stats:
            y = self.forward_activated(x_relu)
            y = y * (scale.view(1, -1, 1, 1) if scale.dim() else scale)
            return y if out is None else out.add_(y)
        z = self.before_final_bn(x_relu, phases)
        weight = channel_scale(scale, z)
        return batch_norm(z, weight, bn.eps) if out is None else batch_norm_add_(
            out, z, weight, bn.eps)

    def final_bn(self) -> nn.BatchNorm2d | None:
        last = self.body[-1] if isinstance(self.body, nn.Sequential) else None
        return last if isinstance(last, nn.BatchNorm2d) else None

    def before_final_bn(self, x_relu: torch.Tensor,
                        phases: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        return run_layers(list(self.body)[:-1], x_relu, phases)

    def phase_offsets(self) -> tuple[int, ...]:
        """The pixel phases of its input (offsets a of x[:, :, a::2, a::2]) this op reads
        instead of the whole input when given them: (0,) for a first layer that is a
        dilated depthwise conv with stride = dilation = 2, else none."""
        first = self.body[0] if isinstance(self.body, nn.Sequential) else None
        if isinstance(first, DepthwiseConv2d) and reads_one_phase(first) and first.stride[0] == 2:
            return (0,)
        return ()


def channel_scale(scale: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """A BN weight (C,) that multiplies every channel of `z` by the scalar `scale`: `scale`
    itself if it already is one (C,) vector, else a contiguous copy.

    Never a stride-0 expand: PyTorch's CPU BN backward misreads an expanded weight on
    channels-last inputs and returns a wrong input gradient.
    """
    return scale if scale.dim() == 1 else scale.expand(z.shape[1]).contiguous()


def run_layers(layers: list[nn.Module], x: torch.Tensor,
               phases: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """`layers` applied in turn, with the same result, but keeping less for backward: a
    depthwise conv followed by a 1×1 conv runs as one step (`depthwise_pointwise`), and so
    does a batch-statistics BN → ReLU → depthwise → 1×1 (`norm_relu_depthwise_pointwise`).
    `phases[0]`, optional, is x's even pixel phase, for a strided first layer that reads
    only those pixels."""
    i = 0
    while i < len(layers):
        if _starts_norm_relu_sep(layers, i):
            x = norm_relu_depthwise_pointwise(layers[i], layers[i + 2], layers[i + 3], x)
            i += 4
        elif _starts_sep(layers, i):
            phase = phases[0] if phases and i == 0 else None
            x = depthwise_pointwise(layers[i], layers[i + 1], x, phase)
            i += 2
        elif is_pointwise(layers[i]) and torch.is_grad_enabled():
            # (A module call without gradients: MAC counting hooks it.)
            x = pointwise(x, layers[i].weight)
            i += 1
        else:
            x = _call(layers[i], x)
            i += 1
    return x


def _call(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`layer(x)`; a supernet BN (`fusable_norm`) runs `batch_norm` while recording
    gradients (without, a module call: MAC counting hooks it)."""
    if fusable_norm(layer) and torch.is_grad_enabled():
        return batch_norm(x, None, layer.eps)
    return layer(x)


def _starts_sep(layers: list[nn.Module], i: int) -> bool:
    return (i + 1 < len(layers) and isinstance(layers[i], DepthwiseConv2d)
            and is_pointwise(layers[i + 1]))


def _starts_norm_relu_sep(layers: list[nn.Module], i: int) -> bool:
    return (i + 3 < len(layers) and fusable_norm(layers[i])
            and isinstance(layers[i + 1], nn.ReLU) and _starts_sep(layers, i + 2))


class ReLUConvBN(PreActivated):
    """ReLU → k×k conv → BN; with k=1 it preprocesses cell inputs to C channels."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(PreActivated):
    """ReLU → depthwise k×k conv with dilation → pointwise 1×1 conv → BN."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 dilation: int, affine: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            DepthwiseConv2d(c_in, kernel_size, stride=stride, padding=padding,
                            dilation=dilation),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(PreActivated):
    """Separable conv applied twice, as in the DARTS code: the stride is in the first half.

    ReLU → dw k×k (stride) → pw 1×1 → BN → ReLU → dw k×k → pw 1×1 → BN.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            DepthwiseConv2d(c_in, kernel_size, stride=stride, padding=padding),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in, affine=affine),
            # In place is safe: BN's backward needs its input, not its output.
            nn.ReLU(inplace=True),
            DepthwiseConv2d(c_in, kernel_size, padding=padding),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class FactorizedReduce(PreActivated):
    """Halves the resolution without losing pixels: two 1×1 stride-2 convs, one on the input
    shifted by one pixel, each giving half the output channels; concatenated, then BN.

    Used as `skip_connect` at stride 2 and to preprocess a cell input that is one
    reduction behind.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of channels, got {c_out}")
        self.conv_even = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_odd = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward_activated(self, x_relu: torch.Tensor) -> torch.Tensor:
        return _call(self.bn, self.before_final_bn(x_relu))

    def final_bn(self) -> nn.BatchNorm2d | None:
        return self.bn

    def phase_offsets(self) -> tuple[int, ...]:
        return (0, 1)

    def before_final_bn(self, x_relu: torch.Tensor,
                        phases: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        if exporting() or not torch.is_grad_enabled():
            # Shift by one pixel; the zero pad on the far side keeps odd sizes aligned and
            # is never sampled by the stride-2 conv when the size is even. (Module calls:
            # MAC counting hooks them.)
            shifted = F.pad(x_relu[:, :, 1:, 1:], (0, 1, 0, 1))
            return cat_channels([self.conv_even(x_relu), self.conv_odd(shifted)])
        # The same products: a 1×1 stride-2 conv reads pixel phase 0 of its input, and of
        # the shifted input phase 1 (padded on the far side for odd sizes). On the phases
        # the convs run at stride 1, and backward scatters into one zero map instead of
        # zero-filling full-size gradients for the stride, the shift and the pad (measured
        # in a DARTS search step: those fills were among its largest memory writes).
        if phases is None or len(phases) < 2:
            phases = pixel_phases(x_relu, 2, (0, 1))
        even, odd = phases[0], phases[1]
        if odd.shape[-2:] != even.shape[-2:]:
            odd = F.pad(odd, (0, even.shape[-1] - odd.shape[-1], 0,
                              even.shape[-2] - odd.shape[-2]))
        return cat_channels([pointwise(even, self.conv_even.weight),
                             pointwise(odd, self.conv_odd.weight)])
