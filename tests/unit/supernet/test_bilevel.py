"""The bilevel optimiser's step: multi-tensor kernels change speed, not values; the cycle
collector it pauses is back as it was, and pausing it leaks nothing."""

from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F

from archsearch.spaces.darts import DartsCellSpace
from archsearch.supernet import BilevelOptimizer, DartsSupernet
from archsearch.supernet._bilevel import cyclic_gc_paused
from archsearch.train import foreach_supported


def _ce(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def _weights_after_steps(foreach: bool | None) -> list[torch.Tensor]:
    torch.manual_seed(0)
    net = DartsSupernet(DartsCellSpace(nodes=2), channels=4, layers=3, in_channels=1)
    weights = net.weight_parameters()
    sgd = torch.optim.SGD(weights, lr=0.1, momentum=0.9, weight_decay=3e-4, foreach=foreach)
    adam = torch.optim.Adam(net.arch_parameters(), lr=3e-4)
    # A small clipping norm, so that clipping really scales the gradients.
    opt = BilevelOptimizer(net, net.arch_parameter_names(), train_loss=_ce, val_loss=_ce,
                           weight_optimizer=sgd, arch_optimizer=adam, grad_clip=0.1)
    if foreach is None:  # the per-tensor reference: clipping without foreach as well
        opt.weight_step = _per_tensor_weight_step(opt)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        batch = (torch.randn(4, 1, 8, 8, generator=g), torch.randint(0, 10, (4,), generator=g))
        opt.step(batch, batch)
    return [w.detach().clone() for w in weights]


def _per_tensor_weight_step(opt: BilevelOptimizer):
    def step(batch):
        loss = opt.train_loss(opt.model, batch)
        grads = torch.autograd.grad(loss, list(opt.weights.values()))
        for p, grad in zip(opt.weights.values(), grads, strict=True):
            p.grad = grad
        torch.nn.utils.clip_grad_norm_(list(opt.weights.values()), opt.grad_clip,
                                       foreach=False)
        opt.weight_optimizer.step()
        for p in opt.weights.values():
            p.grad = None
        return loss.detach()
    return step


def test_foreach_is_used_on_cpu():
    assert foreach_supported([torch.zeros(2, requires_grad=True)]) is True
    assert foreach_supported([]) is None


def test_multi_tensor_steps_give_bit_identical_weights():
    fast, slow = _weights_after_steps(True), _weights_after_steps(None)
    assert all(torch.equal(a, b) for a, b in zip(fast, slow, strict=True))


@pytest.mark.parametrize("order", ["first", "second"])
def test_a_step_makes_no_reference_cycles(order):
    # What justifies pausing the cycle collector during a step: reference counting alone
    # frees everything a step allocates, so nothing is left for the collector to find.
    torch.manual_seed(0)
    net = DartsSupernet(DartsCellSpace(nodes=2), channels=4, layers=3, in_channels=1)
    opt = BilevelOptimizer(net, net.arch_parameter_names(), train_loss=_ce, val_loss=_ce,
                           weight_optimizer=torch.optim.SGD(net.weight_parameters(), lr=0.1,
                                                            momentum=0.9),
                           arch_optimizer=torch.optim.Adam(net.arch_parameters()), order=order)
    batch = (torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))
    opt.step(batch, batch)  # creates the optimisers' state
    gc.collect()
    opt.step(batch, batch)
    assert gc.isenabled()
    assert gc.collect() == 0


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_restored_as_it_was(enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with pytest.raises(RuntimeError), cyclic_gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("a failing step")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
