"""Successive halving and Hyperband over a tabular benchmark's two fidelities: 12-epoch
accuracy as the cheap estimate, 200-epoch accuracy as the real thing.

Successive halving (Jamieson & Talwalkar, AISTATS 2016, arXiv:1502.07943) spends a small
budget on many configurations and the full budget only on the best fraction 1/η of them.
Hyperband (Li et al., JMLR 2018, arXiv:1603.06560) hedges against a misleading low fidelity
by alternating brackets of different aggressiveness. NAS-Bench-201 has exactly two
fidelities (its 12-epoch and 200-epoch training protocols), so there are two rungs: a
successive-halving bracket trains `configs` random cells for 12 epochs and retrains the best
⌈configs/η⌉ (by 12-epoch validation accuracy) for 200; Hyperband's other bracket trains random
cells for 200 epochs only, as many as cost about the same (its n_s formula with s = 0).

The two protocols are separate trainings (12 epochs is its own learning-rate schedule, not
the start of the 200-epoch one), so a promoted cell is charged its full 200-epoch time.
Everything runs under a budget of simulated seconds (the evaluators' `train_seconds`); it
needs two fidelities, so it is a loop of its own rather than an ask/tell strategy.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from archsearch.errors import ConfigError
from archsearch.evaluators import Evaluator, TrialFailed
from archsearch.space import Arch

LOW_EPOCHS = 12
HIGH_EPOCHS = 200
# Consecutive draws of already-seen cells after which the space counts as used up.
MAX_DRAWS = 1000


class Query(NamedTuple):
    """One evaluation of a tabular benchmark: when it ended (cumulative simulated seconds),
    at which fidelity, the validation accuracy it returned (NaN: failed) and the cell."""

    end_seconds: float
    epochs: int
    val_acc: float
    arch: Arch


class SuccessiveHalving:
    """Brackets of successive halving over uniformly random, never repeated cells.

    Args:
        configs: cells trained for 12 epochs per bracket.
        eta: the fraction 1/eta of them (rounded up) is retrained for 200 epochs. With
            eta = 200/12 ≈ 16, both rungs of a bracket cost about the same.
    """

    def __init__(self, *, configs: int = 64, eta: float = 16.0) -> None:
        if isinstance(configs, bool) or not isinstance(configs, int) or configs < 1:
            raise ConfigError(f"configs must be a positive integer, got {configs!r}")
        if (isinstance(eta, bool) or not isinstance(eta, int | float)
                or not math.isfinite(eta) or eta < 1):
            raise ConfigError(f"eta must be a number >= 1, got {eta!r}")
        self.configs = configs
        self.eta = float(eta)

    def promoted(self) -> int:
        """How many cells of a bracket reach 200 epochs."""
        return max(1, math.ceil(self.configs / self.eta))

    def brackets(self) -> Iterator[tuple[int, bool]]:
        """(cells drawn, whether they start at 12 epochs) for each bracket, forever."""
        while True:
            yield self.configs, True

    def run(self, space: Any, evaluators: Mapping[int, Evaluator], *, seconds: float | None,
            queries: int | None = None, seed: int = 0) -> list[Query]:
        """Run brackets until `seconds` of simulated training (or `queries` evaluations, of
        either fidelity) are spent; a running evaluation is not cut short.

        Args:
            space: needs `sample(rng)` and `canonical(arch)` (cells computing the same
                function are drawn once).
            evaluators: epochs (12 and 200) -> evaluator returning `val_acc` and
                `train_seconds`.
            seconds: simulated-seconds budget.
            queries: optional cap on evaluations.
            seed: seeds the cells drawn.

        Returns:
            Every evaluation in order.
        """
        if seconds is None and queries is None:
            raise ConfigError("successive halving needs a budget in seconds")
        run = _Run(space, evaluators, seconds, queries, np.random.default_rng(seed))
        for count, low_first in self.brackets():
            cells = run.draw(count)
            if not cells:
                break  # every distinct cell has been drawn
            if low_first:
                scored = [run.evaluate(arch, LOW_EPOCHS) for arch in cells if not run.spent()]
                # Stable sort: ties keep the draw order, so runs are reproducible.
                ranked = sorted((q for q in scored if not math.isnan(q.val_acc)),
                                key=lambda q: -q.val_acc)
                cells = [q.arch for q in ranked[:self.promoted()]]
            for arch in cells:
                if run.spent():
                    break
                run.evaluate(arch, HIGH_EPOCHS)
            if run.spent():
                break
        return run.queries


class Hyperband(SuccessiveHalving):
    """Hyperband with two rungs: successive-halving brackets alternate with brackets that
    train random cells for 200 epochs only, about as many as a halving bracket costs
    (configs · 12/200 + configs/eta), so a misleading 12-epoch ranking costs at most half
    of the budget."""

    def full_configs(self) -> int:
        return max(1, math.ceil(self.configs * LOW_EPOCHS / HIGH_EPOCHS + self.configs / self.eta))

    def brackets(self) -> Iterator[tuple[int, bool]]:
        while True:
            yield self.configs, True
            yield self.full_configs(), False


MULTI_FIDELITY: dict[str, type[SuccessiveHalving]] = {"sh": SuccessiveHalving,
                                                       "hyperband": Hyperband}


def create(name: str, args: Mapping[str, Any]) -> SuccessiveHalving:
    """The multi-fidelity method `name` with settings `args` (ConfigError if unknown)."""
    cls = MULTI_FIDELITY[name]
    known = [p for p in inspect.signature(cls).parameters]
    for key in args:
        if key not in known:
            raise ConfigError(f"--strategy-arg {name}.{key}: strategy {name!r} has no option "
                              f"{key!r} (options: {', '.join(known)})")
    return cls(**args)


class _Run:
    """The state of one run: the clock, the cells seen, the evaluations so far."""

    def __init__(self, space: Any, evaluators: Mapping[int, Evaluator], seconds: float | None,
                 queries: int | None, rng: np.random.Generator) -> None:
        missing = {LOW_EPOCHS, HIGH_EPOCHS} - set(evaluators)
        if missing:
            raise ConfigError(f"successive halving needs evaluators for {sorted(missing)} epochs")
        self.space, self.evaluators, self.rng = space, evaluators, rng
        self.seconds, self.limit = seconds, queries
        self.clock = 0.0
        self.seen: set[str] = set()
        self.queries: list[Query] = []

    def spent(self) -> bool:
        return ((self.seconds is not None and self.clock >= self.seconds)
                or (self.limit is not None and len(self.queries) >= self.limit))

    def draw(self, count: int) -> list[Arch]:
        """Up to `count` uniformly random cells whose function was not drawn before."""
        cells: list[Arch] = []
        misses = 0
        while len(cells) < count and misses < MAX_DRAWS:
            arch = self.space.sample(self.rng)
            key = self.space.canonical(arch)
            if key in self.seen:
                misses += 1
                continue
            misses = 0
            self.seen.add(key)
            cells.append(arch)
        return cells

    def evaluate(self, arch: Arch, epochs: int) -> Query:
        try:
            metrics = self.evaluators[epochs](arch)
        except TrialFailed:
            query = Query(self.clock, epochs, math.nan, arch)
        else:
            self.clock += float(metrics["train_seconds"])
            query = Query(self.clock, epochs, float(metrics["val_acc"]), arch)
        self.queries.append(query)
        return query
