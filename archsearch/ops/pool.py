"""Pooling operations of the DARTS space (3×3, padding 1; average pooling excludes padding).

The supernet pools every node once per pooling op (shared by the edges leaving it) with
`pool_3x3`: archsearch's native kernels (`_pool.c`) where they apply, up to 3× faster than
PyTorch's channels-last ones at the search shapes (`benchmarks/pooling.py`) and equal to
them bit for bit, and otherwise PyTorch's. Either way only the input is kept for backward,
no index map.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archsearch.ops import native
from archsearch.ops.layout import exporting


def max_pool_3x3(stride: int) -> nn.Module:
    return nn.MaxPool2d(3, stride=stride, padding=1)


def avg_pool_3x3(stride: int) -> nn.Module:
    # count_include_pad=False: the padded zeros do not count towards the average.
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


class _MaxPoolKeepingInput(torch.autograd.Function):
    """3×3 max pooling, padding 1, whose backward recomputes the argmax positions.

    Autograd's max pooling keeps an int64 index per output element (twice the bytes of a
    float32 activation) on top of its input. The supernet keeps the input anyway (the skip
    edge needs it), so recomputing the indices in backward, one pooling pass, frees them.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, stride: int) -> Tensor:
        ctx.save_for_backward(x)
        ctx.stride = stride
        return F.max_pool2d(x, 3, stride, 1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None]:
        (x,) = ctx.saved_tensors
        window, stride, padding, dilation = [3, 3], [ctx.stride] * 2, [1, 1], [1, 1]
        if torch.is_grad_enabled():  # double backward: through autograd's own max pooling
            with torch.enable_grad():
                out = F.max_pool2d(x, 3, ctx.stride, 1)
                return torch.autograd.grad(out, x, grad_out, create_graph=True)[0], None
        _, indices = torch.ops.aten.max_pool2d_with_indices(x, window, stride, padding,
                                                            dilation)
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad_out, x, window, stride, padding, dilation, False, indices), None


def max_pool_3x3_lean(x: Tensor, stride: int) -> Tensor:
    """`F.max_pool2d(x, 3, stride, 1)`; while recording gradients, without keeping indices."""
    if not torch.is_grad_enabled() or not x.requires_grad:
        return F.max_pool2d(x, 3, stride, 1)
    return _MaxPoolKeepingInput.apply(x, stride)


class _NativePool3x3(torch.autograd.Function):
    """3×3 pooling, padding 1, by the native kernels; keeps the input only. The max
    pooling's backward finds the winners again (natively) for PyTorch's backward kernel."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, stride: int, is_max: bool) -> Tensor:
        ctx.save_for_backward(x)
        ctx.config = (stride, is_max)
        return native.pool_3x3_unchecked(x, stride, is_max)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None]:
        (x,) = ctx.saved_tensors
        stride, is_max = ctx.config
        if torch.is_grad_enabled():  # double backward: through autograd's own pooling
            with torch.enable_grad():
                out = _pytorch_pool(x, stride, is_max)
                return torch.autograd.grad(out, x, grad_out, create_graph=True)[0], None, None
        if not is_max:
            return native.avg_pool_3x3_backward_unchecked(grad_out, x, stride), None, None
        indices = native.max_pool_3x3_indices_unchecked(x, stride)
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad_out.contiguous(memory_format=torch.channels_last), x, [3, 3], [stride] * 2,
            [1, 1], [1, 1], False, indices), None, None


def _pytorch_pool(x: Tensor, stride: int, is_max: bool) -> Tensor:
    if is_max:
        return F.max_pool2d(x, 3, stride, 1)
    return F.avg_pool2d(x, 3, stride=stride, padding=1, count_include_pad=False)


def pool_3x3(x: Tensor, stride: int, kind: str) -> Tensor:
    """`F.max_pool2d(x, 3, stride, 1)` (`kind` "max") or `F.avg_pool2d(x, 3, stride, 1,
    count_include_pad=False)` ("avg"), differentiable (twice, too), keeping only `x` for
    backward."""
    if kind not in ("max", "avg"):
        raise ValueError(f"pool_3x3: kind must be 'max' or 'avg', got {kind!r}")
    is_max = kind == "max"
    if stride not in (1, 2) or exporting() or not native.pool_applies(x):
        return max_pool_3x3_lean(x, stride) if is_max else _pytorch_pool(x, stride, False)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return native.pool_3x3_unchecked(x, stride, is_max)
    return _NativePool3x3.apply(x, stride, is_max)
