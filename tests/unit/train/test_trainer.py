"""The Trainer: schedule, drop-path ramp, auxiliary loss, divergence detection."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archsearch.data import TensorLoader
from archsearch.errors import ConfigError
from archsearch.train import Trainer, cosine_lr, evaluate


class _Recorder(nn.Module):
    """A linear classifier that records its drop-path rate and can emit auxiliary logits."""

    def __init__(self, aux: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.aux_fc = nn.Linear(4, 3) if aux else None
        self.drop_path_prob = 0.0
        self.seen_rates: list[float] = []

    def forward_with_aux(self, x):
        self.seen_rates.append(self.drop_path_prob)
        x = x.flatten(1)
        aux = self.aux_fc(x) if self.aux_fc is not None and self.training else None
        return self.fc(x), aux

    def forward(self, x):
        return self.forward_with_aux(x)[0]


def _data(n: int = 30):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 2, 2, generator=g)
    teacher = torch.randn(4, 3, generator=g)
    return x, (x.flatten(1) @ teacher).argmax(1)  # linearly separable labels


def test_drop_path_rate_rises_linearly_over_the_epochs():
    x, y = _data()
    model = _Recorder()
    Trainer(epochs=4, drop_path_prob=0.2, progress=False).fit(
        model, TensorLoader(x, y, batch_size=30, seed=0))
    assert model.seen_rates == pytest.approx([0.0, 0.05, 0.1, 0.15])


def test_auxiliary_loss_is_added_with_its_weight():
    x, y = _data()
    model = _Recorder(aux=True).train()
    trainer = Trainer(epochs=1, auxiliary_weight=0.4, progress=False)
    logits, loss = trainer._loss(model, x, y)
    aux = model.aux_fc(x.flatten(1))
    expected = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
    assert loss.item() == pytest.approx(expected.item())


def test_training_learns_a_separable_problem():
    x, y = _data(120)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    history = Trainer(epochs=30, lr=0.2, progress=False).fit(
        model, TensorLoader(x, y, batch_size=32, seed=0))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert evaluate(model, x, y)[1] > 0.8


def test_a_diverging_loss_stops_with_the_epoch_named():
    x, y = _data()
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.fill_(math.nan)
    with pytest.raises(FloatingPointError, match="at epoch 1, step 1;"):
        Trainer(epochs=2, progress=False).fit(model, TensorLoader(x, y, batch_size=10, seed=0))


def test_a_loss_above_the_divergence_threshold_stops_the_run():
    x, y = _data()
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.mul_(1e6)  # finite, but a cross-entropy in the millions
    with pytest.raises(FloatingPointError, match=r"diverged .* at epoch 1, step 1;"):
        Trainer(epochs=1, progress=False).fit(model, TensorLoader(x, y, batch_size=10, seed=0))
    Trainer(epochs=1, max_loss=None, progress=False).fit(  # the threshold can be turned off
        model, TensorLoader(x, y, batch_size=10, seed=0))


def test_starting_at_a_later_epoch_keeps_the_schedule_and_scores_validation():
    x, y = _data()
    model = _Recorder()
    history = Trainer(epochs=4, lr=0.1, drop_path_prob=0.2, progress=False).fit(
        model, TensorLoader(x, y, batch_size=30, seed=0), start_epoch=2, val_data=(x, y))
    assert [r["epoch"] for r in history] == [3, 4]
    assert [r["lr"] for r in history] == [cosine_lr(0.1, 0.0, e, 4) for e in (2, 3)]
    assert model.seen_rates[:2] == pytest.approx([0.1, 0.1])  # rate of epoch 3, not 1
    assert all(0.0 <= r["val_accuracy"] <= 1.0 and r["val_loss"] > 0 for r in history)


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"drop_path_prob": 1.0},
                                    {"label_smoothing": -0.1}, {"lr": 0.0},
                                    {"weight_decay": -1.0}, {"grad_clip": 0.0},
                                    {"auxiliary_weight": -0.4}])
def test_bad_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        Trainer(**kwargs)


def test_cosine_schedule_ends_at_the_floor():
    assert cosine_lr(0.025, 0.001, 0, 50) == 0.025
    assert cosine_lr(0.025, 0.001, 25, 50) == pytest.approx(0.013)
    assert cosine_lr(0.025, 0.001, 50, 50) == pytest.approx(0.001)


def _weights_after_fit(monkeypatch, foreach: bool) -> list[torch.Tensor]:
    """Weights after training a small conv net, with or without multi-tensor kernels."""
    import archsearch.train._trainer as trainer_module

    if not foreach:  # the per-tensor loops PyTorch uses on CPU by default
        monkeypatch.setattr(trainer_module, "foreach_supported", lambda params: False)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(16, 3))
    x, y = _data(24)
    # A small clipping norm, so that clipping really scales the gradients.
    Trainer(epochs=2, lr=0.1, grad_clip=0.05, progress=False).fit(
        model, TensorLoader(x, y, batch_size=8, seed=0))
    monkeypatch.undo()
    return [p.detach().clone() for p in model.parameters()]


def test_multi_tensor_optimiser_and_clipping_give_bit_identical_weights(monkeypatch):
    fast = _weights_after_fit(monkeypatch, foreach=True)
    slow = _weights_after_fit(monkeypatch, foreach=False)
    assert all(torch.equal(a, b) for a, b in zip(fast, slow, strict=True))
    assert Trainer(progress=False).make_optimizer(nn.Linear(2, 2)).defaults["foreach"] is True
