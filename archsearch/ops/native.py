"""Native CPU kernels, where PyTorch's CPU build has no fast one.

`archsearch.ops._kernels` is a small C extension (`_kernels.c`) built when the package is
installed, if a C compiler with OpenMP is at hand (`setup.py`; it is optional). Without
it every function here returns None and callers use PyTorch's kernels: the same results up
to float32 rounding, only slower. `available()` tells which.

One kernel so far: the weight gradient of a depthwise convolution on channels-last float32
maps. oneDNN's fast depthwise weight-gradient kernel covers undilated 3×3 kernels only;
5×5 and dilated kernels (half of the DARTS ops) run its generic grouped kernel. Measured on
2 CPU cores at the DARTS search shapes (batch 16, ms per call, the best PyTorch route
against this one; `benchmarks/depthwise_weight_grad.py`): 5×5 at 32²/16²/8²:
0.69/0.55/0.31 against 0.23/0.11/0.05; dilated 5×5 at 8²: 0.49 against 0.04; 3×3 at 32²:
0.10 against 0.10.
"""

from __future__ import annotations

import torch
from torch import Tensor

try:  # after torch: the extension then shares torch's OpenMP runtime and thread pool
    from archsearch.ops import _kernels
except ImportError:  # not built (no compiler at install time): PyTorch's kernels serve
    _kernels = None


def available() -> bool:
    """Whether the native kernels were built and load."""
    return _kernels is not None


def depthwise_weight_grad(grad_out: Tensor, x: Tensor, kernel_size: int, stride: int,
                          padding: int, dilation: int) -> Tensor | None:
    """∂L/∂weight, (C, 1, k, k), of `F.conv2d(x, weight, None, stride, padding, dilation,
    groups=C)` from ∂L/∂out; square kernel, the same stride/padding/dilation both ways.

    None where the native kernel does not apply: not built, not float32 on CPU, `x` not
    channels-last, or autograd recording (double backward needs differentiable ops).
    `grad_out` is made channels-last if it is not.
    """
    if (_kernels is None or torch.is_grad_enabled() or x.dim() != 4 or x.numel() == 0
            or x.dtype != torch.float32 or grad_out.dtype != torch.float32
            or x.device.type != "cpu" or grad_out.device.type != "cpu"
            or not x.is_contiguous(memory_format=torch.channels_last)):
        return None
    n, c, h, w = x.shape
    span = dilation * (kernel_size - 1)
    rows = (h + 2 * padding - span - 1) // stride + 1
    cols = (w + 2 * padding - span - 1) // stride + 1
    if grad_out.shape != (n, c, rows, cols):
        raise ValueError(f"depthwise weight gradient: output gradient {tuple(grad_out.shape)} "
                         f"does not fit input {tuple(x.shape)} (expected {(n, c, rows, cols)})")
    grad_out = grad_out.contiguous(memory_format=torch.channels_last)
    out = x.new_empty(c, 1, kernel_size, kernel_size)  # contiguous: the kernel writes (C, k, k)
    _kernels.depthwise_weight_grad(x.data_ptr(), grad_out.data_ptr(), out.data_ptr(), n, h, w,
                                   c, rows, cols, kernel_size, stride, dilation, padding)
    return out
