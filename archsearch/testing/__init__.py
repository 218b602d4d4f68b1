"""Toy spaces, an analytic objective and the strategy contract, shipped for plug-in authors.

`archsearch.testing.contracts` (the `StrategyContract` checks) needs pytest; the toys here
need nothing beyond numpy.
"""

from __future__ import annotations

from archsearch.testing.toys import (
    TOY_SPACES,
    ToyObjective,
    best_score,
    categorical_space,
    make_toy_space,
    mixed_space,
    single_space,
)

__all__ = [
    "TOY_SPACES",
    "ToyObjective",
    "best_score",
    "categorical_space",
    "make_toy_space",
    "mixed_space",
    "single_space",
]
