"""A depthwise convolution whose backward pass is fast on CPU.

On CPU, oneDNN's backward of a depthwise convolution is 3–10× slower than its forward, and
DARTS spends most of its time there (every sep/dil conv starts with one). The input
gradient of a depthwise conv is itself a depthwise conv with the kernel rotated by 180°
(or a transposed conv when strided), so we compute it with the fast forward kernel, and ask
the native backward for the weight gradient only — and only when autograd needs it. The
architecture-gradient passes of DARTS need no weight gradient at all, so they skip it.

The backward is written with differentiable ops, so double backward (the exact unrolled
gradient) works through it. The module is a plain `nn.Conv2d` (same parameters, same
state_dict), so discrete networks keep their published parameter counts, and it is a
plain convolution while being traced for export (TorchScript, ONNX).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _DepthwiseConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, stride: int, padding: int,
                dilation: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.config = (stride, padding, dilation)
        return F.conv2d(x, weight, None, stride, padding, dilation, groups=x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.config
        channels = x.shape[1]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _input_grad(grad_out, weight, x.shape, stride, padding, dilation)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, (stride, stride), (padding, padding),
                (dilation, dilation), False, (0, 0), channels, (False, True, False))[1]
        return grad_x, grad_w, None, None, None


def _input_grad(grad_out: Tensor, weight: Tensor, input_shape: torch.Size, stride: int,
                padding: int, dilation: int) -> Tensor:
    channels = input_shape[1]
    kernel = weight.shape[-1]
    if stride == 1 and 2 * padding == dilation * (kernel - 1):
        # "same" conv: the adjoint is the same conv with the kernel rotated by 180°.
        return F.conv2d(grad_out, weight.flip(-1, -2), None, 1, padding, dilation,
                        groups=channels)
    size = input_shape[-1]
    covered = (grad_out.shape[-1] - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1
    return F.conv_transpose2d(grad_out, weight, None, stride, padding,
                              output_padding=size - covered, groups=channels,
                              dilation=dilation)


class DepthwiseConv2d(nn.Conv2d):
    """`nn.Conv2d(c, c, k, groups=c, bias=False)` with the fast backward above.

    Square kernels, equal stride/padding/dilation in both directions, square inputs.
    """

    def __init__(self, channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
                 dilation: int = 1) -> None:
        super().__init__(channels, channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or _exporting():  # the tricks below: CPU, untraced only
            return super().forward(x)
        if self.stride[0] > 1 and self.dilation[0] > 1:
            # Measured on 2 CPU cores: oneDNN's backward of strided dilated depthwise convs
            # is 2-3× slower in channels-last than in NCHW, conversions included.
            channels_last = x.is_contiguous(memory_format=torch.channels_last)
            y = super().forward(x.contiguous())
            return y.contiguous(memory_format=torch.channels_last) if channels_last else y
        # Measured on 2 CPU cores: the rewrite pays off for dilated stride-1 kernels in
        # float32 only; oneDNN's own backward is as fast or faster for the others, and in
        # float64 (no oneDNN kernels) the dilated fallback makes it far slower.
        if (self.stride[0] != 1 or self.dilation[0] == 1 or x.dtype != torch.float32
                or x.shape[-1] != x.shape[-2]):
            return super().forward(x)
        return _DepthwiseConvFunction.apply(x, self.weight, self.stride[0], self.padding[0],
                                            self.dilation[0])


def _exporting() -> bool:
    """Whether the forward pass is being traced for TorchScript or ONNX export.

    A traced graph cannot hold the Python autograd Function, and the shape tests above
    would be baked into it; the plain convolution computes the same forward values.
    """
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
