"""Depthwise convolutions whose backward pass is fast and lean on CPU.

On CPU, oneDNN's backward of a depthwise convolution is 3–10× slower than its forward, and
DARTS spends most of its time there (every sep/dil conv starts with one). Three remedies:

* The input gradient of a depthwise conv is itself a depthwise conv with the kernel rotated
  by 180° (or a transposed conv when strided), so for dilated kernels we compute it with the
  fast forward kernel, and ask the native backward for the weight gradient only — and only
  when autograd needs it. The architecture-gradient passes of DARTS need no weight gradient.
* The weight gradient comes from archsearch's native kernel where it is built
  (`archsearch.ops.native`: up to 13× faster than oneDNN at the DARTS shapes). Without it:
  oneDNN's fast weight-gradient kernel exists for undilated 3×3 kernels only, so a dilated
  kernel's weight gradient is an undilated one over the input's pixel phases stacked along
  the batch (`_phase_weight_grad`), and 5×5 ones are, where it pays, assembled from 3×3
  blocks (`_tiled_weight_grad`).
* A strided dilated conv whose stride equals its dilation (the reduction cells' dil convs)
  reads one pixel phase only; it runs as an undilated conv of that phase (`stride_phase`)
  instead of oneDNN's GEMM fallback for strided dilated kernels.
* A depthwise conv followed by a 1×1 conv (the start of every sep/dil conv) runs as one
  autograd step that keeps only its input for backward and recomputes the depthwise output
  when the 1×1 weight gradient is needed: a third less memory for the supernet's saved tensors.

The backward passes are written with differentiable ops, so double backward (the exact
unrolled gradient) works through them. The module is a plain `nn.Conv2d` (same parameters,
same state_dict), so discrete networks keep their published parameter counts, and the plain
convolutions run while tracing for export (TorchScript, ONNX) and without autograd.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archsearch.ops.layout import exporting
from archsearch.ops.native import available as native_available
from archsearch.ops.native import depthwise_weight_grad
from archsearch.ops.phase import stride_phase
from archsearch.ops.pointwise import pointwise, pointwise_input_grad, pointwise_weight_grad


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
        grad_x, grad_w = _depthwise_backward(grad_out, x, weight, *ctx.config,
                                             *ctx.needs_input_grad[:2])
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
        if x.device.type != "cpu" or exporting():  # the tricks below: CPU, untraced only
            return super().forward(x)
        stride, padding, dilation = self.stride[0], self.padding[0], self.dilation[0]
        if _phase_strided(stride, padding, dilation):
            return depthwise_conv(stride_phase(x, stride), self.weight, 1, padding // stride, 1)
        if _strided_dilated(stride, dilation):  # in NCHW, see `_depthwise`
            return _depthwise(x, self.weight, stride, padding, dilation)
        return depthwise_conv(x, self.weight, stride, padding, dilation)


def depthwise_conv(x: Tensor, weight: Tensor, stride: int, padding: int,
                   dilation: int) -> Tensor:
    """`F.conv2d(x, weight, None, stride, padding, dilation, groups=C)`, differentiable
    (twice, too), with the fast backward above where it pays."""
    # Measured on 2 CPU cores: the rewrite pays off for dilated stride-1 kernels in float32,
    # and with the native weight gradient for every kernel (oneDNN's backward of a 5×5
    # kernel at 8×8 took 0.64 ms, the rewrite about 0.1 ms). In float64 (no oneDNN kernels)
    # the dilated fallback makes it far slower.
    if (x.dtype == torch.float32 and x.shape[-1] == x.shape[-2]
            and ((stride == 1 and dilation > 1) or _native_weight_grad_applies(x))):
        return _DepthwiseConvFunction.apply(x, weight, stride, padding, dilation)
    return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])


def _native_weight_grad_applies(x: Tensor) -> bool:
    return native_available() and x.is_contiguous(memory_format=torch.channels_last)


class _DepthwisePointwiseFunction(torch.autograd.Function):
    """pw(dw(x)), the two convolutions every sep/dil conv half begins with, saving only x.

    Autograd would keep dw(x) alive until the backward pass, only for the 1×1 conv's weight
    gradient. We recompute it there instead (a cheap depthwise forward), and only when that
    gradient is asked for: the architecture-gradient passes of DARTS never ask for it.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w_dw: Tensor, w_pw: Tensor, stride: int, padding: int,
                dilation: int) -> Tensor:
        ctx.save_for_backward(x, w_dw, w_pw)
        ctx.config = (stride, padding, dilation)
        return pointwise(_depthwise(x, w_dw, stride, padding, dilation), w_pw)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, w_dw, w_pw = ctx.saved_tensors
        return (*depthwise_pointwise_backward(grad_out, x, x, w_dw, w_pw, *ctx.config,
                                              *ctx.needs_input_grad[:3]),
                None, None, None)


