"""Tabular benchmarks: precomputed training results to search against without training.

`NasBench201Table` reads the NAS-Bench-201 tables (Dong & Yang, ICLR 2020,
arXiv:2001.00326); `find_nb201_dir` finds them. Nothing here imports torch, so tables load
fast and can be used from plain numpy code. The evaluator that searches against a table is
`archsearch.evaluators.TableEvaluator`.
"""

from __future__ import annotations

from archsearch.benchmarks.nb201 import (
    NB201_ENV_VAR,
    NB201_FILES,
    BestCell,
    NasBench201Table,
    find_nb201_dir,
    simulated_train_seconds,
)

__all__ = [
    "NB201_ENV_VAR",
    "NB201_FILES",
    "BestCell",
    "NasBench201Table",
    "find_nb201_dir",
    "simulated_train_seconds",
]
