"""Batch norm with batch statistics (the supernet's BNs) through archsearch's native kernels.

The DARTS supernet normalises every op's output with a BN that has no affine parameters
and always uses the statistics of the batch at hand; the op weight softmax(α)_o rides on it
as the BN's weight. A second-order search step at batch 16 runs about 4,600 of these
forward and as many backward. PyTorch's CPU kernels for them take 2-5× the time of one
pass over the map on channels-last maps with 16-64 channels; the native ones
(`archsearch.ops.native`, `_batch_norm.c`) read each map twice (three times for the
forward's two-pass variance) and were measured, per call at those shapes, 1.3-2.7× faster
forward and 1.0-1.9× backward (the ReLU forms at the high ends), and up to 4× for a sum
into a node (`benchmarks/batch_norm.py`).

`batch_norm(x, weight, eps, relu)` equals `F.batch_norm(x, None, None, weight, None, True,
0.0, eps)` (then ReLU) up to float32 rounding. With `relu=True` nothing more than x and the
statistics is kept for backward: the ReLU's mask is x > mean, read from x. Where the kernels
do not apply (not built, not a channels-last float32 CPU map, while tracing for export) it
is that PyTorch expression. Double backward (the exact unrolled gradient) rebuilds the
forward with autograd.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from archsearch.ops import native
from archsearch.ops.layout import exporting


class _BatchNormFunction(torch.autograd.Function):
    """y = BN(x)·weight (then ReLU), or `out` += BN(x)·weight in place; saves x, the
    weight and the (2, C) statistics."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, out: Tensor | None, eps: float,
                relu: bool) -> Tensor:
        if out is not None:
            ctx.mark_dirty(out)
        y, stats = native.batch_norm_forward_unchecked(x, weight, eps, relu, None, out)
        ctx.save_for_backward(x, weight, stats)
        ctx.config = (eps, relu)
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, stats = ctx.saved_tensors
        eps, relu = ctx.config
        need_x, need_w, need_out = ctx.needs_input_grad[:3]
        grad_out = grad_y if need_out else None  # ∂(out + y)/∂out = 1
        if torch.is_grad_enabled():  # double backward: rebuild the graph, differentiate it
            return (*_grads_by_autograd(x, weight, eps, relu, grad_y, need_x, need_w),
                    grad_out, None, None)
        need_w = need_w and weight is not None
        grad_x = grad_w = None
        if need_x or need_w:
            grad_x, grad_w = native.batch_norm_backward_unchecked(grad_y, x, stats, weight,
                                                                  need_x, need_w, relu)
        return grad_x, grad_w, grad_out, None, None


def _reference(x: Tensor, weight: Tensor | None, eps: float, relu: bool) -> Tensor:
    y = F.batch_norm(x, None, None, weight, None, True, 0.0, eps)
    return F.relu(y) if relu else y


def _grads_by_autograd(x: Tensor, weight: Tensor | None, eps: float, relu: bool,
                       grad_y: Tensor, need_x: bool, need_w: bool
                       ) -> tuple[Tensor | None, Tensor | None]:
    inputs = [t for t, need in ((x, need_x), (weight, need_w)) if need and t is not None]
    with torch.enable_grad():
        grads = iter(torch.autograd.grad(_reference(x, weight, eps, relu), inputs, grad_y,
                                         create_graph=True))
    return (next(grads) if need_x else None,
            next(grads) if need_w and weight is not None else None)


def batch_norm(x: Tensor, weight: Tensor | None, eps: float, relu: bool = False) -> Tensor:
    """`F.batch_norm(x, None, None, weight, None, True, 0.0, eps)`, then ReLU if `relu`:
    batch statistics, no bias, an optional (C,) weight; differentiable (twice, too)."""
    if exporting() or not native.batch_norm_applies(x, weight):
        return _reference(x, weight, eps, relu)
    if not torch.is_grad_enabled():
        return native.batch_norm_forward_unchecked(x, weight, eps, relu, None, None)[0]
    return _BatchNormFunction.apply(x, weight, None, eps, relu)


def batch_norm_add_(out: Tensor, x: Tensor, weight: Tensor | None, eps: float) -> Tensor:
    """`out.add_(batch_norm(x, weight, eps))` in one pass over the maps: no temporary for
    the normalised map, and no separate addition. Returns `out`, changed in place, which
    (as for `add_`) no backward step may need."""
    if exporting() or not native.batch_norm_applies(x, weight, out):
        return out.add_(_reference(x, weight, eps, False))
    if not torch.is_grad_enabled():
        native.batch_norm_forward_unchecked(x, weight, eps, False, None, out)
        return out
    return _BatchNormFunction.apply(x, weight, out, eps, False)
