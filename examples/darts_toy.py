"""The toy bilevel problem of the DARTS paper (arXiv:1806.09055, Figure 2).

    L_val(w, α)   = α·w − 2α + 1
    L_train(w, α) = w² − 2α·w + α²

The bilevel optimum is (α, w) = (1, 1). Alternating plain gradient descent (lr 0.1 for
both, α first) with the unrolled gradient of virtual step size ξ has the fixed point
α = w = 2 / (1 + 2ξ): first order (ξ = 0) ends at (2, 2), ξ = 0.5 at the optimum.

It runs through archsearch's own BilevelOptimizer, the code DARTS searches with:

    python examples/darts_toy.py --xi 0.5 --steps 2000 --json
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from archsearch.supernet import BilevelOptimizer


class Toy(nn.Module):
    def __init__(self, alpha: float = 2.0, w: float = -2.0) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(alpha, dtype=torch.float64))
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))


def val_loss(model: nn.Module, batch: object) -> torch.Tensor:
    return model.alpha * model.w - 2 * model.alpha + 1


def train_loss(model: nn.Module, batch: object) -> torch.Tensor:
    return model.w**2 - 2 * model.alpha * model.w + model.alpha**2


def solve(xi: float, steps: int, hvp: str = "finite-difference",
          lr: float = 0.1) -> tuple[float, float]:
    """Final (α, w) after `steps` alternating updates with virtual step size ξ."""
    model = Toy()
    opt = BilevelOptimizer(
        model, ["alpha"], train_loss=train_loss, val_loss=val_loss,
        weight_optimizer=torch.optim.SGD([model.w], lr=lr),
        arch_optimizer=torch.optim.SGD([model.alpha], lr=lr),
        order="first" if xi == 0 else "second", hvp=hvp, xi=xi, grad_clip=None)
    for _ in range(steps):
        opt.step(None, None)
    return model.alpha.item(), model.w.item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xi", type=float, default=0.0,
                        help="virtual step size ξ (0 = first order)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--hvp", choices=("finite-difference", "exact"),
                        default="finite-difference")
    parser.add_argument("--json", action="store_true", help="print {'alpha': .., 'w': ..}")
    args = parser.parse_args(argv)
    alpha, w = solve(args.xi, args.steps, args.hvp)
    if args.json:
        print(json.dumps({"xi": args.xi, "steps": args.steps, "alpha": alpha, "w": w}))
    else:
        print(f"xi={args.xi}: alpha={alpha:.6f} w={w:.6f} "
              f"(fixed point {2 / (1 + 2 * args.xi):.6f})")


if __name__ == "__main__":
    main()
