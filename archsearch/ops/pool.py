"""Pooling operations of the DARTS space (3×3, padding 1; average pooling excludes padding)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
