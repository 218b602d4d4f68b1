"""Evaluators: score an architecture (train it, look it up, or compute a zero-cost proxy).

`EVALUATORS` maps a name (as typed on the command line or in a config) to a class:
"train" → `TrainEvaluator`, "proxy" → `ZeroCostEvaluator`.
"""

from __future__ import annotations

from typing import Any

from archsearch.evaluators._base import Evaluator, Metrics, TrialFailed
from archsearch.evaluators.proxy import PROXIES, ZeroCostEvaluator
from archsearch.evaluators.table import TableEvaluator
from archsearch.evaluators.train import TrainEvaluator
from archsearch.registry import Registry

EVALUATORS: Registry[type[Any]] = Registry("evaluator")
EVALUATORS.add("train", TrainEvaluator)
EVALUATORS.add("proxy", ZeroCostEvaluator)
EVALUATORS.add("table", TableEvaluator)

__all__ = [
    "EVALUATORS",
    "PROXIES",
    "Evaluator",
    "Metrics",
    "TableEvaluator",
    "TrainEvaluator",
    "TrialFailed",
    "ZeroCostEvaluator",
]
