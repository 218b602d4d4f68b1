"""Time the supernet's 3×3 pooling: archsearch's native kernels (`archsearch/ops/_pool.c`)
against PyTorch's on the shapes of the DARTS search network, through the function the
supernet calls (`archsearch.ops.pool.pool_3x3`), and check that both give the same bits.

    python benchmarks/pooling.py [--batch 16] [--repeats 60]

Per shape and stride, microseconds per call (median), PyTorch / native = speed-up, of the
forward pass (recording for autograd) and of forward + backward.
"""

from __future__ import annotations

from functools import partial

import torch
from _measure import kernel_bench_args, median_us, without_native

from archsearch.ops.pool import pool_3x3

# (channels, map size): the supernet's three stages (C = 16, 32, 64 at 32², 16², 8²).
SHAPES = [(16, 32), (32, 16), (64, 8)]


def _forward_backward(x: torch.Tensor, stride: int, kind: str, g: torch.Tensor) -> torch.Tensor:
    return torch.autograd.grad(pool_3x3(x, stride, kind), x, g)[0]


def main() -> int:
    args = kernel_bench_args(__doc__.splitlines()[0], repeats=60)
    if args is None:
        return 1
    same = True
    for channels, size in SHAPES:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch, channels, size, size, generator=gen)
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
        for stride in (1, 2):
            cells = []
            for kind in ("max", "avg"):
                forward = partial(pool_3x3, x, stride, kind)
                both = partial(_forward_backward, x, stride, kind,
                               torch.randn_like(forward()))
                for label, fn in ((kind, forward), (f"{kind} fwd+bwd", both)):
                    ours = median_us(fn, args.repeats)
                    theirs = without_native("pool_applies", partial(median_us, fn, args.repeats))
                    cells.append(f"{label} {theirs:.0f}/{ours:.0f} = {theirs / ours:.2f}×")
                    same = same and torch.equal(fn(), without_native("pool_applies", fn))
            print(f"{channels:>3} ch @{size}², stride {stride}: " + ", ".join(cells))
    print(f"outputs and input gradients bit-identical to PyTorch's: {same} "
          f"[{'PASS' if same else 'FAIL'}]")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
