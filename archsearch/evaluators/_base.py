"""What an evaluator is: a callable `Arch -> Metrics` that returns its result.

Metrics are a flat mapping from name to a JSON number, e.g. `{"val_acc": 0.91,
"num_params": 12034, "train_seconds": 3.2}`. An evaluator that cannot score an arch (the
loss diverged, the network does not fit the input) raises `TrialFailed`; the search loop
records the failure and goes on. Any other exception is a bug and propagates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from archsearch.space import Arch

Metrics = Mapping[str, float]


class TrialFailed(Exception):
    """An architecture could not be evaluated; the message says why (kept in the journal)."""


class Evaluator(Protocol):
    def __call__(self, arch: Arch) -> Metrics: ...
