"""A cheap evaluator with a known answer, and a deterministic out-of-order executor, for
testing and benchmarking parallel search.

`ToyEvaluator` scores an arch of a toy space with `archsearch.testing.toys.ToyObjective`
(so results are a deterministic function of the arch, whichever worker computes them)
after burning a chosen amount of CPU time, and can be told to fail or to kill its own
worker process for chosen archs: the failure modes an executor must survive. It is built
from plain arguments, so it travels to worker processes and Ray actors as an
`EvaluatorSpec`. `LifoExecutor` keeps N trials in flight in this process and finishes the
newest first: results arrive out of ask order, but always in the same order, so tests of
the asynchronous loop (exact resume included) need no timing luck.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archsearch.evaluators._base import Evaluator, TrialFailed
from archsearch.space import Arch
from archsearch.testing.toys import ToyObjective, make_toy_space
from archsearch.workers._base import Executor, evaluate

# SIGKILL cannot be caught or cleaned up after: the hardest death a worker can die.
_KILL = getattr(signal, "SIGKILL", signal.SIGTERM)


def burn_cpu(cpu_seconds: float) -> None:
    """Compute until this thread has used `cpu_seconds` of CPU time (not wall time, so a
    busy machine makes it slower, as it would real training)."""
    end = time.thread_time() + cpu_seconds
    total = 0
    while time.thread_time() < end:
        for i in range(2000):
            total += i * i


class ToyEvaluator:
    """Score toy-space archs after `cpu_seconds` of computing; fail or die on request.

    Args:
        space: a toy space name (`archsearch.testing.toys.TOY_SPACES`).
        seed: the `ToyObjective`'s seed.
        cpu_seconds: CPU time each trial spends before answering.
        fail_when: choices (label -> value) whose archs raise `TrialFailed`.
        kill_when: choices whose archs kill the worker process (SIGKILL) mid-trial.
        kill_times: kill only on the first `kill_times` attempts of each such arch
            (counted with files in `marker_dir`, so the count survives the process);
            None kills on every attempt.
        marker_dir: where attempts are counted; required with `kill_times`.

    Returns (on call): {"score": the ToyObjective's score}.
    """

    def __init__(self, space: str = "toy_categorical", *, seed: int = 0,
                 cpu_seconds: float = 0.0, fail_when: Mapping[str, Any] | None = None,
                 kill_when: Mapping[str, Any] | None = None, kill_times: int | None = None,
                 marker_dir: str | os.PathLike[str] | None = None) -> None:
        if kill_times is not None and marker_dir is None:
            raise ValueError("kill_times needs a marker_dir to count attempts in")
        self.objective = ToyObjective(make_toy_space(space), seed=seed)
        self.cpu_seconds = cpu_seconds
        self.fail_when = dict(fail_when or {})
        self.kill_when = dict(kill_when or {})
        self.kill_times = kill_times
        self.marker_dir = None if marker_dir is None else Path(marker_dir)

    def __repr__(self) -> str:
        return f"ToyEvaluator({self.objective.space.name!r}, cpu_seconds={self.cpu_seconds})"

    def __call__(self, arch: Arch) -> dict[str, float]:
        if _matches(arch, self.kill_when) and (self.kill_times is None
                                               or self._attempt(arch) <= self.kill_times):
            os.kill(os.getpid(), _KILL)
            time.sleep(10.0)  # the signal is delivered asynchronously on some systems
        if _matches(arch, self.fail_when):
            raise TrialFailed(f"toy failure for {dict(self.fail_when)}")
        burn_cpu(self.cpu_seconds)
        return {"score": self.objective(arch)}

    def _attempt(self, arch: Arch) -> int:
        """This attempt's number for `arch` (1 = first), across processes."""
        if self.marker_dir is None:
            return 1
        self.marker_dir.mkdir(parents=True, exist_ok=True)
        path = self.marker_dir / f"{arch.fingerprint()[:16]}.attempts"
        with open(path, "ab") as f:  # one byte per attempt; append is atomic
            f.write(b".")
        return path.stat().st_size


def _matches(arch: Arch, choices: Mapping[str, Any]) -> bool:
    return bool(choices) and all(arch.get(label) == value for label, value in choices.items())


class LifoExecutor(Executor):
    """Holds up to `capacity` trials and evaluates the newest one in each `wait`, in this
    process: a deterministic stand-in for N workers whose results arrive out of order.

    Args:
        evaluator: evaluates the trials (exceptions other than `TrialFailed` propagate).
        capacity: trials in flight at once.
    """

    def __init__(self, evaluator: Evaluator, capacity: int = 2) -> None:
        super().__init__(max_retries=0)
        self.evaluator, self.capacity = evaluator, capacity

    def _dispatch(self) -> None:
        pass  # nothing runs until `wait`

    def _poll(self, timeout: float | None) -> None:
        key = self._queue.pop()  # the newest: it finishes before the older ones
        task = self._tasks[key]
        task.attempts += 1
        try:
            message = evaluate(self.evaluator, task.arch, reraise=True)
        except Exception:
            del self._tasks[key]
            raise
        self._finished(key, message)
