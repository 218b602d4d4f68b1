"""The middle of a separable conv, BN → ReLU → depthwise → 1×1, keeping only the BN's input.

A sep conv is  ReLU → dw → pw → BN → ReLU → dw → pw → BN  (DARTS's code). Autograd keeps,
for its second half, the first BN's input z (for the BN backward) *and* r = ReLU(BN(z)) (for
the ReLU mask and the depthwise weight gradient): two activations of the same size. r is a
cheap elementwise function of z and the BN's per-channel statistics, so this step keeps z
and the statistics only and rebuilds what it needs in backward:

* the ReLU mask as  z − μ > 0  (r > 0 ⟺ (z − μ)·σ⁻¹ > 0, since σ⁻¹ > 0), one subtraction;
* r itself, one elementwise pass, only when a weight gradient is asked for. The
  architecture-gradient passes of DARTS ask for none, so they never rebuild anything.

The depthwise output dw(r) is not kept either: it is recomputed when the 1×1 weight
gradient is needed, as in `depthwise_pointwise`. For the supernet that removes one of the
three activations a sep conv kept beyond its input.

Only for BNs that normalise with batch statistics and have no affine parameters (the
supernet's); double backward (the exact unrolled gradient) rebuilds the forward with
autograd, so the second derivative through the batch statistics is exact.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archsearch.ops import native
from archsearch.ops.batch_norm import batch_norm
from archsearch.ops.depthwise import (
    RECOMPUTE_MIN_PIXELS,
    DepthwiseConv2d,
    _depthwise,
    depthwise_pointwise_backward,
)
from archsearch.ops.layout import exporting
from archsearch.ops.pointwise import pointwise


class _NormReluDepthwisePointwise(torch.autograd.Function):
    """pw(dw(ReLU(BN(z)))) with a non-affine batch-statistics BN; saves z and BN statistics."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, w_dw: Tensor, w_pw: Tensor, eps: float, stride: int,
                padding: int, dilation: int) -> Tensor:
        # (B, C, H, W) → ReLU(normalised), plus (2, C): batch mean and inverse std.
        fused = native.batch_norm_forward(z, None, eps, relu=True)
        if fused is not None:
            r, stats = fused
        else:
            r, mean, invstd = torch.native_batch_norm(z, None, None, None, None, True, 0.0, eps)
            r, stats = r.relu_(), torch.stack((mean, invstd))
        ctx.save_for_backward(z, stats, w_dw, w_pw)
        ctx.config = (eps, stride, padding, dilation)
        return pointwise(_depthwise(r, w_dw, stride, padding, dilation), w_pw)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        z, stats, w_dw, w_pw = ctx.saved_tensors
        eps, stride, padding, dilation = ctx.config
        need_z, need_dw, need_pw = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # double backward: rebuild the graph, differentiate it
            return _backward_by_autograd(ctx, grad_out)
        r = _rebuild(z, stats) if (need_dw or need_pw) else None
        # Without a weight gradient the depthwise backward reads only z's shape and layout.
        grad_r, grad_dw, grad_pw = depthwise_pointwise_backward(
            grad_out, r, z, w_dw, w_pw, stride, padding, dilation, need_z, need_dw, need_pw)
        grad_z = _norm_relu_input_grad(grad_r, z, stats, eps) if need_z else None
        return grad_z, grad_dw, grad_pw, None, None, None, None


def _channel(stat: Tensor, like: Tensor) -> Tensor:
    return stat.view(1, -1, 1, 1).to(like.dtype)


def _rebuild(z: Tensor, stats: Tensor) -> Tensor:
    """ReLU(BN(z)) from the saved (2, C) statistics, in z's memory layout."""
    fused = native.batch_norm_forward(z, None, 0.0, relu=True, stats=stats)
    if fused is not None:
        return fused[0]
    mean, invstd = stats
    return ((z - _channel(mean, z)) * _channel(invstd, z)).relu_()


def _norm_relu_input_grad(grad_r: Tensor, z: Tensor, stats: Tensor, eps: float) -> Tensor:
    """∂L/∂z of r = ReLU(BN(z)) from ∂L/∂r: the native kernel reads the ReLU's mask
    (z > μ) from z itself; PyTorch's route thresholds z − μ, then runs BN's backward."""
    fused = native.batch_norm_backward(grad_r, z, stats, None, True, False, relu=True)
    if fused is not None:
        return fused[0]
    mean, invstd = stats
    # ReLU's backward: zero where z ≤ μ. Measured on 2 CPU cores, channels-last:
    # thresholding z − μ is 5-12× faster than masked_fill with the broadcast mask.
    grad_n = torch.ops.aten.threshold_backward(grad_r, z - _channel(mean, z), 0)
    return torch.ops.aten.native_batch_norm_backward(
        grad_n, z, None, None, None, mean, invstd, True, eps, [True, False, False])[0]


def _backward_by_autograd(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
    z, _, w_dw, w_pw = ctx.saved_tensors
    eps, stride, padding, dilation = ctx.config
    inputs = [t for t, need in zip((z, w_dw, w_pw), ctx.needs_input_grad[:3], strict=True)
              if need]
    with torch.enable_grad():
        r = F.relu(F.batch_norm(z, None, None, None, None, True, 0.0, eps))
        out = F.conv2d(F.conv2d(r, w_dw, None, stride, padding, dilation, r.shape[1]), w_pw)
        grads = iter(torch.autograd.grad(out, inputs, grad_out, create_graph=True))
    return (*(next(grads) if need else None for need in ctx.needs_input_grad[:3]),
            None, None, None, None)


def fusable_norm(bn: nn.Module) -> bool:
    """Whether `bn` is a BN this step can stand in for: 2-D, no affine parameters, batch
    statistics always (no running buffers), as in the supernet."""
    return (isinstance(bn, nn.BatchNorm2d) and not bn.affine and not bn.track_running_stats
            and bn.running_mean is None)


def norm_relu_depthwise_pointwise(bn: nn.BatchNorm2d, dw: DepthwiseConv2d, pw: nn.Conv2d,
                                  z: Tensor) -> Tensor:
    """`pw(dw(relu(bn(z))))`; while recording gradients on CPU, for square maps of at least
    `RECOMPUTE_MIN_PIXELS` pixels, keeping only z and the BN statistics for backward.
    `bn` must satisfy `fusable_norm`."""
    if not torch.is_grad_enabled():  # module calls: MAC counting hooks them
        return pw(dw(F.relu(bn(z))))
    if (z.device.type != "cpu" or exporting()
            or z.shape[-1] != z.shape[-2] or z.shape[-1] * z.shape[-2] < RECOMPUTE_MIN_PIXELS):
        return pointwise(dw(batch_norm(z, None, bn.eps, relu=True)), pw.weight)
    return _NormReluDepthwisePointwise.apply(z, dw.weight, pw.weight, bn.eps, dw.stride[0],
                                             dw.padding[0], dw.dilation[0])
