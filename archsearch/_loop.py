"""The multi-trial search loop: ask -> evaluate -> tell, journaled, resumable, parallel.

Every trial is appended to `trials.jsonl` (one complete JSON record per line, fsynced) the
moment it is told, and the strategy's state is saved every few seconds and at the end
(`strategy.json`, written atomically, always right after a tell). Resuming loads the last
saved state and replays the journal records after it through `ask`/`tell` without
evaluating anything, checking that the strategy proposes the same architectures it did:
a resumed run then continues exactly as an uninterrupted run with the same seed would
(with a trial budget and one worker; a time budget depends on the clock).

Budgets, deduplication and failures belong here, not in the strategies: a trial whose
evaluator raises `TrialFailed` is journaled as failed and told as None; an architecture
proposed again is answered from the journal (state "cached") without training it twice
and without counting against the trial budget.

Trials run on an executor (`archsearch.workers`): in this process by default, or on N
workers, as in the asynchronous parallel searches of Zoph & Le 2017 (arXiv:1611.01578) and
Real et al. 2019 (arXiv:1802.01548). The loop keeps up to N trials in flight and tells each
result as it arrives; strategies stay ask/tell and never see the concurrency, and this
process stays the only writer of the journal. A trial whose worker died on every attempt
is journaled as failed ("worker lost: ..."); `attempts` and `worker` say what happened.

With several objectives (`objective=[Objective("val_acc"), Objective("macs", "min")]`)
strategies are told the vector of maximised scores, the result carries the Pareto front of
the complete trials, and the run directory gets `pareto.json` (rewritten atomically
whenever the front changes) and `pareto.png` at the end (see `archsearch.pareto`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from archsearch import pareto
from archsearch._journal import _Journal
from archsearch._loop_state import SearchResult, Trial, _Clock, _LoopState
from archsearch._objective import (
    Objective,
    Score,
    accepts_score_vectors,
    check_objectives,
    json_number,
    objectives_of,
    score_of,
)
from archsearch.constraints import Constraint, violations
from archsearch.errors import ConfigError
from archsearch.evaluators import Evaluator, TrialFailed
from archsearch.space import Arch, SpaceExhausted
from archsearch.strategies._base import SampleStrategy
from archsearch.workers import Executor, Outcome, SerialExecutor

# Stop when the strategy proposes only already-evaluated archs this many times in a row.
MAX_CONSECUTIVE_REPEATS = 200
# ... or only archs that break the constraints.
MAX_CONSECUTIVE_INFEASIBLE = 1000

__all__ = ["MAX_CONSECUTIVE_INFEASIBLE", "MAX_CONSECUTIVE_REPEATS", "Budget", "Objective",
           "Score", "SearchResult", "Trial", "accepts_score_vectors", "check_objectives",
           "objectives_of", "search"]


@dataclass(frozen=True)
class Budget:
    """When to stop: after `trials` evaluations and/or `seconds` of wall time (checked
    before each trial starts; a running trial is never cut short).

    With N workers no trial starts once the evaluations done and running reach `trials`,
    so a trial budget is never overshot; a time budget lets the trials still running
    finish. `time_metric` charges each trial the metric instead of wall time (e.g. a
    tabular benchmark's simulated training seconds): then `seconds` budgets the summed
    compute of the trials, whichever worker ran them, and each running trial is charged
    when it ends, so with N workers up to N − 1 trials may end past the budget.
    """

    trials: int | None = None
    seconds: float | None = None
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


def search(strategy: SampleStrategy, evaluator: Evaluator | None = None, *, budget: Budget,
           objective: Objective | Sequence[Objective] | None = None,
           run_dir: str | Path | None = None,
           resume: bool = False, deduplicate: bool = True, progress: bool = True,
           state_every_seconds: float = 10.0,
           dedup_key: Callable[[Arch], str] | None = None,
           constraints: Sequence[Constraint] = (),
           cost_model: Callable[[Arch], Mapping[str, float]] | None = None,
           on_trial: Callable[[Trial], None] | None = None,
           executor: Executor | None = None) -> SearchResult:
    """Run ask -> evaluate -> tell until the budget is used or the strategy is exhausted.

    Args:
        strategy: proposes architectures; it is told each score (None when a trial failed).
        evaluator: `arch -> metrics`; raises `TrialFailed` for an arch it cannot score.
            Leave it out when `executor` evaluates.
        budget: trials (evaluations; repeats answered from the journal do not count) and/or
            wall-clock seconds.
        objective: the metric to optimise and its direction (default: maximise `val_acc`),
            or a list of objectives for a multi-objective search: the strategy is then told
            the tuple of their maximised scores (it must accept one, see
            `accepts_score_vectors`), `SearchResult.front` holds the Pareto front, and
            `run_dir` gets `pareto.json` and `pareto.png`.
        run_dir: where the journal, strategy state and best arch are written (None: nowhere).
        resume: continue the journal in `run_dir` (the strategy must be constructed exactly
            as in the interrupted run: same space, settings and seed). Trials that were in
            flight when it stopped are evaluated first, without asking again.
        deduplicate: answer a repeated architecture from the journal instead of re-running it
            (a repeat of a trial still running waits for its result).
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
        cost_model: `arch -> costs` (e.g. `hardware.ArchCost`), run in this process; its
            figures are added to the metrics of every trial, before it is evaluated (so
            cost objectives such as "min macs" are known without training).
        on_trial: called with every trial as it is recorded (logging, plotting).
        executor: runs the trials, up to `executor.capacity` at once (see
            `archsearch.workers.create_executor`); default: one at a time in this process.
            The caller keeps it open for reuse; trials still in flight when the search
            ends early (an exception, Ctrl-C) are cancelled.

    Returns:
        All trials (including replayed ones), the best complete trial, the Pareto front,
        and why it stopped.

    Raises:
        ConfigError: bad settings, e.g. several objectives for a strategy that optimises
            one score.
    """
    objectives = objectives_of(objective)
    check_objectives(objectives, strategy)
    if constraints and cost_model is None:
        raise ConfigError("constraints need a cost model to check them")
    if (evaluator is None) == (executor is None):
        raise ConfigError("search needs either an evaluator or an executor that evaluates")
    journal = _Journal(run_dir, resume=resume)
    state = _LoopState(strategy, objectives, dedup_key or Arch.fingerprint, budget.time_metric,
                       tuple(constraints), cost_model)
    if resume:
        state.replay(journal)
    owned = executor is None
    executor = SerialExecutor(evaluator) if executor is None else executor
    run = _Run(state, executor, journal, budget, deduplicate=deduplicate, progress=progress,
               state_every_seconds=state_every_seconds, on_trial=on_trial)
    try:
        stopped = run.loop()
    finally:
        run.bar.close()
        if owned:
            executor.close()
        elif executor.in_flight:
            executor.cancel()
    journal.save_state(strategy, len(state.trials), state.snapshot())
    result = SearchResult(state.trials, state.best, stopped, run.clock.elapsed(),
                          list(state.front))
    journal.write_result(result)
    if state.is_multi:
        _write_front(journal, state, plot=True)
    return result


def _write_front(journal: _Journal, state: _LoopState, *, plot: bool) -> None:
    if journal.dir is None:
        return
    pareto.write_front(journal.dir, state.objectives, state.front)
    if plot:
        pareto.plot_front(journal.dir)


class _Run:
    """The loop proper: fill the executor with asked trials, tell outcomes as they come.

    With a serial executor (capacity 1) this is exactly ask -> evaluate -> tell: a repeat
    or an infeasible arch is told at once and the next ask follows; a trial is told before
    anything is asked again.
    """

    def __init__(self, state: _LoopState, executor: Executor, journal: _Journal,
                 budget: Budget, *, deduplicate: bool, progress: bool,
                 state_every_seconds: float, on_trial: Callable[[Trial], None] | None) -> None:
        self.state, self.executor, self.journal, self.budget = state, executor, journal, budget
        self.deduplicate, self.on_trial = deduplicate, on_trial
        self.state_every_seconds = state_every_seconds
        self.clock = _Clock(state, budget.time_metric)
        self.bar = tqdm(total=budget.trials, initial=state.evaluations, disable=not progress,
                        desc="search", unit="trial", dynamic_ncols=True)
        self.last_save = time.monotonic()
        # Asks of the interrupted run that were never told: evaluated before new asks.
        self.leftover = sorted(state.pending)
        self.running: dict[str, int] = {}  # dedup key -> ask of its trial in flight
        self.waiting: dict[str, list[int]] = {}  # dedup key -> later asks of the same arch
        self.costs: dict[int, tuple[dict[str, Any], float]] = {}  # ask -> costs, seconds

    def loop(self) -> str:
        """Run until the budget is used or the strategy stops; why it stopped."""
        stopped = None
        while True:
            if stopped is None:
                stopped = self.fill()
            if self.executor.in_flight == 0:
                # fill() returns None only with trials in flight, so `stopped` is set here.
                return stopped or "nothing left to evaluate"
            for outcome in self.executor.wait():
                self.finish(outcome)

    def fill(self) -> str | None:
        """Ask and start trials until the executor is full; why to stop asking, if so."""
        skipped = 0  # asks in a row that started no trial
        while self.executor.in_flight < self.executor.capacity:
            stopped = self.stop_reason()
            if stopped is not None:
                return stopped
            if skipped >= MAX_CONSECUTIVE_REPEATS and self.executor.in_flight:
                return None  # only repeats of running trials: wait for results, then ask on
            if self.leftover:
                ask = self.leftover.pop(0)
                arch = self.state.pending[ask]
            else:
                try:
                    ask, arch = self.state.ask()
                except SpaceExhausted:
                    return "strategy exhausted the space"
            skipped = 0 if self.start(ask, arch) else skipped + 1
        return None

    def stop_reason(self) -> str | None:
        state = self.state
        # Trials in flight count: each will be an evaluation (complete or failed).
        stopped = self.budget.spent(state.evaluations + self.executor.in_flight,
                                    self.clock.elapsed())
        if (stopped is None and state.repeats >= MAX_CONSECUTIVE_REPEATS
                and getattr(state.strategy, "may_converge", True)):
            stopped = f"strategy proposed only evaluated archs {state.repeats} times in a row"
        if stopped is None and state.infeasible_streak >= MAX_CONSECUTIVE_INFEASIBLE:
            stopped = (f"no feasible architecture in {state.infeasible_streak} proposals in "
                       "a row; loosen the constraints")
        return stopped

    def start(self, ask: int, arch: Arch) -> bool:
        """Answer a repeat from the cache, park a repeat of a running trial, reject an
        infeasible arch, or submit the trial: True when it was submitted."""
        state = self.state
        key = state.key(arch)
        if self.deduplicate and key in state.seen:
            self.told(state.cached(ask, arch, self.clock.elapsed()))
            return False
        if self.deduplicate and key in self.running:
            self.waiting.setdefault(key, []).append(ask)
            return False
        started = time.monotonic()
        costs: dict[str, Any] = {}
        if state.cost_model is not None:
            costs = {k: json_number(k, v) for k, v in state.cost_model(arch).items()}
            broken = violations(state.constraints, costs)
            if broken:
                self.told(Trial(len(state.trials), arch, "infeasible", costs,
                                error="; ".join(broken), seconds=time.monotonic() - started,
                                elapsed_seconds=self.clock.elapsed(), ask=ask,
                                asks=state.asks))
                return False
        self.costs[ask] = (costs, time.monotonic() - started)
        if self.deduplicate:
            self.running[key] = ask
        self.executor.submit(ask, arch)
        return True

    def finish(self, outcome: Outcome) -> None:
        """Journal and tell a finished trial, then the repeats that waited for it."""
        state = self.state
        ask, arch = outcome.key, outcome.arch
        costs, cost_seconds = self.costs.pop(ask)
        key = state.key(arch)
        if self.running.get(key) == ask:
            del self.running[key]
        trial = Trial(len(state.trials), arch, "failed", seconds=cost_seconds + outcome.seconds,
                      ask=ask, asks=state.asks, attempts=outcome.attempts,
                      worker=outcome.worker or None)
        if outcome.state == "complete":
            self._score(trial, costs, outcome.metrics or {})
        elif outcome.state == "failed":
            trial.error = outcome.error
        else:  # its worker died on every attempt
            trial.error = f"worker lost: {outcome.error}"
        trial.elapsed_seconds = self.clock.elapsed() + (
            float(trial.metrics[state.time_metric])
            if self.clock.simulated and trial.state == "complete" else 0.0)
        self.told(trial)
        for later in self.waiting.pop(key, []):
            self.told(state.cached(later, state.pending[later], self.clock.elapsed()))

    def _score(self, trial: Trial, costs: dict[str, Any], metrics: Mapping[str, Any]) -> None:
        """Make `trial` complete with its metrics and score (failed if a metric is not
        finite)."""
        metrics = {**costs, **{k: json_number(k, v) for k, v in metrics.items()}}
        try:
            trial.score = score_of(self.state.objectives, metrics)
        except TrialFailed as exc:
            trial.error = str(exc) or type(exc).__name__
            return
        time_metric = self.state.time_metric
        if time_metric is not None and time_metric not in metrics:
            raise ConfigError(f"the budget charges metric {time_metric!r}, which the "
                              f"evaluator does not return (it returns {', '.join(metrics)})")
        trial.state, trial.metrics = "complete", metrics

    def told(self, trial: Trial) -> None:
        """Record a trial, tell the strategy, journal it, and update the files."""
        state = self.state
        state.tell(trial)
        self.journal.append(trial)
        if time.monotonic() - self.last_save >= self.state_every_seconds:
            self.journal.save_state(state.strategy, len(state.trials), state.snapshot())
            self.last_save = time.monotonic()
        if state.best is trial:
            self.journal.write_best(trial, state.strategy.space.describe)
        if state.is_multi and any(t is trial for t in state.front):
            _write_front(self.journal, state, plot=False)  # the front changed
        if trial.state in ("complete", "failed"):
            self.bar.update(1)
        self.bar.set_postfix_str(state.progress_note())
        if self.on_trial is not None:
            self.on_trial(trial)
