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


def batch_norm_applies(x: Tensor, weight: Tensor | None = None,
                       out: Tensor | None = None) -> bool:
    """Whether the batch-norm kernels take `x` (and `weight`, `out`): built, `x` a 4-D
    channels-last float32 CPU map with more than one value per channel, `weight` None or a
    contiguous float32 (C,) vector, `out` None or a map like `x`."""
    return (_kernels is not None and x.dtype == torch.float32 and x.device.type == "cpu"
            and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
            and x.numel() > x.shape[1] > 0
            and (weight is None or (weight.dtype == torch.float32 and weight.device.type == "cpu"
                                    and weight.shape == x.shape[1:2] and weight.is_contiguous()))
            and (out is None or (out.dtype == torch.float32 and out.shape == x.shape
                                 and out.is_contiguous(memory_format=torch.channels_last))))


def _check_stats(stats: Tensor, channels: int) -> None:
    if (stats.shape != (2, channels) or stats.dtype != torch.float32
            or stats.device.type != "cpu" or not stats.is_contiguous()):
        raise ValueError(f"batch norm: the statistics must be a contiguous float32 CPU tensor "
                         f"of shape (2, {channels}), got {tuple(stats.shape)} {stats.dtype}")


def batch_norm_forward(x: Tensor, weight: Tensor | None, eps: float, relu: bool = False,
                       stats: Tensor | None = None, out: Tensor | None = None
                       ) -> tuple[Tensor, Tensor] | None:
    """(y, stats) of a batch-statistics batch norm of `x` (B, C, H, W): y =
    (x − mean)·invstd·weight, then ReLU if `relu`; stats is (2, C): the mean and the
    inverse standard deviation over (B, H, W), the variance biased, as
    `torch.native_batch_norm` in training mode computes them.

    `stats`, optional, are statistics to normalise with instead of computing them.
    `out`, optional, a map like `x`: y is added to it in place (no ReLU then), and y is
    `out`. None where the kernel does not apply (`batch_norm_applies`) or while autograd
    records.
    """
    if torch.is_grad_enabled() or not batch_norm_applies(x, weight, out):
        return None
    if out is not None and relu:
        raise ValueError("batch norm: ReLU cannot follow a sum into `out`")
    if stats is not None:
        _check_stats(stats, x.shape[1])
    return batch_norm_forward_unchecked(x, weight, eps, relu, stats, out)


def batch_norm_forward_unchecked(x: Tensor, weight: Tensor | None, eps: float, relu: bool,
                                 stats: Tensor | None, out: Tensor | None
                                 ) -> tuple[Tensor, Tensor]:
    """`batch_norm_forward` for callers that checked `batch_norm_applies` (and the rest):
    it runs thousands of times per search step, so every check counts."""
    c = x.shape[1]
    given = stats is not None
    if stats is None:
        stats = x.new_empty(2, c)
    y = torch.empty_like(x) if out is None else out  # channels-last, like x
    at = stats.data_ptr()
    _kernels.batch_norm_forward(x.data_ptr(), y.data_ptr(), at, at + 4 * c,
                                0 if weight is None else weight.data_ptr(), x.numel() // c, c,
                                eps, relu, given, out is not None)
    return y, stats


def batch_norm_backward(grad_y: Tensor, x: Tensor, stats: Tensor, weight: Tensor | None,
                        need_input: bool, need_weight: bool, relu: bool = False
                        ) -> tuple[Tensor | None, Tensor | None] | None:
    """(∂L/∂x, ∂L/∂weight) of `batch_norm_forward(x, weight, eps, relu)` from ∂L/∂y and
    the forward's statistics; each None unless asked for (∂L/∂weight also without a
    weight: the gradient a weight of ones would get). None where the kernel does not apply
    (see `batch_norm_forward`); `grad_y` is made channels-last if it is not."""
    if (torch.is_grad_enabled() or not batch_norm_applies(x, weight)
            or not (need_input or need_weight)):
        return None
    if grad_y.shape != x.shape or grad_y.dtype != x.dtype or grad_y.device != x.device:
        raise ValueError(f"batch norm backward: gradient {tuple(grad_y.shape)} "
                         f"{grad_y.dtype} does not fit input {tuple(x.shape)} {x.dtype}")
    _check_stats(stats, x.shape[1])
    return batch_norm_backward_unchecked(grad_y, x, stats, weight, need_input, need_weight, relu)