def depthwise_pointwise_backward(grad_out: Tensor, x: Tensor | None, like_x: Tensor,
                                 w_dw: Tensor, w_pw: Tensor, stride: int, padding: int,
                                 dilation: int, need_x: bool, need_dw: bool, need_pw: bool
                                 ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """(∂/∂x, ∂/∂w_dw, ∂/∂w_pw) of pw(dw(x)), each None unless asked for, recomputing dw(x)
    for the 1×1 weight gradient. `x` may be None when no weight gradient is asked for;
    `like_x` then gives the input's shape and layout."""
    grad_x = grad_dw = grad_pw = None
    if need_pw:
        t = _depthwise(x, w_dw, stride, padding, dilation)
        grad_pw = pointwise_weight_grad(grad_out, t, w_pw)
    if need_x or need_dw:
        # The adjoint of a 1×1 conv is the 1×1 conv with the transposed matrix.
        grad_t = pointwise_input_grad(grad_out, w_pw)
        grad_x, grad_dw = _depthwise_backward(grad_t, like_x if x is None else x, w_dw, stride,
                                              padding, dilation, need_x, need_dw)
    return grad_x, grad_dw, grad_pw


def _strided_dilated(stride: int, dilation: int) -> bool:
    # Measured on 2 CPU cores: oneDNN's backward of strided dilated depthwise convs is
    # 2-3× slower in channels-last than in NCHW, conversions included.
    return stride > 1 and dilation > 1


def _depthwise(x: Tensor, weight: Tensor, stride: int, padding: int, dilation: int) -> Tensor:
    if _strided_dilated(stride, dilation):
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        y = F.conv2d(x.contiguous(), weight, None, stride, padding, dilation, x.shape[1])
        return y.contiguous(memory_format=torch.channels_last) if channels_last else y
    return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])


def _depthwise_backward(grad_out: Tensor, x: Tensor, weight: Tensor, stride: int,
                        padding: int, dilation: int, need_x: bool, need_w: bool
                        ) -> tuple[Tensor | None, Tensor | None]:
    """(∂/∂x, ∂/∂weight) of a depthwise conv, each None unless asked for."""
    grad_w = None
    if need_w:  # the native kernel where it is built and applies (`archsearch.ops.native`)
        grad_w = depthwise_weight_grad(grad_out, x, weight.shape[-1], stride, padding,
                                       dilation)
        need_w = grad_w is None
    if _strided_dilated(stride, dilation):
        grad_out, x = grad_out.contiguous(), x.contiguous()
    grad_x = None
    if need_x and _input_grad_by_forward(x, stride, dilation):
        grad_x, need_x = _input_grad(grad_out, weight, x.shape, stride, padding, dilation), False
    if not (need_x or need_w):
        return grad_x, grad_w
    if need_w and _phase_weight_grad_pays(x, weight, stride, padding, dilation):
        grad_w, need_w = _phase_weight_grad(grad_out, x, weight, padding, dilation), False
    if need_w and _tiled_weight_grad_pays(x, weight, stride, dilation):
        grad_w, need_w = _tiled_weight_grad(grad_out, x, weight.shape[-1], stride, padding,
                                            dilation), False
    if not (need_x or need_w):
        return grad_x, grad_w
    native = torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, (stride, stride), (padding, padding), (dilation, dilation),
        False, (0, 0), x.shape[1], (need_x, need_w, False))
    return (native[0] if need_x else grad_x), (native[1] if need_w else grad_w)


def _phase_weight_grad_pays(x: Tensor, weight: Tensor, stride: int, padding: int,
                            dilation: int) -> bool:
    # Measured on 2 CPU cores (DARTS shapes, batch 16), on two kinds of machine. With
    # AVX-512, the phase-stacked weight gradient was 1.2-2.3× faster for dilated 3×3 kernels
    # at 32²/16²/8² and 4× faster for a dilated 5×5 kernel wider than its 8×8 input, but
    # 1.3-2× *slower* than oneDNN's own for 5×5 kernels inside 16² and 32² maps (so the
    # native kernel keeps those). With AVX2 only, where oneDNN has no depthwise kernel for
    # 5×5 weight gradients, it was 2.3-6× faster for dilated 3×3 kernels and 3.2-3.4× faster
    # for dilated 5×5 ones at 32² and 16².
    if (x.dtype != torch.float32 or not x.is_contiguous(memory_format=torch.channels_last)
            or stride != 1 or dilation == 1 or padding % dilation
            or x.shape[-1] % dilation or x.shape[-2] % dilation):
        return False
    kernel, size = weight.shape[-1], x.shape[-1]
    return kernel == 3 or dilation * (kernel - 1) + 1 > size or not _AVX512


