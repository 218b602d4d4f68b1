"""Training recipes: the paper's CIFAR-10 settings, the quick one, and overrides."""

from __future__ import annotations

import pytest

from archsearch.errors import ConfigError
from archsearch.train import TRAIN_RECIPES, resolve_recipe


def test_paper_recipe_is_darts_appendix_a2() -> None:
    paper = resolve_recipe("cifar10")
    assert paper == {"recipe": "paper", "epochs": 600, "channels": 36, "layers": 20,
                     "batch_size": 96, "lr": 0.025, "momentum": 0.9, "weight_decay": 3e-4,
                     "grad_clip": 5.0, "auxiliary": True, "auxiliary_weight": 0.4,
                     "drop_path": 0.2, "cutout": True, "label_smoothing": 0.0}


def test_the_dataset_picks_the_recipe_unless_one_is_named() -> None:
    assert resolve_recipe("digits")["recipe"] == "quick"
    assert resolve_recipe("npz")["recipe"] == "paper"
    assert resolve_recipe("digits", "paper")["channels"] == 36
    assert resolve_recipe("cifar10", "quick")["channels"] == 16


def test_given_values_override_and_none_means_not_given() -> None:
    s = resolve_recipe("cifar10", overrides={"epochs": 5, "auxiliary": False, "lr": None,
                                             "label_smoothing": 0.1})
    assert (s["epochs"], s["auxiliary"], s["lr"], s["label_smoothing"]) == (5, False, 0.025, 0.1)
    assert TRAIN_RECIPES["paper"]["epochs"] == 600  # the table is not changed


def test_unknown_recipe_or_setting() -> None:
    with pytest.raises(ConfigError, match="--recipe"):
        resolve_recipe("digits", "fast")
    with pytest.raises(ConfigError, match="'warp' is not a training setting"):
        resolve_recipe("digits", overrides={"warp": 9})