def batch_norm_backward_unchecked(grad_y: Tensor, x: Tensor, stats: Tensor,
                                  weight: Tensor | None, need_input: bool, need_weight: bool,
                                  relu: bool) -> tuple[Tensor | None, Tensor | None]:
    """`batch_norm_backward` for callers that checked its arguments."""
    c = x.shape[1]
    grad_y = grad_y.contiguous(memory_format=torch.channels_last)
    grad_x = torch.empty_like(x) if need_input else None
    grad_w = x.new_empty(c) if need_weight else None
    at = stats.data_ptr()
    _kernels.batch_norm_backward(
        grad_y.data_ptr(), x.data_ptr(), at, at + 4 * c,
        0 if weight is None else weight.data_ptr(), 0 if grad_x is None else grad_x.data_ptr(),
        0 if grad_w is None else grad_w.data_ptr(), x.numel() // c, c, relu)
    return grad_x, grad_w


def pool_applies(x: Tensor) -> bool:
    """Whether the 3×3 pooling kernels take `x`: built, a non-empty 4-D channels-last
    float32 CPU map."""
    return (_kernels is not None and x.dtype == torch.float32 and x.device.type == "cpu"
            and x.dim() == 4 and x.numel() > 0
            and x.is_contiguous(memory_format=torch.channels_last))


def pool_3x3(x: Tensor, stride: int, kind: str) -> Tensor | None:
    """3×3 pooling with padding 1 of `x` (B, C, H, W): `kind` "max" (as `F.max_pool2d(x, 3,
    stride, 1)`) or "avg" (`F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)`);
    (B, C, (H − 1)/stride + 1, (W − 1)/stride + 1), channels-last. None where the kernel
    does not apply (`pool_applies`) or while autograd records."""
    _check_pool(stride, kind)
    if torch.is_grad_enabled() or not pool_applies(x):
        return None
    return pool_3x3_unchecked(x, stride, kind == "max")


def avg_pool_3x3_backward(grad_y: Tensor, x: Tensor, stride: int) -> Tensor | None:
    """∂L/∂x of `pool_3x3(x, stride, "avg")` from ∂L/∂y (made channels-last if it is not).
    None where the kernel does not apply."""
    _check_pool(stride, "avg")
    if torch.is_grad_enabled() or not pool_applies(x):
        return None
    n, c, h, w = x.shape
    if grad_y.shape != (n, c, (h - 1) // stride + 1, (w - 1) // stride + 1):
        raise ValueError(f"pooling backward: gradient {tuple(grad_y.shape)} does not fit "
                         f"input {tuple(x.shape)} at stride {stride}")
    return avg_pool_3x3_backward_unchecked(grad_y.to(x.dtype), x, stride)


def max_pool_3x3_indices(x: Tensor, stride: int) -> Tensor | None:
    """The winners of `pool_3x3(x, stride, "max")`: int64, (B, C, H_out, W_out)
    channels-last, the flat index h·W + w within the map, as the second result of
    `torch.ops.aten.max_pool2d_with_indices(x, [3, 3], [stride] * 2, [1, 1])`. None where
    the kernel does not apply."""
    _check_pool(stride, "max")
    if torch.is_grad_enabled() or not pool_applies(x):
        return None
    return max_pool_3x3_indices_unchecked(x, stride)


def _check_pool(stride: int, kind: str) -> None:
    if stride not in (1, 2) or kind not in ("max", "avg"):
        raise ValueError(f"3×3 pooling: stride must be 1 or 2 and kind 'max' or 'avg', got "
                         f"stride {stride!r}, kind {kind!r}")


def pool_3x3_unchecked(x: Tensor, stride: int, is_max: bool) -> Tensor:
    """`pool_3x3` for callers that checked its arguments."""
    n, c, h, w = x.shape
    y = torch.empty(n, c, (h - 1) // stride + 1, (w - 1) // stride + 1, dtype=x.dtype,
                    memory_format=torch.channels_last)
    _kernels.pool_forward(x.data_ptr(), y.data_ptr(), n, h, w, c, stride, is_max)
    return y


def avg_pool_3x3_backward_unchecked(grad_y: Tensor, x: Tensor, stride: int) -> Tensor:
    """`avg_pool_3x3_backward` for callers that checked its arguments."""
    n, c, h, w = x.shape
    grad_y = grad_y.contiguous(memory_format=torch.channels_last)
    grad_x = torch.empty_like(x)  # the kernel zeroes it image by image, then adds
    _kernels.avg_pool_backward(grad_y.data_ptr(), grad_x.data_ptr(), n, h, w, c, stride)
    return grad_x


def max_pool_3x3_indices_unchecked(x: Tensor, stride: int) -> Tensor:
    """`max_pool_3x3_indices` for callers that checked its arguments."""
    n, c, h, w = x.shape
    where = torch.empty(n, c, (h - 1) // stride + 1, (w - 1) // stride + 1, dtype=torch.int64,
                        memory_format=torch.channels_last)
    _kernels.max_pool_indices(x.data_ptr(), where.data_ptr(), n, h, w, c, stride)
    return where


def pointwise_applies(x: Tensor, out_channels: int) -> bool:
    """Whether the 1×1 product kernel takes `x` into `out_channels` channels: built, a
    non-empty 4-D channels-last float32 CPU map, and a multiple of 16 output channels."""
    return (_kernels is not None and out_channels % 16 == 0 and out_channels > 0
            and x.dtype == torch.float32 and x.device.type == "cpu" and x.dim() == 4
            and x.numel() > 0 and x.is_contiguous(memory_format=torch.channels_last))


def pointwise_product(x: Tensor, b: Tensor) -> Tensor | None:
    """The 1×1 convolution of `x` (B, K, H, W) by the matrix `b` (K, N): (B, N, H, W)
    channels-last, each output value Σ_k x[:, k]·b[k, n] summed over k in order. None where
    the kernel does not apply (`pointwise_applies`) or while autograd records."""
    if torch.is_grad_enabled() or b.dim() != 2 or not pointwise_applies(x, b.shape[1]):
        return None
    if b.shape[0] != x.shape[1] or b.dtype != torch.float32 or b.device.type != "cpu":
        raise ValueError(f"1×1 product: matrix {tuple(b.shape)} {b.dtype} does not fit input "
                         f"{tuple(x.shape)} (expected ({x.shape[1]}, N) float32 on CPU)")
    return pointwise_product_unchecked(x, b.contiguous())


def pointwise_product_unchecked(x: Tensor, b: Tensor) -> Tensor:
    """`pointwise_product` for callers that checked its arguments (`b` contiguous)."""
    n, k, h, w = x.shape
    y = torch.empty(n, b.shape[1], h, w, dtype=x.dtype, memory_format=torch.channels_last)
    _kernels.pointwise(x.data_ptr(), b.data_ptr(), y.data_ptr(), n * h * w, k, b.shape[1])
    return y
