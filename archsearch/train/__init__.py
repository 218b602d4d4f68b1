"""Training of discrete networks: the DARTS retraining recipe, checkpoints and resume."""

from __future__ import annotations

from archsearch.train._checkpoint import (
    CHECKPOINT_NAME,
    MAX_LOSS,
    check_loss,
    last_good,
    load_checkpoint,
    read_run_config,
    remove_stale_temporaries,
    restart_log,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from archsearch.train._evaluate import cosine_lr, evaluate, foreach_supported
from archsearch.train._resumable import TRAIN_CHECKPOINT, CheckpointedFit
from archsearch.train._trainer import Trainer
from archsearch.train.recipes import RECIPE_NAMES, TRAIN_RECIPES, resolve_recipe

__all__ = [
    "CHECKPOINT_NAME",
    "MAX_LOSS",
    "RECIPE_NAMES",
    "TRAIN_CHECKPOINT",
    "TRAIN_RECIPES",
    "CheckpointedFit",
    "Trainer",
    "check_loss",
    "cosine_lr",
    "evaluate",
    "foreach_supported",
    "last_good",
    "load_checkpoint",
    "read_run_config",
    "remove_stale_temporaries",
    "restart_log",
    "resolve_recipe",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
