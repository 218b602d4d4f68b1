"""Time the supernet's 1×1 convolutions: archsearch's native product (`archsearch/ops/
_pointwise.c`) against PyTorch's route (MKL's matrix product or oneDNN's conv) on the
shapes of the DARTS search network, through `archsearch.ops.pointwise`, and check both
against float64.

    python benchmarks/pointwise.py [--batch 16] [--repeats 60]

Per shape, microseconds per call (median), PyTorch / native = speed-up, of the forward
product and of the input gradient (the product with the transposed matrix).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from _measure import kernel_bench_args, median_us, without_native

from archsearch.ops.pointwise import pointwise, pointwise_input_grad

# (input channels, output channels, map size): the supernet's 1×1 convs per stage (the
# separable convs' C → C, the cells' preprocessing of 4C or 3C inputs to C).
SHAPES = [(16, 16, 32), (48, 16, 32), (64, 16, 32), (32, 32, 16), (64, 32, 16),
          (64, 64, 8), (128, 64, 8)]


def main() -> int:
    args = kernel_bench_args(__doc__.splitlines()[0], repeats=60)
    if args is None:
        return 1
    worst = 0.0
    with torch.no_grad():
        for c_in, c_out, size in SHAPES:
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(args.batch, c_in, size, size, generator=gen)
            x = x.contiguous(memory_format=torch.channels_last)
            w = torch.randn(c_out, c_in, 1, 1, generator=gen)
            g = torch.randn(args.batch, c_out, size, size, generator=gen)
            g = g.contiguous(memory_format=torch.channels_last)
            cells = []
            for label, fn in (("forward", partial(pointwise, x, w)),
                              ("input grad", partial(pointwise_input_grad, g, w))):
                ours = median_us(fn, args.repeats)
                theirs = without_native("pointwise_applies", partial(median_us, fn, args.repeats))
                cells.append(f"{label} {theirs:.0f}/{ours:.0f} = {theirs / ours:.2f}×")
            want = F.conv2d(x.double(), w.double())
            error = ((pointwise(x, w).double() - want).abs().max() / want.abs().max()).item()
            worst = max(worst, error)
            print(f"{c_in:>3} → {c_out:<3} @{size}²: " + ", ".join(cells)
                  + f"; max rel. error {error:.1e}")
    verdict = "PASS" if worst < 1e-5 else "FAIL"
    print(f"worst relative error against float64: {worst:.1e} [{verdict}]")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
