"""Architecture gradients for bilevel optimisation (DARTS: arXiv:1806.09055, §2.3).

The problem is  min_α L_val(w*(α), α)  s.t.  w*(α) = argmin_w L_train(w, α).  DARTS
approximates w*(α) by one virtual SGD step,

    w' = w − ξ ∇_w L_train(w, α)                                              (eq. 6)

(with the optimiser's momentum and weight decay folded in, as in the published code) and
differentiates through it:

    ∇_α L_val(w', α) − ξ ∇²_{α,w} L_train(w, α) ∇_{w'} L_val(w', α)           (eq. 7)

Three functions share one signature and work for *any* module whose parameters split into
weights and architecture parameters, with any pair of loss callables `loss(model, batch)`:

* `first_order`: ξ = 0, i.e. ∇_α L_val(w, α).
* `finite_difference`: eq. 7 with the Hessian-vector product by central differences (eq. 8),
  ε = 0.01 / ‖∇_{w'} L_val(w', α)‖ and w± = w ± ε ∇_{w'} L_val(w', α). Low memory; the default.
* `exact`: eq. 7 by double backward through the virtual step. The oracle in tests.

Data-parallel training (`archsearch.distributed`) passes `average`, which returns tensors'
means over the ranks (differentiably). The second-order functions average what must be the
same on every rank: ∇w L_train of the virtual step (so every rank holds the same w') and
∇w' L_val (so every rank perturbs w along the same direction with the same ε). What stays
per rank is linear in the rank's own batch: ∇α L_val and the finite-difference quotient,
whose mean over the ranks (taken by the caller) is the global batch's.

No model is copied and no live tensor is changed: every substituted set of weights goes
through `torch.func.functional_call`, and buffers (BN running statistics) are given as
clones, so these passes leave the module's state bit-identical. Only the architecture
gradients are requested from autograd where the weights' gradients are not needed, which
skips the weight-gradient convolutions of those backward passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

LossFn = Callable[[nn.Module, Any], Tensor]
Grads = dict[str, Tensor]
Averager = Callable[[Sequence[Tensor]], list[Tensor]]


@dataclass
class VirtualStep:
    """The virtual SGD step w' = w − ξ (μ·buf + ∇w L_train + λ·w)  (eq. 6, with momentum).

    Args:
        xi: ξ, the virtual learning rate (DARTS uses the current weight learning rate).
        momentum: μ of the weight optimiser.
        weight_decay: λ of the weight optimiser.
        momentum_buffers: the optimiser's momentum buffer per weight name (missing = zero).
    """

    xi: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    momentum_buffers: Mapping[str, Tensor] = field(default_factory=dict)

    def apply(self, weights: Mapping[str, Tensor], grads: Sequence[Tensor]) -> dict[str, Tensor]:
        """w' per weight tensor, differentiable in `weights` and `grads`."""
        out = {}
        for (name, w), g in zip(weights.items(), grads, strict=True):
            step = g + self.weight_decay * w if self.weight_decay else g
            buf = self.momentum_buffers.get(name)
            if buf is not None and self.momentum:
                step = step + self.momentum * buf
            out[name] = w - self.xi * step
        return out

    def apply_flat(self, weights: Mapping[str, Tensor], w_flat: Tensor,
                   grads: Sequence[Tensor]) -> dict[str, Tensor]:
        """The same w', elementwise the same arithmetic, computed on all weights at once.

        `w_flat` holds the weights' values flattened in order (`_flat`). Six operations on
        one buffer instead of six per weight tensor (the DARTS supernet has 1,399); the
        result is views into one buffer, detached.
        """
        step = _flat(grads)
        if self.weight_decay:
            step = step + self.weight_decay * w_flat
        if self.momentum and self.momentum_buffers:
            buffers = [self.momentum_buffers.get(n) for n in weights]
            step = step + self.momentum * _flat(
                [torch.zeros_like(w) if b is None else b
                 for b, w in zip(buffers, weights.values(), strict=True)])
        return _views(weights, w_flat - self.xi * step)


