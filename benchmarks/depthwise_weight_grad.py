"""Time a depthwise convolution's weight gradient: archsearch's native kernel
(`archsearch/ops/_kernels.c`) against the best route PyTorch's own kernels give
(oneDNN, phase-stacked or tiled; what runs where the native kernel is not built), on the
shapes of the DARTS search network, and check both against float64 autograd.

    python benchmarks/depthwise_weight_grad.py [--batch 16] [--repeats 40]

Prints milliseconds per call and the speed-up (PyTorch route / native).
"""

from __future__ import annotations

import sys
from functools import partial

import torch
import torch.nn.functional as F
from _measure import kernel_bench_args, median_us

from archsearch.ops import depthwise, native

# (channels, map size, kernel, stride, dilation): the supernet's depthwise convs, per stage.
SHAPES = [
    (16, 32, 3, 1, 1), (16, 32, 5, 1, 1), (16, 32, 3, 1, 2), (16, 32, 5, 1, 2),
    (16, 32, 5, 2, 1), (32, 16, 3, 1, 1), (32, 16, 5, 1, 1), (32, 16, 3, 1, 2),
    (32, 16, 5, 1, 2), (32, 16, 5, 2, 1), (64, 8, 3, 1, 1), (64, 8, 5, 1, 1),
    (64, 8, 3, 1, 2), (64, 8, 5, 1, 2),
]


def _pytorch_route(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, stride: int,
                   padding: int, dilation: int) -> torch.Tensor:
    """What `_depthwise_backward` computes with the native kernel switched off."""
    saved = depthwise.depthwise_weight_grad
    depthwise.depthwise_weight_grad = lambda *args: None
    try:
        return depthwise._depthwise_backward(g, x, w, stride, padding, dilation, False, True)[1]
    finally:
        depthwise.depthwise_weight_grad = saved


def main() -> int:
    args = kernel_bench_args(__doc__.splitlines()[0], repeats=40, unit="ms")
    if args is None:
        return 1
    print(f"{'shape':<24} {'PyTorch':>8} {'native':>8} {'speed-up':>9}  max rel. error (f64)")
    worst = 0.0
    for channels, size, kernel, stride, dilation in SHAPES:
        padding = dilation * (kernel - 1) // 2
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch, channels, size, size, generator=gen)
        x = x.contiguous(memory_format=torch.channels_last)
        rows = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
        g = torch.randn(args.batch, channels, rows, rows, generator=gen)
        g = g.contiguous(memory_format=torch.channels_last)
        w = torch.zeros(channels, 1, kernel, kernel)
        with torch.no_grad():
            ours = partial(native.depthwise_weight_grad, g, x, kernel, stride, padding,
                           dilation)
            theirs = partial(_pytorch_route, g, x, w, stride, padding, dilation)
            t_ours = median_us(ours, args.repeats, warmup=1) / 1e3  # ms
            t_theirs = median_us(theirs, args.repeats, warmup=1) / 1e3
            got = ours()
        w64 = w.double().requires_grad_()
        out = F.conv2d(x.double(), w64, None, stride, padding, dilation, channels)
        want = torch.autograd.grad(out, w64, g.double())[0]
        error = ((got.double() - want).abs().max() / want.abs().max()).item()
        worst = max(worst, error)
        name = f"C{channels} {size}² k{kernel} s{stride} d{dilation}"
        print(f"{name:<24} {t_theirs:8.3f} {t_ours:8.3f} {t_theirs / t_ours:8.2f}×  {error:.1e}")
    print(f"worst relative error against float64 autograd: {worst:.1e}"
          f" [{'PASS' if worst < 1e-5 else 'FAIL'}]")
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
