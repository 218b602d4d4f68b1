"""Training recipes for found cells: the DARTS paper's CIFAR-10 settings and a quick one.

`paper` is the retraining recipe of DARTS (Liu, Simonyan & Yang, ICLR 2019,
arXiv:1806.09055, §A.2): a network of 20 cells with C=36, 600 epochs at batch 96, SGD with
lr 0.025 (cosine to 0), momentum 0.9, weight decay 3e-4, an auxiliary head weighted 0.4,
drop-path rising linearly to 0.2, cutout 16 and gradient clipping at norm 5. `quick` is
sized for small data such as the built-in 8×8 digits: a 6-cell C=16 network trained for
30 epochs reaches ≥ 97 % test accuracy there in minutes on a CPU.

A recipe is a table of defaults; every value can be overridden on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archsearch.errors import ConfigError

TRAIN_RECIPES: dict[str, dict[str, Any]] = {
    "quick": {"epochs": 30, "channels": 16, "layers": 6, "batch_size": 64, "lr": 0.05,
              "momentum": 0.9, "weight_decay": 3e-4, "grad_clip": 5.0, "auxiliary": False,
              "auxiliary_weight": 0.4, "drop_path": 0.0, "cutout": False,
              "label_smoothing": 0.0},
    "paper": {"epochs": 600, "channels": 36, "layers": 20, "batch_size": 96, "lr": 0.025,
              "momentum": 0.9, "weight_decay": 3e-4, "grad_clip": 5.0, "auxiliary": True,
              "auxiliary_weight": 0.4, "drop_path": 0.2, "cutout": True,
              "label_smoothing": 0.0},
}
RECIPE_NAMES = tuple(TRAIN_RECIPES)


def default_recipe(dataset: str) -> str:
    """`quick` on the built-in digits, the paper's recipe on everything else."""
    return "quick" if dataset == "digits" else "paper"


def resolve_recipe(dataset: str, recipe: str | None = None,
                   overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The training settings of a recipe with the given values put over it.

    Args:
        dataset: decides the recipe when `recipe` is None (see `default_recipe`).
        recipe: "quick" or "paper".
        overrides: setting -> value; None values are ignored (a flag not given).

    Returns:
        `{"recipe": name, **settings}`.

    Raises:
        ConfigError: an unknown recipe or setting.
    """
    name = default_recipe(dataset) if recipe is None else recipe
    if name not in TRAIN_RECIPES:
        raise ConfigError(f"--recipe must be one of {', '.join(RECIPE_NAMES)}, got {name!r}")
    settings = {"recipe": name, **TRAIN_RECIPES[name]}
    for key, value in (overrides or {}).items():
        if key not in TRAIN_RECIPES[name]:
            raise ConfigError(f"{key!r} is not a training setting (known: "
                              f"{', '.join(TRAIN_RECIPES[name])})")
        if value is not None:
            settings[key] = value
    return settings
