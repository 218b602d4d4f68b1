"""What a multi-trial search optimises: objectives, maximised scores and score vectors.

A trial's metrics become the score its strategy is told: one objective gives one float
(negated when the metric is minimised, or MnasNet's soft-constrained reward, Tan et al.
2019, arXiv:1807.11626, eq. 2), several give a tuple of such floats for a Pareto search
(NSGA-II, Deb et al. 2002). Used by the search loop (`archsearch._loop`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archsearch.errors import ConfigError
from archsearch.evaluators import TrialFailed
from archsearch.strategies._base import SampleStrategy

# A trial's maximised score: one float, a tuple of them (several objectives), None (failed).
Score = float | tuple[float, ...] | None


@dataclass(frozen=True)
class Objective:
    """The metric strategies optimise; scores handed to strategies are always maximised.

    With `cost_metric`, the score is MnasNet's soft-constrained reward (Tan et al. 2019,
    eq. 2): ACC × (COST / target)^w, with w < 0 (the paper's −0.07) so a network over the
    target is penalised smoothly and one under it mildly rewarded.
    """

    metric: str = "val_acc"
    direction: str = "max"
    cost_metric: str | None = None
    cost_target: float | None = None
    cost_weight: float = -0.07

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ConfigError(f"objective direction must be 'max' or 'min', "
                              f"got {self.direction!r}")
        if self.cost_metric is not None:
            if self.cost_target is None or not self.cost_target > 0:
                raise ConfigError(f"a reward on {self.cost_metric} needs a positive target, "
                                  f"got {self.cost_target}")
            if self.direction != "max":
                raise ConfigError("the MnasNet reward scales a metric that is maximised")

    def __str__(self) -> str:
        return f"{self.metric}:{self.direction}"

    def metrics_needed(self) -> tuple[str, ...]:
        return (self.metric,) if self.cost_metric is None else (self.metric, self.cost_metric)

    def score(self, metrics: Mapping[str, Any]) -> float:
        for name in self.metrics_needed():
            if name not in metrics:
                raise ConfigError(f"the evaluator returned no metric {name!r} (it returned "
                                  f"{', '.join(metrics) or 'nothing'}); choose another "
                                  "--objective")
        value = float(metrics[self.metric])
        if not math.isfinite(value):
            raise TrialFailed(f"{self.metric} is {value}")
        if self.cost_metric is not None:
            cost = float(metrics[self.cost_metric])
            if not (math.isfinite(cost) and cost > 0):
                raise TrialFailed(f"{self.cost_metric} is {cost}")
            # MnasNet eq. 2: ACC(m) × [LAT(m) / T]^w
            return value * (cost / self.cost_target) ** self.cost_weight
        return value if self.direction == "max" else -value


def objectives_of(objective: Objective | Sequence[Objective] | None) -> tuple[Objective, ...]:
    """`search`'s `objective` argument as a tuple of objectives (default: max val_acc)."""
    if objective is None:
        return (Objective(),)
    if isinstance(objective, Objective):
        return (objective,)
    objectives = tuple(objective)
    if not objectives or not all(isinstance(o, Objective) for o in objectives):
        raise ConfigError(f"objective must be an Objective or a non-empty list of them, got "
                          f"{objective!r}")
    return objectives


def score_of(objectives: Sequence[Objective],
             metrics: Mapping[str, Any]) -> float | tuple[float, ...]:
    """The maximised score of a trial's metrics: a tuple with several objectives.

    Raises:
        TrialFailed: a metric is not finite (the trial is recorded as failed).
        ConfigError: the metrics lack one the objectives need.
    """
    if len(objectives) == 1:
        return objectives[0].score(metrics)
    return tuple(o.score(metrics) for o in objectives)


def accepts_score_vectors(strategy: SampleStrategy | type[SampleStrategy]) -> bool:
    """Whether a strategy (or strategy class) can be told a tuple of scores.

    True for multi-objective strategies (class attribute `multi_objective = True`, e.g.
    NSGA-II) and for those that learn nothing from scores (they keep the base class's
    `tell`, e.g. random and grid search, which simply sample the front's candidates).
    """
    cls = strategy if isinstance(strategy, type) else type(strategy)
    return (bool(getattr(cls, "multi_objective", False))
            or getattr(cls, "tell", None) is SampleStrategy.tell)


def check_objectives(objectives: Sequence[Objective],
                     strategy: SampleStrategy | type[SampleStrategy]) -> None:
    """Refuse several objectives with a strategy that optimises one score, repeated
    metrics, and MnasNet rewards inside a multi-objective search (the front replaces the
    reward's fixed trade-off)."""
    if len(objectives) < 2:
        return
    metrics = [o.metric for o in objectives]
    if len(set(metrics)) < len(metrics):
        raise ConfigError(f"objectives repeat a metric: {', '.join(map(str, objectives))}")
    if any(o.cost_metric is not None for o in objectives):
        raise ConfigError("a multi-objective search takes plain metrics, not the MnasNet "
                          "reward: make the cost an objective of its own")
    if not accepts_score_vectors(strategy):
        cls = strategy if isinstance(strategy, type) else type(strategy)
        raise ConfigError(f"{cls.__name__} optimises one score; with {len(objectives)} "
                          "objectives use a multi-objective strategy (nsga2) or one that "
                          "ignores scores (random, grid)")


def score_vector(score: Score) -> tuple[float, ...]:
    """A complete trial's score as a vector (one element with one objective)."""
    if isinstance(score, tuple):
        return score
    if score is None:
        raise ValueError("a failed trial has no score vector")
    return (float(score),)


def score_from_json(score: Any) -> Score:
    """A journaled score: JSON has no tuples, so a multi-objective score is a list."""
    return tuple(float(s) for s in score) if isinstance(score, list) else score


def json_number(name: str, value: Any) -> float | int:
    """A metric as a JSON number (numpy and 0-d torch scalars are converted)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"metric {name!r} is not a number: {value!r}") from None
    return value
