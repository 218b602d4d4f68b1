"""The DARTS strategy and the bilevel optimiser it runs (Algorithm 1)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archsearch.data import load_dataset
from archsearch.errors import ConfigError
from archsearch.spaces.darts import DartsCellSpace
from archsearch.strategies import DARTS
from archsearch.supernet import BilevelOptimizer


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=512)


def _search(digits, **kwargs):
    settings = {"epochs": 1, "channels": 4, "layers": 3, "batch_size": 64, "seed": 0}
    settings.update(kwargs)
    strategy = DARTS(DartsCellSpace(), **settings)
    return strategy.search(digits.x_train, digits.y_train, num_classes=10, progress=False)


def test_search_learns_and_logs_every_epoch(digits):
    records = []
    strategy = DARTS(DartsCellSpace(), epochs=3, channels=4, layers=3, batch_size=32,
                     arch_lr=3e-3, seed=0)
    result = strategy.search(digits.x_train, digits.y_train, num_classes=10, progress=False,
                             on_epoch=records.append)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["val_accuracy"] > 0.5  # chance is 0.1
    assert len(records[-1]["alphas"]["normal"]) == 14
    DartsCellSpace().validate(result.arch)
    moved = torch.tensor(result.alphas["normal"]).abs().max().item()
    assert moved > 1e-2  # α left its 1e-3 initialisation


def test_same_seed_same_search(digits):
    a, b = _search(digits), _search(digits)
    assert a.alphas == b.alphas and a.arch == b.arch
    c = _search(digits, seed=1)
    assert c.alphas != a.alphas


def test_second_order_search_runs(digits):
    result = _search(digits, order="second")
    DartsCellSpace().validate(result.arch)


def test_batch_larger_than_half_the_data_is_refused(digits):
    with pytest.raises(ConfigError, match="batch-size"):
        _search(digits, batch_size=400)


class _Quadratic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor([1.0]))
        self.w = nn.Parameter(torch.tensor([3.0]))


def _loss(m, batch):
    return ((m.w - m.a) ** 2).sum() + (m.a**2).sum()


def _bilevel(model, **kwargs):
    return BilevelOptimizer(model, ["a"], train_loss=_loss, val_loss=_loss,
                            weight_optimizer=torch.optim.SGD([model.w], lr=0.1, momentum=0.9,
                                                             weight_decay=0.01),
                            arch_optimizer=torch.optim.SGD([model.a], lr=0.1), **kwargs)


def test_weight_step_leaves_alpha_untouched_and_alpha_step_leaves_weights():
    model = _Quadratic()
    opt = _bilevel(model)
    opt.weight_step(None)
    assert model.a.item() == 1.0 and model.a.grad is None and model.w.item() != 3.0
    w = model.w.item()
    opt.arch_step(None, None)
    assert model.w.item() == w and model.a.item() != 1.0


def test_virtual_step_reads_the_weight_optimiser():
    model = _Quadratic()
    opt = _bilevel(model, order="second")
    opt.weight_step(None)  # creates the momentum buffer
    step = opt.virtual_step()
    assert step.xi == 0.1 and step.momentum == 0.9 and step.weight_decay == 0.01
    assert torch.equal(step.momentum_buffers["w"],
                       opt.weight_optimizer.state[model.w]["momentum_buffer"])
    assert _bilevel(model, xi=0.5).virtual_step().xi == 0.5


def test_gradient_clipping_bounds_the_weight_update():
    model = _Quadratic()
    model.w.data.fill_(1e6)
    opt = BilevelOptimizer(model, ["a"], train_loss=_loss, val_loss=_loss,
                           weight_optimizer=torch.optim.SGD([model.w], lr=1.0),
                           arch_optimizer=torch.optim.SGD([model.a], lr=0.1), grad_clip=5.0)
    opt.weight_step(None)
    assert model.w.item() == pytest.approx(1e6 - 5.0)


@pytest.mark.parametrize("kwargs", [{"order": "third"}, {"hvp": "magic"}])
def test_bad_orders_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        _bilevel(_Quadratic(), **kwargs)


def test_supernet_loss_is_cross_entropy_of_logits(digits):
    result = _search(digits)
    net = result.supernet.eval()
    logits = net(digits.x_test[:16])
    assert F.cross_entropy(logits, digits.y_test[:16]).item() < 5.0
