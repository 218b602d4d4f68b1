"""Alternating bilevel optimisation (DARTS: arXiv:1806.09055, Algorithm 1).

Each step first updates α on a validation batch with the architecture gradient of the
chosen order, then w on a training batch. It works for any module whose parameters split
into weights and architecture parameters, with any pair of losses `loss(model, batch)`:
the DARTS supernet and the paper's two-parameter toy problem run through the same code.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from archsearch.errors import ConfigError
from archsearch.supernet._hypergrad import (
    HYPERGRADS,
    Averager,
    LossFn,
    VirtualStep,
    split_parameters,
)
from archsearch.train import foreach_supported

ORDERS = ("first", "second")
HVPS = ("finite-difference", "exact")


class BilevelOptimizer:
    """Updates α then w, as in Algorithm 1.

    Args:
        model: the module; its parameters named in `arch_names` are α, the rest are w.
        arch_names: names of the architecture parameters.
        train_loss, val_loss: `loss(model, batch) -> scalar tensor`.
        weight_optimizer: optimiser over the weights (SGD in DARTS). Its lr, momentum,
            weight decay and momentum buffers define the virtual step of second order.
        arch_optimizer: optimiser over α (Adam in DARTS).
        order: "first" (ξ = 0) or "second" (unrolled, eq. 7).
        hvp: for second order, "finite-difference" (eq. 8, default) or "exact".
        xi: ξ of the virtual step; None means the weight optimiser's current lr.
        grad_clip: max global norm of the weight gradient (None: no clipping).
        average: returns tensors' means over the ranks of a data-parallel run
            (`DistributedContext.mean`; None: one process). Each step's gradients (α's,
            then w's) are averaged before they are used (clipping comes after), and the
            second-order gradient averages its virtual step and HVP direction with it.
    """

    def __init__(self, model: nn.Module, arch_names: Sequence[str], *, train_loss: LossFn,
                 val_loss: LossFn, weight_optimizer: torch.optim.Optimizer,
                 arch_optimizer: torch.optim.Optimizer, order: str = "first",
                 hvp: str = "finite-difference", xi: float | None = None,
                 grad_clip: float | None = 5.0,
                 average: Averager | None = None) -> None:
        if order not in ORDERS:
            raise ConfigError(f"--order must be one of {', '.join(ORDERS)}, got {order!r}")
        if hvp not in HVPS:
            raise ConfigError(f"--hvp must be one of {', '.join(HVPS)}, got {hvp!r}")
        self.model = model
        self.arch_names = tuple(arch_names)
        self.weights, self.arch = split_parameters(model, self.arch_names)
        self.train_loss = train_loss
        self.val_loss = val_loss
        self.weight_optimizer = weight_optimizer
        self.arch_optimizer = arch_optimizer
        self.order = order
        self.hypergrad = HYPERGRADS["first" if order == "first" else hvp]
        self.xi = xi
        self.grad_clip = grad_clip
        self.average = average

    def virtual_step(self) -> VirtualStep:
        """ξ, μ, λ and momentum buffers read from the weight optimiser (explicitly)."""
        group = self.weight_optimizer.param_groups[0]
        xi = group["lr"] if self.xi is None else self.xi
        buffers = {}
        for name, p in self.weights.items():
            buf = self.weight_optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buffers[name] = buf
        return VirtualStep(xi=xi, momentum=group.get("momentum", 0.0),
                           weight_decay=group.get("weight_decay", 0.0), momentum_buffers=buffers)

    def arch_step(self, train_batch: Any, val_batch: Any) -> None:
        """One update of α with the architecture gradient of the chosen order (α's `.grad`
        is freed after the update)."""
        grads = self.hypergrad(self.model, self.arch_names, self.train_loss, self.val_loss,
                               train_batch, val_batch, self.virtual_step(),
                               average=self.average)
        if self.average is not None:
            grads = dict(zip(grads, self.average(list(grads.values())), strict=True))
        self.arch_optimizer.zero_grad(set_to_none=True)
        for name, p in self.arch.items():
            p.grad = grads[name]
        self.arch_optimizer.step()
        _drop_gradients(self.arch.values())

    def weight_step(self, train_batch: Any) -> Tensor:
        """One update of w on a training batch; returns the (detached) training loss.
        The weights' `.grad` are freed after the update."""
        loss = self.train_loss(self.model, train_batch)
        # Only the weights' gradients: α must not accumulate a training gradient.
        grads = torch.autograd.grad(loss, list(self.weights.values()))
        if self.average is not None:
            grads = self.average(grads)
        self.weight_optimizer.zero_grad(set_to_none=True)
        for p, g in zip(self.weights.values(), grads, strict=True):
            p.grad = g
        if self.grad_clip is not None:
            params = list(self.weights.values())
            nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=foreach_supported(params))
        self.weight_optimizer.step()
        _drop_gradients(self.weights.values())
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        """Both optimisers' states (momentum buffers, Adam moments and step counts).

        The module's own weights and α are not included: save `model.state_dict()` beside
        it. Together they are everything a later step depends on, so restoring both into a
        freshly built optimiser continues the exact same sequence of updates.
        """
        return {"weight_optimizer": self.weight_optimizer.state_dict(),
                "arch_optimizer": self.arch_optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (into optimisers over the same
        parameters, in the same order); a state that does not fit is a ConfigError."""
        try:
            self.weight_optimizer.load_state_dict(state["weight_optimizer"])
            self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"optimiser state does not fit this search ({first})") from None

    def step(self, train_batch: Any, val_batch: Any) -> Tensor:
        """Algorithm 1, one iteration: α on the validation batch, then w on the training batch."""
        with cyclic_gc_paused():
            self.arch_step(train_batch, val_batch)
            return self.weight_step(train_batch)


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Python's cycle collector off for the block, then back as it was.

    A search step frees everything it allocates by reference counting (it makes no
    reference cycles; tests check), but autograd's Python nodes trip the collector's
    thresholds dozens of times per step, and now and then that triggers a full collection
    over every object of the process: 0.1-0.25 s each, measured in a second-order step of
    5-6 s. The collections that would have run during the block run at the next allocation
    threshold after it, over what then survives.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _drop_gradients(params: Iterable[Tensor]) -> None:
    """Free the gradients once the optimiser has used them.

    Kept alive, these hundreds of small tensors sit among the next pass's activations, and
    the allocator cannot reuse or return the space between them (measured: tens of MB more
    peak memory per search step). Every step computes fresh ones with `autograd.grad`.
    """
    for p in params:
        p.grad = None