# Whether oneDNN runs its AVX-512 kernels here: it has fast depthwise weight-gradient
# kernels for kernels wider than 3 only with them, and the measurements that pick the
# rewrites above and below were taken on machines with and without them.
_AVX512 = torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def _phases(t: Tensor, dilation: int) -> Tensor:
    """(N, C, H, W) channels-last → (d²·N, C, H/d, W/d) channels-last, one copy: the d² pixel
    phases t[:, :, a::d, b::d] stacked along the batch, phase-major."""
    n, c, h, w = t.shape
    d = dilation
    nhwc = t.permute(0, 2, 3, 1).reshape(n, h // d, d, w // d, d, c)  # n, h', a, w', b, c
    return (nhwc.permute(2, 4, 0, 1, 3, 5).reshape(d * d * n, h // d, w // d, c)
            .permute(0, 3, 1, 2))


def _phase_weight_grad(grad_out: Tensor, x: Tensor, weight: Tensor, padding: int,
                       dilation: int) -> Tensor:
    """∂/∂weight of a stride-1 dilated depthwise conv as one *undilated* weight gradient.

    Output pixel h = d·h' + a reads input rows d·h' + a + d·i − p = d·(h' + i − p/d) + a:
    phase a of the output is the undilated conv (padding p/d) of phase a of the input, with
    the same kernel. Stacking the d² phases along the batch sums their contributions to
    ∂L/∂w in one call of oneDNN's undilated kernel (fast for 3×3) instead of its slow
    dilated one. Needs p and the map size divisible by d.
    """
    channels, pad = x.shape[1], padding // dilation
    return torch.ops.aten.convolution_backward(
        _phases(grad_out, dilation), _phases(x, dilation), weight, None, (1, 1), (pad, pad),
        (1, 1), False, (0, 0), channels, (False, True, False))[1]


def _tiled_weight_grad_pays(x: Tensor, weight: Tensor, stride: int, dilation: int) -> bool:
    # oneDNN has a fast depthwise weight-gradient kernel for undilated 3×3 kernels only;
    # bigger or dilated ones go to generic kernels. Measured on 2 CPU cores (DARTS shapes,
    # batch 16-256, C=16/32/64 at 32²/16²/8²): 3×3 blocks are 1.1-1.9× faster for
    # undilated 5×5 kernels over ≥ 8192 output pixels per channel and 0.75-0.8× as fast
    # over 2048-4096, and 2-3× faster for dilated kernels wider than the input (oneDNN
    # falls back to a GEMM there) that the phase-stacked gradient does not take.
    kernel, size = weight.shape[-1], x.shape[-1]
    if x.dtype != torch.float32 or not x.is_contiguous(memory_format=torch.channels_last):
        return False
    if dilation == 1:
        return kernel > 3 and x.shape[0] * (size // stride) ** 2 >= 8192
    return stride == 1 and kernel >= 3 and dilation * (kernel - 1) + 1 > size


def _tiled_weight_grad(grad_out: Tensor, x: Tensor, kernel: int, stride: int, padding: int,
                       dilation: int) -> Tensor:
    """∂/∂weight of a depthwise conv from oneDNN's fast 3×3 kernel.

    ∂L/∂w[c, i, j] = Σ_{n,h,w} g[n,c,h,w] · x_pad[n, c, s·h + d·i, s·w + d·j]: every 3×3
    block of (i, j) is the weight gradient of a 3×3 conv of g with a shifted window of x.
    A dilation d splits (h, w) into d² phases, each an undilated conv on every d-th pixel.
    """
    if dilation == 1:
        return _tiles(grad_out, x, kernel, stride, (padding, padding))
    out = None
    for ph in range(dilation):
        for pw in range(dilation):
            # Output pixel h = d·h' + ph reads input row d·(h' + i) + ph − padding.
            g = grad_out[:, :, ph::dilation, pw::dilation]
            if g.numel() == 0:
                continue
            xs = x[:, :, (ph - padding) % dilation::dilation,
                   (pw - padding) % dilation::dilation]
            part = _tiles(g.contiguous(memory_format=torch.channels_last), xs, kernel, 1,
                          ((padding - ph + dilation - 1) // dilation,
                           (padding - pw + dilation - 1) // dilation))
            out = part if out is None else out + part
    return out if out is not None else x.new_zeros(x.shape[1], 1, kernel, kernel)


def _tiles(grad_out: Tensor, x: Tensor, kernel: int, stride: int,
           padding: tuple[int, int]) -> Tensor:
    """Undilated k×k depthwise weight gradient as 3×3 blocks (the last block may overlap)."""
    channels, (h_out, w_out) = x.shape[1], grad_out.shape[-2:]
    starts = list(range(0, kernel - 2, 3))
    if starts[-1] + 3 < kernel:
        starts.append(kernel - 3)
    # Block (u, v) sees rows u − p_h … u − p_h + (h_out − 1)·s + 2 of x (columns alike),
    # zero outside x: one padded copy of x holds every block's window (negative = crop).
    span_h, span_w = (h_out - 1) * stride + 3, (w_out - 1) * stride + 3
    padded = F.pad(x, (padding[1], starts[-1] - padding[1] + span_w - x.shape[-1],
                       padding[0], starts[-1] - padding[0] + span_h - x.shape[-2]))
    w3 = x.new_empty(channels, 1, 3, 3)
    rows = []
    for u in starts:
        cols = []
        for v in starts:
            window = padded[:, :, u:u + span_h, v:v + span_w]
            cols.append(torch.ops.aten.convolution_backward(
                grad_out, window.contiguous(memory_format=torch.channels_last), w3, None,
                (stride, stride), (0, 0), (1, 1), False, (0, 0), channels,
                (False, True, False))[1])
        rows.append(_join(cols, starts, -1))
    return _join(rows, starts, -2)


def _join(blocks: list[Tensor], starts: list[int], dim: int) -> Tensor:
    """Concatenate 3-wide blocks that start at `starts`, dropping the overlap."""
    parts = [blocks[0]] + [b.narrow(dim, prev + 3 - start, start + 3 - (prev + 3))
                           for b, prev, start in zip(blocks[1:], starts, starts[1:],
                                                     strict=False)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def _input_grad_by_forward(x: Tensor, stride: int, dilation: int) -> bool:
    # Measured on 2 CPU cores (DARTS shapes, batch 16): the rotated-kernel forward conv pays
    # off for dilated stride-1 kernels in float32, and on AVX-512 for undilated ones too
    # (0.10 against oneDNN's 0.39 ms backward for 3×3 at 32×32, 0.15 against 0.29 ms for
    # 5×5; 1.1-1.2× faster at 16×16 and 8×8). In float64 (no oneDNN kernels) the dilated
    # fallback makes it far slower.
    return stride == 1 and x.dtype == torch.float32 and (dilation > 1 or _AVX512)


# Recomputing dw(x) costs a depthwise forward in every weight-gradient pass. It pays where
# the activations fill memory (the 32×32 and 16×16 stages of a CIFAR-size supernet); on
# smaller maps it only costs time (measured: 10-18 % slower search and training on 8×8 digits).
RECOMPUTE_MIN_PIXELS = 16 * 16


def depthwise_pointwise(dw: DepthwiseConv2d, pw: nn.Conv2d, x: Tensor,
                        phase: Tensor | None = None) -> Tensor:
    """`pw(dw(x))`; while recording gradients on CPU, for maps of at least
    `RECOMPUTE_MIN_PIXELS` pixels, without keeping dw(x) for backward.

    `phase`, optional, is `stride_phase(x, s)` when the caller already has it (a supernet
    shares it between the ops that read one node); it is used where the conv reads that
    phase only (`_phase_strided`).
    """
    stride, padding, dilation = dw.stride[0], dw.padding[0], dw.dilation[0]
    # Module calls without gradients (MAC counting hooks them), off the CPU and while tracing.
    if not torch.is_grad_enabled() or x.device.type != "cpu" or exporting():
        return pw(dw(x))
    strided = _phase_strided(stride, padding, dilation)
    if x.shape[-1] != x.shape[-2] or x.shape[-1] * x.shape[-2] < RECOMPUTE_MIN_PIXELS:
        if strided and phase is not None:
            y = depthwise_conv(phase, dw.weight, 1, padding // stride, 1)
        else:
            y = dw(x)
        return pointwise(y, pw.weight)
    if strided:
        x = stride_phase(x, stride) if phase is None else phase
        stride, padding, dilation = 1, padding // stride, 1
    return _DepthwisePointwiseFunction.apply(x, dw.weight, pw.weight, stride, padding, dilation)


def _phase_strided(stride: int, padding: int, dilation: int) -> bool:
    """Whether a strided dilated conv reads one pixel phase only (see `stride_phase`)."""
    return stride > 1 and dilation == stride and padding % stride == 0


def reads_one_phase(dw: DepthwiseConv2d) -> bool:
    """Whether `dw` reads one pixel phase of its input only (see `stride_phase`)."""
    return _phase_strided(dw.stride[0], dw.padding[0], dw.dilation[0])


def is_pointwise(module: nn.Module) -> bool:
    """Whether `module` is a bias-free 1×1 stride-1 convolution without groups."""
    return (type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.bias is None
            and module.stride == (1, 1) and module.groups == 1 and module.padding == (0, 0))
