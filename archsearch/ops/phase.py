"""Pixel phases of a feature map: x[:, :, a::s, a::s], computed once and shared.

A stride-s conv that reads only every s-th pixel of its input is a stride-1 conv of one
pixel phase of that input, on a map s² times smaller. Two families of DARTS ops do so:

* a dilated depthwise conv whose stride equals its dilation and whose padding is a multiple
  of it (the reduction cells' `dil_conv` edges from the cell inputs) reads phase 0 only: its
  output pixel h reads input rows s·h + d·i − p = s·(h + i − p/s);
* `FactorizedReduce` (the strided `skip_connect`, and the preprocessing of a cell input one
  reduction behind) is two 1×1 stride-2 convs, one on the input and one on the input shifted
  by one pixel: phase 0 and phase 1.

Every edge that leaves a reduction cell's input node applies these ops to the same ReLU'd
map, so the supernet takes the phases once per node and hands them to every op
(`SourceFeatures.phases`): one small copy per phase instead of one per op, and in backward
one scatter into a zero map instead of one zero-filled, full-size gradient per op, added up.
The phases come out in the input's memory layout; their gradients go back in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from archsearch.ops.layout import memory_format


class _PixelPhases(torch.autograd.Function):
    """(x[:, :, a::s, a::s] for a in offsets), each contiguous in x's layout; backward
    writes the phases' gradients into one zero map (the phases are disjoint)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, stride: int, offsets: tuple[int, ...]) -> tuple[Tensor, ...]:
        ctx.shape, ctx.stride, ctx.offsets, ctx.layout = x.shape, stride, offsets, memory_format(x)
        # Unused phases give None gradients instead of zero maps.
        ctx.set_materialize_grads(False)
        return tuple(x[:, :, a::stride, a::stride].contiguous(memory_format=ctx.layout)
                     for a in offsets)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, None, None]:
        present = [(a, g) for a, g in zip(ctx.offsets, grads, strict=True) if g is not None]
        if not present:
            return None, None, None
        s = ctx.stride
        like = present[0][1]
        # Differentiable (a zero map and slice assignments), so double backward works.
        grad_x = torch.empty(ctx.shape, dtype=like.dtype, device=like.device,
                             memory_format=ctx.layout).zero_()
        for a, g in present:
            grad_x[:, :, a::s, a::s] = g
        return grad_x, None, None


def pixel_phases(x: Tensor, stride: int, offsets: Sequence[int]) -> tuple[Tensor, ...]:
    """x[:, :, a::stride, a::stride] for each offset a, contiguous in x's memory layout.

    (B, C, H, W) → one (B, C, ⌈(H − a)/s⌉, ⌈(W − a)/s⌉) map per offset. Offsets must be
    distinct and smaller than the stride.
    """
    offsets = tuple(offsets)
    if len(set(offsets)) != len(offsets) or not all(0 <= a < stride for a in offsets):
        raise ValueError(f"pixel phase offsets must be distinct and in [0, {stride}), "
                         f"got {offsets}")
    if not torch.is_grad_enabled() or not x.requires_grad:
        return tuple(x[:, :, a::stride, a::stride].contiguous(memory_format=memory_format(x))
                     for a in offsets)
    return _PixelPhases.apply(x, stride, offsets)


def stride_phase(x: Tensor, stride: int) -> Tensor:
    """The pixels a conv with stride s = dilation d and padding p (a multiple of s) reads.

    Output pixel h reads input rows s·h + d·i − p = s·(h + i − p/s): the even phase when
    s = d = 2. So the conv equals an *undilated* stride-1 conv (padding p/s) of
    x[:, :, ::s, ::s]: the same products, on a map s² times smaller, with oneDNN's fast
    undilated kernels instead of its GEMM fallback for strided dilated ones (measured on
    2 CPU cores: 1.1-2.4 ms per call for the DARTS reduction cells' dil convs at batch 16).
    (B, C, H, W) → (B, C, ⌈H/s⌉, ⌈W/s⌉), in x's memory layout.
    """
    return pixel_phases(x, stride, (0,))[0]
