"""The RL controller's toy problem (Zoph & Le, arXiv:1611.01578; the example in issue #1).

Data y = 2x + ε (x ~ U(−3, 3), ε ~ N(0, 0.2²), 200 points). A child network is
g(h(x·u)·v) with scalar weights u, v, and the controller chooses h, g ∈ {linear, sigmoid}:
four architectures. Each child is trained to convergence (full-batch L-BFGS in float64
from a seeded start) and rewarded with R = 1 / (1 + MSE), a bounded score like an accuracy.
Children are deterministic, so each MSE is computed once and cached. The controller
(`ReinforceController`, default settings) is trained through ask/tell until it puts more
than 0.95 probability on (linear, linear):

    python examples/controller_toy.py --seed 0 --json

The paper reports MSEs of about 0.05, 91.2, 0.40 and 34.5 for (linear, linear),
(linear, sigmoid), (sigmoid, linear) and (sigmoid, sigmoid); ours differ (other data range,
noise and optimiser) but keep (linear, linear) best by far.
"""

from __future__ import annotations

import argparse
import functools
import json

import torch

from archsearch.space import Categorical, SearchSpace
from archsearch.strategies.rl import ReinforceController

ACTIVATIONS = {"linear": lambda z: z, "sigmoid": torch.sigmoid}
TARGET = ("linear", "linear")


def make_data(seed: int, n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=gen, dtype=torch.float64) * 6 - 3
    return x, 2 * x + 0.2 * torch.randn(n, generator=gen, dtype=torch.float64)


@functools.cache
def child_mse(h: str, g: str, seed: int) -> float:
    """Train g(h(x·u)·v) to convergence and return its training MSE."""
    x, y = make_data(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    u, v = (torch.randn((), generator=gen, dtype=torch.float64).requires_grad_() for _ in "uv")
    opt = torch.optim.LBFGS([u, v], lr=1.0, max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((ACTIVATIONS[g](ACTIVATIONS[h](x * u) * v) - y) ** 2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((ACTIVATIONS[g](ACTIVATIONS[h](x * u) * v) - y) ** 2).mean())


def search(seed: int, max_trials: int = 2000) -> tuple[dict[str, float], dict[str, float], int]:
    """Train the controller until P(linear, linear) > 0.95; returns MSEs, probabilities and
    the number of trials used."""
    choice = Categorical(tuple(ACTIVATIONS))
    space = SearchSpace.from_dims({"h": choice, "g": choice}, name="controller_toy")
    controller = ReinforceController(space, seed=seed)
    best = space.arch(dict(zip(("h", "g"), TARGET, strict=True)))
    trials = 0
    while trials < max_trials and controller.probability(best) <= 0.95:
        arch = controller.ask()
        controller.tell(arch, 1.0 / (1.0 + child_mse(arch["h"], arch["g"], seed)))
        trials += 1
    archs = [space.arch({"h": h, "g": g}) for h in ACTIVATIONS for g in ACTIVATIONS]
    mse = {f"{a['h']},{a['g']}": child_mse(a["h"], a["g"], seed) for a in archs}
    probs = {f"{a['h']},{a['g']}": controller.probability(a) for a in archs}
    return mse, probs, trials


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true",
                        help="print {'mse': {...}, 'probabilities': {...}}")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    mse, probs, trials = search(args.seed)
    if args.json:
        print(json.dumps({"mse": mse, "probabilities": probs}))
        return
    print(f"{'h,g':<18}{'MSE':>10}{'P(controller)':>16}")
    for name in mse:
        print(f"{name:<18}{mse[name]:>10.4f}{probs[name]:>16.4f}")
    print(f"controller trained for {trials} trials")


if __name__ == "__main__":
    main()
