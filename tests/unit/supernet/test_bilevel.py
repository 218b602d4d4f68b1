"""The bilevel optimiser's weight step: multi-tensor kernels change speed, not values."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from archsearch.spaces.darts import DartsCellSpace
from archsearch.supernet import BilevelOptimizer, DartsSupernet
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
