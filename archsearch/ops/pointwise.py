"""1×1 convolutions as matrix products on channels-last maps.

A bias-free 1×1 conv of a channels-last (B, C, H, W) map is the matrix product of its
(B·H·W, C) pixel matrix, a view, with the transposed (C_out, C) weight; its input gradient
is the gradient's pixel matrix times the weight, and its weight gradient the gradient's
pixel matrix transposed times the input's. The supernet runs thousands of small 1×1 convs
per search step (every sep/dil conv has one or two, every cell input one), and at the
DARTS shapes a plain matrix product costs less than oneDNN's convolution primitives.
Measured on 2 CPU cores (batch 16, microseconds per call, conv against mm):

| map, channels | forward    | input gradient | weight gradient |
|---------------|------------|----------------|-----------------|
| 32×32, 16     | 102 / 125  | 124 / 101      | 125 / 124       |
| 16×16, 32     | 76 / 56    | 84 / 62        | 89 / 64         |
| 8×8, 64       | 77 / 58    | 94 / 54        | 99 / 64         |

So the product runs the input gradient everywhere, and the forward pass and weight
gradient on maps of at most `MM_MAX_PIXELS` pixels. The same sums, in another order:
results agree to rounding. Maps in another layout, and tracing for export, use the conv.

Where archsearch's native kernels are built, the forward pass and the input gradient of
float32 channels-last maps with a multiple of 16 output channels take its product instead
(`_pointwise.c`: 1.1–1.9× faster than either at these shapes, `benchmarks/pointwise.py`);
the weight gradient stays with the routes above.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from archsearch.ops import native
from archsearch.ops.layout import exporting

MM_MAX_PIXELS = 16 * 16


def _by_mm(t: Tensor) -> bool:
    return (t.dim() == 4 and t.device.type == "cpu" and not exporting()
            and t.is_contiguous(memory_format=torch.channels_last))


def _pixels(t: Tensor) -> Tensor:
    """(B, C, H, W) channels-last → its (B·H·W, C) pixel matrix (a view)."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


# Below, the products take the (B, H, W, C) permutation of a map, a contiguous view, whole:
# `F.linear` and `matmul` fold it to a matrix in C++. Measured: 6-15 µs less per call than
# reshaping to the pixel matrix and back in Python (thousands of calls per search step).

def _native(t: Tensor, weight: Tensor, out_channels: int) -> bool:
    """Whether archsearch's native 1×1 product (`_pointwise.c`) takes `t` into
    `out_channels` channels with this weight."""
    return (weight.dtype == torch.float32 and weight.device.type == "cpu"
            and native.pointwise_applies(t, out_channels) and not exporting())


def _native_forward(x: Tensor, weight: Tensor) -> Tensor:
    # (C_out, C, 1, 1) → the product's (K, N) = (C, C_out) matrix: a small copy.
    return native.pointwise_product_unchecked(
        x, weight.reshape(weight.shape[0], -1).t().contiguous())


class _NativePointwise(torch.autograd.Function):
    """The 1×1 conv by the native product; backward as below (input gradient native too)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return _native_forward(x, weight)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad
        if torch.is_grad_enabled():  # double backward: rebuild the graph, differentiate it
            inputs = [t for t, need in ((x, need_x), (weight, need_w)) if need]
            with torch.enable_grad():
                grads = iter(torch.autograd.grad(F.conv2d(x, weight), inputs, grad_out,
                                                 create_graph=True))
            return (next(grads) if need_x else None), (next(grads) if need_w else None)
        return (pointwise_input_grad(grad_out, weight) if need_x else None,
                pointwise_weight_grad(grad_out, x, weight) if need_w else None)


def pointwise(x: Tensor, weight: Tensor) -> Tensor:
    """`F.conv2d(x, weight)` for a (C_out, C, 1, 1) weight; differentiable (twice, too)."""
    if _native(x, weight, weight.shape[0]):
        if not torch.is_grad_enabled():
            return _native_forward(x, weight)
        return _NativePointwise.apply(x, weight)
    if _by_mm(x) and x.shape[-1] * x.shape[-2] <= MM_MAX_PIXELS:
        return F.linear(x.permute(0, 2, 3, 1), weight.view(weight.shape[0], -1)
                        ).permute(0, 3, 1, 2)
    return F.conv2d(x, weight)


def pointwise_input_grad(grad_out: Tensor, weight: Tensor) -> Tensor:
    """∂L/∂x of `pointwise(x, weight)` from ∂L/∂out: the 1×1 conv with the transposed
    matrix, (B, C_out, H, W) → (B, C, H, W)."""
    if not torch.is_grad_enabled() and _native(grad_out, weight, weight.shape[1]):
        return native.pointwise_product_unchecked(
            grad_out, weight.reshape(weight.shape[0], -1).contiguous())  # (C_out, C)
    if _by_mm(grad_out):
        return torch.matmul(grad_out.permute(0, 2, 3, 1), weight.view(weight.shape[0], -1)
                            ).permute(0, 3, 1, 2)
    return F.conv2d(grad_out, weight.transpose(0, 1))


def pointwise_weight_grad(grad_out: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """∂L/∂weight of `pointwise(x, weight)` from ∂L/∂out, shaped like `weight`."""
    if (_by_mm(grad_out) and _by_mm(x)
            and x.shape[-1] * x.shape[-2] <= MM_MAX_PIXELS):
        return torch.mm(_pixels(grad_out).t(), _pixels(x)).view(weight.shape)
    return torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, (1, 1), (0, 0), (1, 1), False, (0, 0), 1,
        (False, True, False))[1]
