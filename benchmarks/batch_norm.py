"""Time the supernet's batch norm: archsearch's native kernels (`archsearch/ops/_batch_norm.c`)
against PyTorch's on the shapes of the DARTS search network, through the functions the
supernet calls (`archsearch.ops.batch_norm`), and check both against float64.

    python benchmarks/batch_norm.py [--batch 16] [--repeats 60]

Per shape, microseconds per call (median) and the speed-up (PyTorch / native) of:
  forward   — y = BN(x)·w with batch statistics, recording for autograd;
  sum       — out += BN(x)·w (PyTorch: the forward, then `add_`), how a node sums its terms
              (both include making a fresh sum to add to, as the supernet's sums are);
  backward  — ∂/∂x and ∂/∂w from ∂L/∂y;
  ReLU fwd  — ReLU(BN(x)), the middle of a separable conv; then its backward.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from _measure import kernel_bench_args, median_us, without_native

from archsearch.ops.batch_norm import batch_norm, batch_norm_add_

# (channels, map size): the supernet's three stages (C = 16, 32, 64 at 32², 16², 8²).
SHAPES = [(16, 32), (32, 16), (64, 8)]
EPS = 1e-5


def _routes(x: torch.Tensor, w: torch.Tensor, g: torch.Tensor, relu: bool
            ) -> dict[str, Callable[[], object]]:
    """The measured calls of one implementation (the one `native.batch_norm_applies`
    currently picks)."""
    base = torch.zeros_like(x)
    y = batch_norm(x, w, EPS, relu)
    return {
        "forward": lambda: batch_norm(x, w, EPS, relu),
        "sum": lambda: batch_norm_add_(base * 1.0, x, w, EPS),
        "backward": lambda: torch.autograd.grad(y, [x, w], g, retain_graph=True),
    }


def _max_error(x: torch.Tensor, w: torch.Tensor, g: torch.Tensor) -> float:
    """Worst relative error of the native output and gradients against float64."""
    x64, w64 = (t.detach().double().requires_grad_() for t in (x, w))
    y64 = F.batch_norm(x64, None, None, w64, None, True, 0.0, EPS)
    want = [y64.detach(), *torch.autograd.grad(y64, [x64, w64], g.double())]
    y = batch_norm(x, w, EPS)
    got = [y.detach(), *torch.autograd.grad(y, [x, w], g)]
    return max(((a.double() - b).abs().max() / b.abs().max()).item()
               for a, b in zip(got, want, strict=True))


def main() -> int:
    args = kernel_bench_args(__doc__.splitlines()[0], repeats=60)
    if args is None:
        return 1
    worst = 0.0
    for channels, size in SHAPES:
        gen = torch.Generator().manual_seed(0)
        shape = (args.batch, channels, size, size)
        x = torch.randn(*shape, generator=gen).contiguous(memory_format=torch.channels_last)
        g = torch.randn(*shape, generator=gen).contiguous(memory_format=torch.channels_last)
        x.requires_grad_()
        w = (torch.rand(channels, generator=gen) + 0.5).requires_grad_()
        cells = []
        for relu in (False, True):
            ours = _routes(x, w, g, relu)
            theirs = without_native("batch_norm_applies", partial(_routes, x, w, g, relu))
            names = ("forward", "sum", "backward") if not relu else ("forward", "backward")
            for name in names:
                t_ours = median_us(ours[name], args.repeats)
                t_theirs = without_native("batch_norm_applies",
                                          partial(median_us, theirs[name], args.repeats))
                label = f"ReLU {name}" if relu else name
                cells.append(f"{label} {t_theirs:.0f}/{t_ours:.0f} = {t_theirs / t_ours:.2f}×")
        error = _max_error(x, w, g)
        worst = max(worst, error)
        print(f"{channels:>3} ch @{size}²: " + ", ".join(cells) + f"; max rel. error {error:.1e}")
    verdict = "PASS" if worst < 1e-5 else "FAIL"
    print(f"worst relative error against float64: {worst:.1e} [{verdict}]")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
