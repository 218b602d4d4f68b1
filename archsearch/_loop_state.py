"""The bookkeeping of a multi-trial search: trials, best, Pareto front, cache, asks, replay.

Kept apart from the loop (`archsearch._loop`) that drives it. Strategies are asked and told
asynchronously (Zoph & Le 2017, arXiv:1611.01578; Real et al. 2019, arXiv:1802.01548): an
architecture is asked, evaluated somewhere, and told later, possibly after other asks.
Every journal record therefore says which ask it answers (`ask`, counting from 0) and how
many asks had been made when it was told (`asks`); replaying the records in journal order
and asking until `asks` is reached repeats the run's exact interleaving of asks and tells,
which is what a resumed strategy needs to continue as if never stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from archsearch import pareto
from archsearch._journal import STRATEGY_STATE, _Journal
from archsearch._objective import Objective, Score, score_from_json, score_vector
from archsearch.constraints import Constraint
from archsearch.errors import ArchError, ConfigError
from archsearch.space import Arch
from archsearch.strategies._base import SampleStrategy

STATES = ("complete", "failed", "cached", "infeasible")


@dataclass
class Trial:
    """One journal record: an evaluated (or failed, or repeated) architecture.

    `ask` is the number of the ask that proposed it and `asks` the number of asks made
    when it was told; `attempts` counts the starts of its evaluation (more than one when a
    worker died under it; 0 when nothing was evaluated) and `worker` names where the last
    one ran (None: in the search's own process).
    """

    number: int
    arch: Arch
    state: str  # "complete", "failed", "cached" or "infeasible"

    metrics: dict[str, Any] = field(default_factory=dict)
    score: Score = None  # a tuple with several objectives
    error: str | None = None
    seconds: float = 0.0
    elapsed_seconds: float = 0.0
    ask: int | None = None
    asks: int | None = None
    attempts: int = 0
    worker: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"trial": self.number, "state": self.state,
                "fingerprint": self.arch.fingerprint(), "arch": dict(self.arch),
                "metrics": self.metrics, "score": self.score, "error": self.error,
                "seconds": round(self.seconds, 6),
                "elapsed_seconds": round(self.elapsed_seconds, 6),
                "ask": self.ask, "asks": self.asks, "attempts": self.attempts,
                "worker": self.worker}


@dataclass
class SearchResult:
    """All trials of a search (including replayed ones), the best complete one, why it
    stopped, and the Pareto front: the complete trials no other complete trial dominates
    (in trial order; with one objective, the best trial and any that tie with it). With
    several objectives, `best` is the best on the first one (ties: the next ones)."""

    trials: list[Trial]
    best: Trial | None
    stopped: str
    elapsed_seconds: float
    front: list[Trial] = field(default_factory=list)

    @property
    def evaluations(self) -> int:
        return sum(t.state in ("complete", "failed") for t in self.trials)


class _Clock:
    """Search time: wall-clock since the (first) start, or the sum of a cost metric."""

    def __init__(self, state: _LoopState, time_metric: str | None) -> None:
        self.state = state
        self.simulated = time_metric is not None
        self.start = time.monotonic() - state.elapsed_offset

    def elapsed(self) -> float:
        if self.simulated:
            return self.state.simulated_seconds
        return time.monotonic() - self.start


class _LoopState:
    """Trials so far, the best one, the Pareto front, the cache of evaluated
    architectures, and the asks not told yet (`pending`, by ask number)."""

    def __init__(self, strategy: SampleStrategy, objectives: tuple[Objective, ...],
                 key: Callable[[Arch], str], time_metric: str | None,
                 constraints: tuple[Constraint, ...] = (),
                 cost_model: Callable[[Arch], Mapping[str, float]] | None = None) -> None:
        self.strategy = strategy
        self.objectives = objectives
        self.is_multi = len(objectives) > 1
        self.key = key
        self.time_metric = time_metric
        self.simulated_seconds = 0.0
        self.constraints = constraints
        self.cost_model = cost_model
        self.infeasible_streak = 0
        self.trials: list[Trial] = []
        self.best: Trial | None = None
        self.front: list[Trial] = []  # non-dominated complete trials, in trial order
        self.seen: dict[str, Trial] = {}
        self.evaluations = 0
        self.repeats = 0
        self.elapsed_offset = 0.0
        self.asks = 0
        self.pending: dict[int, Arch] = {}

    def ask(self) -> tuple[int, Arch]:
        """Ask the strategy (SpaceExhausted passes through); the ask's number and arch."""
        arch = self.strategy.ask()
        number, self.asks = self.asks, self.asks + 1
        self.pending[number] = arch
        return number, arch

    def tell(self, trial: Trial) -> None:
        """Record `trial` and tell the strategy its score (it answers ask `trial.ask`)."""
        self.record(trial)
        self.strategy.tell(self.pending.pop(trial.ask), trial.score)

    def cached(self, ask: int, arch: Arch, elapsed: float) -> Trial:
        """A repeat of an evaluated (or infeasible) arch, answered from the cache."""
        first = self.seen[self.key(arch)]
        return Trial(len(self.trials), arch, "cached", dict(first.metrics), first.score,
                     first.error, 0.0, elapsed, ask=ask, asks=self.asks)

    def progress_note(self) -> str:
        if self.best is None:
            return ""
        first = self.objectives[0].metric
        note = f"best {first}={self.best.metrics[first]:.4g}"
        return f"{note}, front {len(self.front)}" if self.is_multi else note

    def _update_front(self, trial: Trial) -> None:
        """Add a complete trial to the front unless a front member dominates it, and drop
        the members it dominates (by transitivity, no other trial can dominate it)."""
        vector = score_vector(trial.score)
        if any(pareto.dominates(score_vector(t.score), vector) for t in self.front):
            return
        self.front = [t for t in self.front
                      if not pareto.dominates(vector, score_vector(t.score))]
        self.front.append(trial)

    def record(self, trial: Trial) -> None:
        self.trials.append(trial)
        self.repeats = self.repeats + 1 if trial.state == "cached" else 0
        infeasible = trial.state == "infeasible" or (
            trial.state == "cached" and self.seen[self.key(trial.arch)].state == "infeasible")
        self.infeasible_streak = self.infeasible_streak + 1 if infeasible else 0
        if trial.state == "infeasible":
            self.seen.setdefault(self.key(trial.arch), trial)
        elif trial.state != "cached":
            self.evaluations += 1
            self.seen.setdefault(self.key(trial.arch), trial)
            if self.time_metric is not None:
                self.simulated_seconds += float(trial.metrics.get(self.time_metric, 0.0))
        if trial.state == "complete":
            # Tuples compare lexicographically: the first objective, then the next ones.
            if self.best is None or trial.score > self.best.score:
                self.best = trial
            self._update_front(trial)
        self.elapsed_offset = max(self.elapsed_offset, trial.elapsed_seconds)

    def snapshot(self) -> dict[str, Any]:
        """What `_Journal.save_state` keeps besides the strategy's state: the ask count
        and the asks not told yet (in flight, when the state is saved mid-run)."""
        return {"asks": self.asks,
                "pending": {str(n): dict(arch) for n, arch in self.pending.items()}}

    def replay(self, journal: _Journal) -> None:
        """Bring the strategy and the bookkeeping to the end of the journal.

        The strategy restarts from the last saved state (or from scratch); each later
        record is told in journal order after asking until its `asks` count, so asks and
        tells interleave as they did. Asks left in `pending` afterwards were in flight
        when the run stopped: the loop evaluates them before asking anything new.
        """
        records = journal.records()
        snapshot = journal.snapshot()
        start = 0
        if snapshot is not None and 0 < snapshot.get("records", 0) <= len(records):
            self.strategy.load_state_dict(snapshot["state"])
            start = snapshot["records"]
            # Journals written before asynchronous search made one ask per record.
            self.asks = int(snapshot.get("asks", start))
            self.pending = {int(n): self._arch(choices, f"{STRATEGY_STATE} pending ask {n}")
                            for n, choices in snapshot.get("pending", {}).items()}
        for index, record in enumerate(records):
            trial = self._trial_from_record(index, record)
            if index >= start:
                self._replay_tell(index, trial)
            else:
                self.record(trial)

    def _replay_tell(self, index: int, trial: Trial) -> None:
        if trial.ask is None:  # an older journal: each record answers the next ask
            trial.ask, trial.asks = self.asks, self.asks + 1
        if trial.asks is None or trial.asks < self.asks or trial.ask >= trial.asks:
            raise ConfigError(f"cannot resume: journal record {index} has ask {trial.ask} of "
                              f"{trial.asks}, inconsistent with the {self.asks} asks before it")
        while self.asks < trial.asks:
            self.ask()
        proposed = self.pending.get(trial.ask)
        if proposed is None or proposed.fingerprint() != trial.arch.fingerprint():
            raise ConfigError(
                f"cannot resume: journal trial {index} is a different architecture than the "
                "strategy proposes now; the space, strategy settings or seed differ from the "
                "interrupted run")
        self.tell(trial)

    def _arch(self, choices: Any, where: str) -> Arch:
        try:
            return self.strategy.space.arch(choices)
        except (ArchError, TypeError, ValueError) as exc:
            raise ConfigError(f"cannot resume: {where}: {exc}") from None

    def _trial_from_record(self, index: int, record: Mapping[str, Any]) -> Trial:
        space = self.strategy.space
        try:
            arch = space.arch(record["arch"])
            trial = Trial(index, arch, record["state"], dict(record.get("metrics") or {}),
                          score_from_json(record.get("score")), record.get("error"),
                          float(record.get("seconds", 0.0)),
                          float(record.get("elapsed_seconds", 0.0)),
                          _count(record.get("ask")), _count(record.get("asks")),
                          int(record.get("attempts", 0)), record.get("worker"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"cannot resume: journal record {index} is malformed "
                              f"({type(exc).__name__}: {exc})") from None
        except ArchError as exc:  # the record does not fit this space
            raise ConfigError(f"cannot resume: journal record {index}: {exc}") from None
        if trial.state not in STATES:
            raise ConfigError(f"cannot resume: journal record {index} has unknown state "
                              f"{trial.state!r}")
        if (trial.ask is None) != (trial.asks is None):
            raise ConfigError(f"cannot resume: journal record {index} has only one of "
                              "'ask' and 'asks'")
        return trial



def _count(value: Any) -> int | None:
    """A journaled ask number or count: None (absent) or a non-negative integer."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not an ask count")
    return value
