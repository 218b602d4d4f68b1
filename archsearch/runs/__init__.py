"""Whole runs, as the CLI performs them: load data, search or train, write a run directory.

Each function validates every input *before* it creates the run directory, so bad input
never leaves a half-written run behind; every result file is written atomically, and a
checkpoint after every epoch lets `--resume` continue a run that was killed (Ctrl-C,
`kill -9`, a crash) to exactly the numbers an uninterrupted run gives.

Run directory of `search`:  config.json, log.jsonl (one record per epoch: losses,
accuracies, α, genotype), checkpoint.pt (the state after the last completed epoch),
supernet.pt (weights and α), arch.json (the derived cell, with its genotype rendered for
people; written last: it marks a finished search).
Run directory of `train`:  config.json (with the architecture), log.jsonl, checkpoint.pt,
metrics.json (`test_accuracy` is a fraction in [0, 1]), model.pt (last and best weights +
architecture + configuration, one file: `archsearch.train.model_file`; written last: it
marks a finished run).
"""

from archsearch.runs._common import (
    SEARCH_DEFAULTS,
    SEARCH_KEYS,
    TRAIN_DEFAULTS,
    VAL_FRACTION,
    Log,
    augmentation,
    build_network,
    defaults_for,
    profile,
    resolve_arch,
    resolve_device,
    run_meta,
    space_of,
)
from archsearch.runs.search import (
    draw_pictures,
    one_shot_strategy,
    resume_search,
    run_search,
)
from archsearch.runs.train import (
    check_train_settings,
    complete_train_settings,
    resume_train,
    run_train,
)
from archsearch.train import read_run_config, resolve_recipe

__all__ = [
    "SEARCH_DEFAULTS", "SEARCH_KEYS", "TRAIN_DEFAULTS", "VAL_FRACTION", "Log", "augmentation",
    "build_network", "check_train_settings", "complete_train_settings", "defaults_for",
    "draw_pictures", "one_shot_strategy", "profile", "read_run_config", "resolve_arch",
    "resolve_device", "resolve_recipe", "resume_search", "resume_train", "run_meta",
    "run_search", "run_train", "space_of",
]
