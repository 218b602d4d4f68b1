"""The DARTS step benchmark's setting: sizes, targets, and the two implementations' models,
data and timed callables (`build`), shared by `darts_step.py`, `darts_step_paired.py` and
the check and profile helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from _reference_darts import ReferenceArchitect, ReferenceNetwork
from torch import Tensor, nn

from archsearch.spaces.darts import DartsCellSpace
from archsearch.strategies.darts import DARTS
from archsearch.supernet.cost import op_macs_table

IMPLS = ("ours", "reference")
MEASURES = ("forward", "fwd+bwd", "step-first", "step-second")
CHANNELS, LAYERS, NODES, CLASSES, IMAGE = 16, 8, 4, 10, (3, 32, 32)
EXPECTED_WEIGHTS = 1_930_618

# Reported in the issue: the reference implementation on 2 cores of this machine.
PUBLISHED = {
    "text": ("reference implementation on 2 cores of this machine: batch 16: forward 1.1 s, "
             "fwd+bwd 3.0 s, first-order step 6.1 s, second-order step 15 s, peak 2.3–3.6 GB; "
             "batch 32: fwd+bwd 5.3 s, first order 11 s, 5.0 GB"),
    "seconds": {16: {"forward": 1.1, "fwd+bwd": 3.0, "step-first": 6.1, "step-second": 15.0},
                32: {"fwd+bwd": 5.3, "step-first": 11.0}},
    "peak_mb": {16: (2300.0, 3600.0), 32: (5000.0, 5000.0)},
}
SPEEDUP_TARGET, MEMORY_TARGET = 3.0, 0.5
BUSY = 0.1  # share of the CPUs taken by other processes above which a timing is suspect
CHECK_RTOL = 1e-8  # float64: both sides compute the same formulas; only rounding may differ
CHECK_KEYS = ("logits", "alpha_grad_first", "alpha_grad_second", "step_loss",
              "weights_after_step", "alpha_after_step")

Batch = tuple[Tensor, Tensor]

# --------------------------------------------------------------------------------------------
# Building one configuration
# --------------------------------------------------------------------------------------------

@dataclass
class Bench:
    """A model with its data and the callables that are timed."""

    model: nn.Module
    train: Batch
    val: Batch
    forward: Callable[[], Any]
    fwd_bwd: Callable[[], Any]
    step: Callable[[], Any]
    optimizer: Any  # ours: BilevelOptimizer; reference: ReferenceArchitect


def _strategy(order: str) -> DARTS:
    return DARTS(DartsCellSpace(nodes=NODES), order=order, hvp="finite-difference",
                 channels=CHANNELS, layers=LAYERS, seed=0)


def _batches(batch: int, dtype: torch.dtype, size: int, seed: int = 1) -> tuple[Batch, Batch]:
    gen = torch.Generator().manual_seed(seed)

    def one() -> Batch:
        return (torch.randn(batch, IMAGE[0], size, size, generator=gen, dtype=dtype),
                torch.randint(0, CLASSES, (batch,), generator=gen))

    return one(), one()


def build(impl: str, batch: int, order: str = "first", dtype: torch.dtype = torch.float32,
          size: int = IMAGE[-1]) -> Bench:
    """Model, data and timed callables of one implementation; `order` picks the step."""
    strategy = _strategy(order)
    train, val = _batches(batch, dtype, size)
    step: Callable[[], Any]
    if impl == "ours":
        net = strategy.build_supernet(num_classes=CLASSES, in_channels=IMAGE[0]).to(dtype)
        # Exactly what `DARTS.search` steps with (SGD + Adam + grad clip, order, HVP).
        strategy._cost_tables = op_macs_table(net, size)
        optimizer: Any = strategy._bilevel(net, {})

        def step() -> Any:
            return optimizer.step(train, val)

        arch: list[Tensor] = list(net.arch_parameters())
    elif impl == "reference":
        torch.manual_seed(strategy.seed)
        net = ReferenceNetwork(CHANNELS, CLASSES, LAYERS, NODES).to(dtype)
        net.set_alphas(*(a.to(dtype) for a in net.arch_parameters()))
        optimizer = ReferenceArchitect(
            net, lr=strategy.lr, momentum=strategy.momentum, weight_decay=strategy.weight_decay,
            arch_lr=strategy.arch_lr, arch_betas=strategy.arch_betas,
            arch_weight_decay=strategy.arch_weight_decay, grad_clip=strategy.grad_clip)

        def step() -> Any:
            return optimizer.step(train, val, order)

        arch = net.arch_parameters()
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    net.train()

    def forward() -> Tensor:
        return F.cross_entropy(net(train[0]), train[1])

    def fwd_bwd() -> None:
        for p in [*net.parameters(), *arch]:
            p.grad = None
        forward().backward()

    return Bench(net, train, val, forward, fwd_bwd, step, optimizer)