class _Bound(nn.Module):
    """Lets `functional_call` substitute a model's parameters inside a loss callable."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> Tensor:
        return self.loss_fn(self.model, batch)


def split_parameters(model: nn.Module, arch_names: Sequence[str]) -> tuple[Grads, Grads]:
    """(weights, arch) parameter dicts by name; unknown arch names raise."""
    named = dict(model.named_parameters())
    missing = [n for n in arch_names if n not in named]
    if missing:
        raise KeyError(f"no parameter named {missing[0]!r} in the model")
    arch = {n: named[n] for n in arch_names}
    weights = {n: p for n, p in named.items() if n not in arch and p.requires_grad}
    return weights, arch


def loss_at(model: nn.Module, loss_fn: LossFn, batch: Any,
            params: Mapping[str, Tensor] | None = None,
            slots: SubstitutionSlots | None = None) -> Tensor:
    """`loss_fn(model, batch)` with `params` substituted and buffers cloned (left untouched).

    `slots`, optional, is `substitution_slots(model)` when the caller substitutes into the
    same model several times (it saves a walk over the modules per call)."""
    substitutes = (slots or substitution_slots(model)).substitutes(params or {})
    # Tied weights are substituted under every name above, so functional_call need not look
    # for them itself (its search walks the module tree twice more: about 14 ms of the
    # DARTS supernet's 5,000 modules, per pass).
    return functional_call(_Bound(model, loss_fn), substitutes, (batch,), tie_weights=False)


@dataclass(frozen=True)
class SubstitutionSlots:
    """Where `loss_at` substitutes, under `_Bound`'s names: each parameter slot with the
    `named_parameters` name of the parameter it holds (tied aliases share one), and each
    buffer."""

    params: tuple[tuple[str, str], ...]  # (slot, parameter name)
    buffers: tuple[tuple[str, Tensor], ...]  # (slot, buffer)

    def substitutes(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """`params` (by `named_parameters` name) under every slot of theirs, and a clone of
        every buffer."""
        out = {slot: params[name] for slot, name in self.params if name in params}
        out.update((slot, b.clone()) for slot, b in self.buffers)
        return out


def substitution_slots(model: nn.Module) -> SubstitutionSlots:
    """The slots of `model`, found in one walk of its modules."""
    params: list[tuple[str, str]] = []
    buffers: list[tuple[str, Tensor]] = []
    name_of: dict[int, str] = {}  # id(parameter) -> its named_parameters name (first seen)
    for prefix, module in model.named_modules(remove_duplicate=False):
        dot = f"{prefix}." if prefix else ""
        for name, p in module._parameters.items():
            if p is not None:
                params.append((f"model.{dot}{name}", name_of.setdefault(id(p), dot + name)))
        for name, b in module._buffers.items():
            if b is not None:
                buffers.append((f"model.{dot}{name}", b))
    return SubstitutionSlots(tuple(params), tuple(buffers))


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    """The values of `tensors`, detached, concatenated into one flat buffer (one copy).

    What lives from one pass into the next (w', ∇w' L_val, w±) would otherwise be hundreds
    of small allocations scattered among the activations of the pass that made them; the
    allocator can then neither reuse nor return the space between them, and every later
    pass grows the heap (measured: +100 MB peak for a second-order step). Values are equal.
    """
    return torch.cat([(t.detach() if t.requires_grad else t).reshape(-1) for t in tensors])


def _views(like: Mapping[str, Tensor], flat: Tensor) -> dict[str, Tensor]:
    """`flat` cut into views shaped like the tensors of `like`, under the same names."""
    parts = flat.split([t.numel() for t in like.values()])
    return {n: v.view(t.shape) for (n, t), v in zip(like.items(), parts, strict=True)}


def first_order(model: nn.Module, arch_names: Sequence[str], train_loss: LossFn,
                val_loss: LossFn, train_batch: Any, val_batch: Any,
                step: VirtualStep, *, average: Averager | None = None) -> Grads:
    """∇_α L_val(w, α): the first-order approximation (ξ = 0); `train_*` and `step` unused,
    and `average` too (the result is the rank's own; the caller averages it)."""
    weights, arch = split_parameters(model, arch_names)
    # Detached weights: autograd then computes no weight gradient at all.
    loss = loss_at(model, val_loss, val_batch, {n: w.detach() for n, w in weights.items()})
    return dict(zip(arch, torch.autograd.grad(loss, list(arch.values())), strict=True))


def _virtual_weights(model: nn.Module, weights: Grads, train_loss: LossFn, train_batch: Any,
                     step: VirtualStep, *, create_graph: bool, average: Averager | None,
                     w_flat: Tensor | None = None,
                     slots: SubstitutionSlots | None = None) -> dict[str, Tensor]:
    """w' (eq. 6): differentiable in w with `create_graph`, else detached views into one
    buffer, computed from `w_flat`, the weights flattened (`_flat`)."""
    loss = loss_at(model, train_loss, train_batch, slots=slots)
    grads = torch.autograd.grad(loss, list(weights.values()), create_graph=create_graph)
    if average is not None:  # the global batch's ∇w L_train: the same w' on every rank
        grads = average(grads)
    if create_graph:
        return step.apply(weights, grads)
    if w_flat is None:
        w_flat = _flat(list(weights.values()))
    return step.apply_flat(weights, w_flat, grads)


def finite_difference(model: nn.Module, arch_names: Sequence[str], train_loss: LossFn,
                      val_loss: LossFn, train_batch: Any, val_batch: Any,
                      step: VirtualStep, *, radius: float = 0.01,
                      average: Averager | None = None) -> Grads:
    """Eq. 7 with the Hessian-vector product by central finite differences (eq. 8).

    `radius` is the paper's r in ε = r / ‖∇_{w'} L_val‖ (0.01). On ReLU networks a step of
    that size crosses kinks, so the difference quotient approximates the exact product
    only roughly — by design of the paper, and cheap; a smaller radius converges to it.
    """
    weights, arch = split_parameters(model, arch_names)
    slots = substitution_slots(model)  # one walk of the modules for the four passes
    w_flat = _flat(list(weights.values()))
    # w' (eq. 6), as leaves: we want ∇_{w'} L_val and ∇_α L_val from one backward pass.
    virtual = {n: w.requires_grad_() for n, w in _virtual_weights(
        model, weights, train_loss, train_batch, step, create_graph=False,
        average=average, w_flat=w_flat, slots=slots).items()}
    val = loss_at(model, val_loss, val_batch, virtual, slots)
    grads = torch.autograd.grad(val, [*arch.values(), *virtual.values()])
    del val, virtual
    d_arch, d_virtual = grads[:len(arch)], grads[len(arch):]
    del grads
    if average is not None:  # one direction and one ε for all ranks
        d_virtual = tuple(average(d_virtual))
    d_flat = _flat(d_virtual)
    del d_virtual
    if step.xi == 0:
        return dict(zip(arch, d_arch, strict=True))
    norm = torch.linalg.vector_norm(d_flat)
    if norm == 0:  # L_val does not depend on w: the second-order term vanishes
        return dict(zip(arch, d_arch, strict=True))
    eps = radius / norm
    # HVP ≈ (∇_α L_train(w⁺, α) − ∇_α L_train(w⁻, α)) / 2ε,  w± = w ± ε ∇_{w'} L_val  (eq. 8)
    sides = []
    for sign in (1.0, -1.0):
        shifted = w_flat + sign * eps * d_flat
        loss = loss_at(model, train_loss, train_batch, _views(weights, shifted), slots)
        sides.append(torch.autograd.grad(loss, list(arch.values())))
        del loss, shifted
    return {n: da - step.xi * (gp - gm) / (2 * eps)
            for n, da, gp, gm in zip(arch, d_arch, *sides, strict=True)}


def exact(model: nn.Module, arch_names: Sequence[str], train_loss: LossFn, val_loss: LossFn,
          train_batch: Any, val_batch: Any, step: VirtualStep, *,
          average: Averager | None = None) -> Grads:
    """Eq. 7 exactly: ∇_α L_val(w'(α), α), differentiating through the virtual step (and,
    data-parallel, through the average of the ranks' ∇w L_train, see `DistributedContext.mean`)."""
    weights, arch = split_parameters(model, arch_names)
    slots = substitution_slots(model)
    virtual = _virtual_weights(model, weights, train_loss, train_batch, step, create_graph=True,
                               average=average, slots=slots)
    val = loss_at(model, val_loss, val_batch, virtual, slots)
    return dict(zip(arch, torch.autograd.grad(val, list(arch.values())), strict=True))


HypergradFn = Callable[..., Grads]

HYPERGRADS: dict[str, HypergradFn] = {
    "first": first_order,
    "finite-difference": finite_difference,
    "exact": exact,
}
