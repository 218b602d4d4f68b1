"""TrainEvaluator: metrics, learning, per-arch determinism, failures as TrialFailed."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from archsearch.data import load_dataset
from archsearch.errors import ConfigError
from archsearch.evaluators import EVALUATORS, TrainEvaluator, TrialFailed
from archsearch.hardware import count_macs, num_params
from archsearch.space import SearchSpace
from archsearch.spaces.darts import DartsCellSpace

METRICS = {"val_acc", "val_loss", "train_loss", "num_params", "macs", "train_seconds", "epochs"}


def tiny_net(c, *, width: int = 8, num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """conv → activation → pool → linear; the "global16" pool cannot run on 8×8 inputs."""
    act = c.op("act", {"relu": nn.ReLU, "tanh": nn.Tanh})
    pool = c.op("pool", {"avg2": partial(nn.AdaptiveAvgPool2d, 2),
                         "max2": partial(nn.AdaptiveMaxPool2d, 2),
                         "global16": partial(nn.AvgPool2d, 16)})
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), act, pool, nn.Flatten(),
                         nn.Linear(width * 4, num_classes))


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits", seed=0)
    return data.x_train[:600], data.y_train[:600]


@pytest.fixture(scope="module")
def space():
    return SearchSpace.from_builder(tiny_net, name="tiny_net")


def _evaluator(space, digits, **kwargs) -> TrainEvaluator:
    x, y = digits
    settings = {"epochs": 3, "batch_size": 32, "lr": 0.1, **kwargs}
    return TrainEvaluator(space, x_train=x[:400], y_train=y[:400], x_val=x[400:],
                          y_val=y[400:], num_classes=10, **settings)


def test_metrics_are_complete_and_the_network_learns(space, digits):
    arch = space.arch({"act": "relu", "pool": "avg2"})
    metrics = _evaluator(space, digits)(arch)
    assert set(metrics) == METRICS
    assert all(isinstance(v, int | float) and math.isfinite(v) for v in metrics.values())
    assert 0.0 <= metrics["val_acc"] <= 1.0
    assert metrics["val_acc"] > 0.35  # chance is 0.1 on ten classes; 3 epochs reach ~0.6
    assert metrics["train_loss"] < math.log(10)  # below the loss of a uniform guess
    assert metrics["epochs"] == 3 and metrics["train_seconds"] > 0
    model = space.build(arch, num_classes=10, in_channels=1)
    assert metrics["num_params"] == num_params(model)
    assert metrics["macs"] == count_macs(model, (1, 8, 8))


def test_same_arch_same_metrics_in_any_order_and_global_rng_untouched(space, digits, device):
    first, second = space.arch({"act": "relu", "pool": "max2"}), space.arch(
        {"act": "tanh", "pool": "avg2"})
    state = torch.random.get_rng_state()
    one = _evaluator(space, digits, epochs=1, device=device)
    a1, b1 = one(first), one(second)
    two = _evaluator(space, digits, epochs=1, device=device)
    b2, a2 = two(second), two(first)
    assert torch.equal(torch.random.get_rng_state(), state)
    for got, want in ((a1, a2), (b1, b2)):
        got, want = dict(got), dict(want)
        del got["train_seconds"], want["train_seconds"]
        assert got == want
    assert a1["val_loss"] != b1["val_loss"]


def test_the_seed_changes_the_trial(space, digits):
    arch = space.arch({"act": "relu", "pool": "avg2"})
    zero = _evaluator(space, digits, epochs=1, seed=0)(arch)
    one = _evaluator(space, digits, epochs=1, seed=1)(arch)
    assert zero["train_loss"] != one["train_loss"]


def test_a_diverging_loss_fails_the_trial_naming_epoch_and_step(space, digits):
    arch = space.arch({"act": "relu", "pool": "avg2"})
    with pytest.raises(TrialFailed, match=r"^loss became (NaN|-?inf) at epoch 1 step \d+$"):
        _evaluator(space, digits, epochs=2, lr=1e30)(arch)


def test_a_network_that_cannot_run_on_the_input_fails_the_trial(space, digits):
    arch = space.arch({"act": "relu", "pool": "global16"})
    with pytest.raises(TrialFailed, match=r"cannot run on inputs of shape \(1, 8, 8\)") as info:
        _evaluator(space, digits)(arch)
    assert "\n" not in str(info.value)


def test_bad_data_and_settings_are_config_errors(space, digits):
    x, y = digits
    with pytest.raises(ConfigError, match="labels"):
        TrainEvaluator(space, x_train=x, y_train=y, x_val=x, y_val=y, num_classes=5)
    with pytest.raises(ConfigError, match="images"):
        TrainEvaluator(space, x_train=x.flatten(1), y_train=y, x_val=x, y_val=y,
                       num_classes=10)
    with pytest.raises(ConfigError, match="epochs"):
        TrainEvaluator(space, x_train=x, y_train=y, x_val=x, y_val=y, num_classes=10,
                       epochs=0)


def test_trains_a_darts_network_passing_build_kwargs(digits):
    x, y = digits
    space = DartsCellSpace()
    arch = space.sample(np.random.default_rng(0))
    evaluator = EVALUATORS.get("train")(
        space, x_train=x[:200], y_train=y[:200], x_val=x[400:], y_val=y[400:],
        num_classes=10, epochs=1, batch_size=50, build_kwargs={"channels": 4, "layers": 3})
    metrics = evaluator(arch)
    model = space.build(arch, channels=4, layers=3, num_classes=10, in_channels=1)
    assert metrics["num_params"] == num_params(model)
    assert 0.0 <= metrics["val_acc"] <= 1.0 and math.isfinite(metrics["val_loss"])
