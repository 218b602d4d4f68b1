"""The multi-trial search loop: ask -> evaluate -> tell, journaled and resumable.

Every trial is appended to `trials.jsonl` (one complete JSON record per line, fsynced) the
moment it ends, and the strategy's state is saved every few seconds and at the end
(`strategy.json`, written atomically, always right after a tell). Resuming loads the last
saved state and replays the journal records after it
through `ask`/`tell` without evaluating anything, checking that the strategy proposes the
same architectures it did: a resumed run then continues exactly as an uninterrupted run
with the same seed would (with a trial budget; a time budget depends on the clock).

Budgets, deduplication and failures belong here, not in the strategies: a trial whose
evaluator raises `TrialFailed` is journaled as failed and told as None; an architecture
proposed again is answered from the journal (state "cached") without training it twice
and without counting against the trial budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from archsearch._journal import _Journal
from archsearch.constraints import Constraint, violations
from archsearch.errors import ArchError, ConfigError
from archsearch.evaluators import Evaluator, TrialFailed
from archsearch.space import Arch, SpaceExhausted
from archsearch.strategies._base import SampleStrategy

# Stop when the strategy proposes only already-evaluated archs this many times in a row.
MAX_CONSECUTIVE_REPEATS = 200
# ... or only archs that break the constraints.
MAX_CONSECUTIVE_INFEASIBLE = 1000


@dataclass(frozen=True)
class Budget:
    """When to stop: after `trials` evaluations and/or `seconds` of wall time (checked
    between trials; a running trial is never cut short)."""

    trials: int | None = None
    seconds: float | None = None
    # Charge each evaluated trial this metric (e.g. a tabular benchmark's simulated
    # training seconds) instead of wall-clock time, so `seconds` budgets simulated time.
    time_metric: str | None = None

    def __post_init__(self) -> None:
        if self.trials is None and self.seconds is None:
            raise ConfigError("a budget needs --trials and/or --time-limit")
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"--trials must be at least 1, got {self.trials}")
        if self.seconds is not None and not self.seconds > 0:
            raise ConfigError(f"--time-limit must be positive, got {self.seconds}")

    def spent(self, evaluations: int, elapsed_seconds: float) -> str | None:
        """Why the budget is used up, or None."""
        if self.trials is not None and evaluations >= self.trials:
            return "trial budget used"
        if self.seconds is not None and elapsed_seconds >= self.seconds:
            return "time budget used"
        return None


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


@dataclass
class Trial:
    """One journal record: an evaluated (or failed, or repeated) architecture."""

    number: int
    arch: Arch
    state: str  # "complete", "failed", "cached" or "infeasible"

    metrics: dict[str, Any] = field(default_factory=dict)
    score: float | None = None
    error: str | None = None
    seconds: float = 0.0
    elapsed_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"trial": self.number, "state": self.state,
                "fingerprint": self.arch.fingerprint(), "arch": dict(self.arch),
                "metrics": self.metrics, "score": self.score, "error": self.error,
                "seconds": round(self.seconds, 6),
                "elapsed_seconds": round(self.elapsed_seconds, 6)}


@dataclass
class SearchResult:
    """All trials of a search (including replayed ones), the best complete one, and why it
    stopped."""

    trials: list[Trial]
    best: Trial | None
    stopped: str
    elapsed_seconds: float

    @property
    def evaluations(self) -> int:
        return sum(t.state in ("complete", "failed") for t in self.trials)


def search(strategy: SampleStrategy, evaluator: Evaluator, *, budget: Budget,
           objective: Objective | None = None, run_dir: str | Path | None = None,
           resume: bool = False, deduplicate: bool = True, progress: bool = True,
           state_every_seconds: float = 10.0,
           dedup_key: Callable[[Arch], str] | None = None,
           constraints: Sequence[Constraint] = (),
           cost_model: Callable[[Arch], Mapping[str, float]] | None = None,
           on_trial: Callable[[Trial], None] | None = None) -> SearchResult:
    """Run ask -> evaluate -> tell until the budget is used or the strategy is exhausted.

    Args:
        strategy: proposes architectures; it is told each score (None when a trial failed).
        evaluator: `arch -> metrics`; raises `TrialFailed` for an arch it cannot score.
        budget: trials (evaluations; repeats answered from the journal do not count) and/or
            wall-clock seconds.
        objective: the metric to optimise and its direction (default: maximise `val_acc`).
        run_dir: where the journal, strategy state and best arch are written (None: nowhere).
        resume: continue the journal in `run_dir` (the strategy must be constructed exactly
            as in the interrupted run: same space, settings and seed).
        deduplicate: answer a repeated architecture from the journal instead of re-running it.
        dedup_key: what "repeated" means (default `Arch.fingerprint`); a space's canonical
            form (e.g. NAS-Bench-201 cells that compute the same function) saves paying twice
            for one network.
        progress: show a progress bar with the best score so far.
        state_every_seconds: save the strategy's state at most this often (and at the end);
            a resume replays the journal records after the last save, so this only trades
            writing time (a controller's state can be megabytes) against replay time.
        constraints: cost limits checked with `cost_model` before an arch is evaluated; an
            arch that breaks one is journaled as "infeasible", told as failed, and does not
            count against the trial budget.
        cost_model: `arch -> costs` (e.g. `hardware.ArchCost`); its figures are added to the
            metrics of every trial.
        on_trial: called with every trial as it is recorded (logging, plotting).

    Returns:
        All trials (including replayed ones), the best complete trial, and why it stopped.
    """
    objective = objective or Objective()
    if constraints and cost_model is None:
        raise ConfigError("constraints need a cost model to check them")
    journal = _Journal(run_dir, resume=resume)
    state = _LoopState(strategy, objective, dedup_key or Arch.fingerprint, budget.time_metric,
                       tuple(constraints), cost_model)
    if resume:
        state.replay(journal)
    clock = _Clock(state, budget.time_metric)
    bar = tqdm(total=budget.trials, initial=state.evaluations, disable=not progress,
               desc="search", unit="trial", dynamic_ncols=True)
    stopped = None
    last_save = time.monotonic()
    try:
        while stopped is None:
            stopped = budget.spent(state.evaluations, clock.elapsed())
            if (stopped is None and state.repeats >= MAX_CONSECUTIVE_REPEATS
                    and getattr(strategy, "may_converge", True)):
                stopped = f"strategy proposed only evaluated archs {state.repeats} times in a row"
            if stopped is None and state.infeasible_streak >= MAX_CONSECUTIVE_INFEASIBLE:
                stopped = (f"no feasible architecture in {state.infeasible_streak} proposals in "
                           "a row; loosen the constraints")
            if stopped is not None:
                break
            try:
                arch = strategy.ask()
            except SpaceExhausted:
                stopped = "strategy exhausted the space"
                break
            trial = state.run(arch, evaluator, deduplicate, clock.elapsed())
            strategy.tell(arch, trial.score)
            journal.append(trial)
            if time.monotonic() - last_save >= state_every_seconds:
                journal.save_state(strategy, len(state.trials))
                last_save = time.monotonic()
            if state.best is trial:
                journal.write_best(trial, strategy.space.describe)
            if trial.state in ("complete", "failed"):
                bar.update(1)
            if state.best is not None:
                bar.set_postfix_str(f"best {objective.metric}="
                                    f"{state.best.metrics[objective.metric]:.4g}")
            if on_trial is not None:
                on_trial(trial)
    finally:
        bar.close()
    journal.save_state(strategy, len(state.trials))  # after a tell: no ask is outstanding
    result = SearchResult(state.trials, state.best, stopped, clock.elapsed())
    journal.write_result(result)
    return result


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
    """Trials so far, the best one, and the cache of evaluated architectures."""

    def __init__(self, strategy: SampleStrategy, objective: Objective,
                 key: Callable[[Arch], str], time_metric: str | None,
                 constraints: tuple[Constraint, ...] = (),
                 cost_model: Callable[[Arch], Mapping[str, float]] | None = None) -> None:
        self.strategy = strategy
        self.objective = objective
        self.key = key
        self.time_metric = time_metric
        self.simulated_seconds = 0.0
        self.constraints = constraints
        self.cost_model = cost_model
        self.infeasible_streak = 0
        self.trials: list[Trial] = []
        self.best: Trial | None = None
        self.seen: dict[str, Trial] = {}
        self.evaluations = 0
        self.repeats = 0
        self.elapsed_offset = 0.0

    def run(self, arch: Arch, evaluator: Evaluator, deduplicate: bool,
            elapsed: float) -> Trial:
        key = self.key(arch)
        number = len(self.trials)
        if deduplicate and key in self.seen:
            first = self.seen[key]
            trial = Trial(number, arch, "cached", dict(first.metrics), first.score, first.error,
                          0.0, elapsed)
        else:
            trial = self._evaluate(number, arch, evaluator, elapsed)
        self.record(trial)
        return trial

    def _evaluate(self, number: int, arch: Arch, evaluator: Evaluator,
                  elapsed: float) -> Trial:
        started = time.monotonic()
        costs: dict[str, Any] = {}
        if self.cost_model is not None:
            costs = {k: _json_number(k, v) for k, v in self.cost_model(arch).items()}
            broken = violations(self.constraints, costs)
            if broken:
                return Trial(number, arch, "infeasible", costs, error="; ".join(broken),
                             seconds=time.monotonic() - started, elapsed_seconds=elapsed)
        try:
            metrics = {**costs, **{k: _json_number(k, v) for k, v in evaluator(arch).items()}}
            score = self.objective.score(metrics)
        except TrialFailed as exc:
            seconds = time.monotonic() - started
            return Trial(number, arch, "failed", error=str(exc) or type(exc).__name__,
                         seconds=seconds, elapsed_seconds=elapsed + seconds)
        seconds = time.monotonic() - started
        charged = seconds
        if self.time_metric is not None:
            if self.time_metric not in metrics:
                raise ConfigError(f"the budget charges metric {self.time_metric!r}, which the "
                                  f"evaluator does not return (it returns {', '.join(metrics)})")
            charged = float(metrics[self.time_metric])
        return Trial(number, arch, "complete", metrics, score, None, seconds, elapsed + charged)

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
        if trial.state == "complete" and (self.best is None or trial.score > self.best.score):
            self.best = trial
        self.elapsed_offset = max(self.elapsed_offset, trial.elapsed_seconds)

    def replay(self, journal: _Journal) -> None:
        """Bring the strategy and the bookkeeping to the end of the journal."""
        records = journal.records()
        snapshot = journal.snapshot()
        start = 0
        if snapshot is not None and 0 < snapshot.get("records", 0) <= len(records):
            self.strategy.load_state_dict(snapshot["state"])
            start = snapshot["records"]
        for index, record in enumerate(records):
            trial = self._trial_from_record(index, record)
            if index >= start:
                proposed = self.strategy.ask()
                if proposed.fingerprint() != trial.arch.fingerprint():
                    raise ConfigError(
                        f"cannot resume: journal trial {index} is a different architecture "
                        "than the strategy proposes now; the space, strategy settings or "
                        "seed differ from the interrupted run")
                self.strategy.tell(proposed, trial.score)
            self.record(trial)

    def _trial_from_record(self, index: int, record: Mapping[str, Any]) -> Trial:
        space = self.strategy.space
        try:
            arch = space.arch(record["arch"])
            trial = Trial(index, arch, record["state"], dict(record.get("metrics") or {}),
                          record.get("score"), record.get("error"),
                          float(record.get("seconds", 0.0)),
                          float(record.get("elapsed_seconds", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"cannot resume: journal record {index} is malformed "
                              f"({type(exc).__name__}: {exc})") from None
        except ArchError as exc:  # the record does not fit this space
            raise ConfigError(f"cannot resume: journal record {index}: {exc}") from None
        if trial.state not in ("complete", "failed", "cached", "infeasible"):
            raise ConfigError(f"cannot resume: journal record {index} has unknown state "
                              f"{trial.state!r}")
        return trial


def _json_number(name: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)  # numpy and 0-d torch scalars
        except (TypeError, ValueError):
            raise TypeError(f"metric {name!r} is not a number: {value!r}") from None
    return value
