"""The executor interface that runs trials in parallel, its outcomes, and the serial executor.

An executor evaluates architectures on workers while the search loop keeps asking and
telling in one process (asynchronous parallel search, as in the distributed workers of
Zoph & Le 2017, arXiv:1611.01578, and Real et al. 2019, arXiv:1802.01548). The loop calls
`submit(key, arch)` for each trial, `wait()` for whatever has finished, and stays the only
writer of the journal: workers just return results.

The evaluator is shipped to each worker once, as an `EvaluatorSpec` (a picklable factory),
not once per trial: building one can mean loading a dataset or a benchmark table.
"""

from __future__ import annotations

import abc
import os
import pickle
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from archsearch.errors import ConfigError
from archsearch.evaluators._base import Evaluator, TrialFailed
from archsearch.space import Arch

# What a worker sends back for one trial: (status, payload, evaluator seconds, worker label)
# with status "complete" (payload: metrics), "failed" (payload: the TrialFailed message) or
# "error" (payload: (pickled exception or None, formatted traceback)).
Message = tuple[str, Any, float, str]


@dataclass(frozen=True)
class Outcome:
    """How one submitted trial ended.

    Attributes:
        key: the key it was submitted with.
        arch: the architecture.
        state: "complete", "failed" (the evaluator raised `TrialFailed`; never retried) or
            "lost" (its worker died on every attempt).
        metrics: the evaluator's metrics when complete, else None.
        error: why it failed or was lost, else None.
        attempts: how many times it was started (1 unless a worker died under it).
        seconds: evaluator time of the last attempt, measured in the worker (for a lost
            trial: from its start to the death being noticed).
        worker: which worker ran the last attempt ("host:pid", or a Ray actor's label;
            "" for the serial executor, which runs trials in the caller's process).
    """

    key: Hashable
    arch: Arch
    state: str
    metrics: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 1
    seconds: float = 0.0
    worker: str = ""


def _same(evaluator: Evaluator) -> Evaluator:
    return evaluator


@dataclass(frozen=True)
class EvaluatorSpec:
    """How a worker builds its evaluator: `factory(**kwargs)`, called once per worker.

    Both must pickle (a top-level function or class, plain arguments), because the spec
    travels to worker processes and Ray actors.

    Example:
        >>> spec = EvaluatorSpec(ToyEvaluator, {"space": "toy_categorical"})  # doctest: +SKIP
        >>> evaluator = spec.build()  # doctest: +SKIP
    """

    factory: Callable[..., Evaluator]
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, evaluator: Evaluator) -> EvaluatorSpec:
        """A spec that ships an existing (picklable) evaluator object to every worker."""
        return cls(_same, {"evaluator": evaluator})

    def build(self) -> Evaluator:
        return self.factory(**self.kwargs)

    def check_picklable(self) -> None:
        """Raise ConfigError if the spec cannot be sent to another process."""
        try:
            pickle.dumps(self)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise ConfigError(f"the evaluator cannot be sent to worker processes ({exc}); "
                              "build it from a top-level function or class") from None


def worker_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _plain(value: Any) -> Any:
    """A metric as a plain Python number (numpy and 0-d torch scalars have `.item()`)."""
    if isinstance(value, bool | int | float) or not hasattr(value, "item"):
        return value
    return value.item()


def error_message(exc: BaseException) -> Message:
    """An unexpected exception as a message; the loop re-raises it with the traceback."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob: bytes | None = pickle.dumps(exc)
        pickle.loads(blob)  # some exceptions pickle but cannot be rebuilt
    except Exception:
        blob = None
    return ("error", (blob, text), 0.0, worker_label())


def build_evaluator(spec: EvaluatorSpec) -> tuple[Evaluator | None, Message | None]:
    """The evaluator of `spec`, or the error message every trial will get instead."""
    try:
        return spec.build(), None
    except Exception as exc:
        return None, error_message(exc)


def evaluate(evaluator: Evaluator, arch: Arch, *, reraise: bool = False) -> Message:
    """Run one trial in a worker and describe how it ended (`reraise`: let an unexpected
    exception propagate instead of describing it)."""
    start = time.perf_counter()
    try:
        metrics = {str(k): _plain(v) for k, v in evaluator(arch).items()}
    except TrialFailed as exc:
        reason = str(exc) or type(exc).__name__
        return ("failed", reason, time.perf_counter() - start, worker_label())
    except Exception as exc:
        if reraise:
            raise
        return error_message(exc)
    return ("complete", metrics, time.perf_counter() - start, worker_label())


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (set as the re-raised one's cause)."""

    def __str__(self) -> str:
        return "\n" + self.args[0]


@dataclass
class _Task:
    key: Hashable
    arch: Arch
    attempts: int = 0
    reasons: list[str] = field(default_factory=list)


class Executor(abc.ABC):
    """Runs submitted trials on up to `capacity` workers; outcomes come back from `wait`.

    Trials submitted beyond the capacity queue up (in submission order); a search loop
    should submit only while `in_flight < capacity`, so each ask sees every result that
    has arrived. An evaluator exception other than `TrialFailed` is a bug: `wait` re-raises
    it (same type, the worker's traceback as its cause), as the serial loop would.

    Args:
        max_retries: how often a trial whose worker died is started again before it is
            reported "lost".
    """

    capacity: int = 1

    def __init__(self, *, max_retries: int = 2) -> None:
        if max_retries < 0:
            raise ConfigError(f"max_retries must be at least 0, got {max_retries}")
        self.max_retries = max_retries
        self._tasks: dict[Hashable, _Task] = {}
        self._queue: deque[Hashable] = deque()
        self._ready: list[Outcome] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(capacity={self.capacity}, in_flight={self.in_flight})"

    @property
    def in_flight(self) -> int:
        """Trials submitted whose outcome `wait` has not returned yet (queued or running)."""
        return len(self._tasks) + len(self._ready)

    def submit(self, key: Hashable, arch: Arch) -> None:
        """Start evaluating `arch` (or queue it); `key` names the trial in its Outcome."""
        if self._closed:
            raise RuntimeError("submit() on a closed executor")
        if key in self._tasks or any(o.key == key for o in self._ready):
            raise ValueError(f"trial {key!r} is already in flight")
        self._tasks[key] = _Task(key, arch)
        self._queue.append(key)
        self._dispatch()

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """Outcomes that have arrived, waiting up to `timeout` seconds (None: until one
        arrives) if there are none yet; [] when nothing is in flight or on timeout."""
        if not self._ready and self._tasks:
            self._poll(timeout)
        ready, self._ready = self._ready, []
        return ready

    def cancel(self) -> None:
        """Abandon every trial in flight: their outcomes never come back, the workers that
        run them are stopped and replaced, and the executor stays usable (a search that
        stops early leaves an executor it was given ready for the next one)."""
        self._tasks.clear()
        self._queue.clear()
        self._ready.clear()
        self._abandon()

    def _abandon(self) -> None:  # noqa: B027 (optional hook)
        """Stop the workers still running cancelled trials (nothing runs in between for
        the serial executor)."""

    def close(self) -> None:
        """Stop the workers; trials still in flight are abandoned."""
        self._closed = True
        self._tasks.clear()
        self._queue.clear()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abc.abstractmethod
    def _dispatch(self) -> None:
        """Hand queued trials to idle workers."""

    @abc.abstractmethod
    def _poll(self, timeout: float | None) -> None:
        """Wait up to `timeout` for results and deaths; move finished trials to `_ready`."""

    def _finished(self, key: Hashable, message: Message) -> None:
        """Record what a worker answered for trial `key` (raises an evaluator's bug)."""
        task = self._tasks.pop(key)
        status, payload, seconds, worker = message
        if status == "error":
            blob, text = payload
            exc = pickle.loads(blob) if blob is not None else RuntimeError(
                f"the evaluator raised an exception that cannot be sent back from worker "
                f"{worker}")
            raise exc from RemoteTraceback(text)
        metrics, error = (payload, None) if status == "complete" else (None, payload)
        self._ready.append(Outcome(key, task.arch, status, metrics, error, task.attempts,
                                   seconds, worker))

    def _died(self, key: Hashable, reason: str, *, worker: str, seconds: float) -> None:
        """Trial `key` lost its worker: queue it again, or report it lost."""
        task = self._tasks[key]
        task.reasons.append(reason)
        if task.attempts <= self.max_retries:
            self._queue.appendleft(key)  # first in line: it has waited longest
            return
        del self._tasks[key]
        error = f"worker died on all {task.attempts} attempts ({'; '.join(task.reasons)})"
        self._ready.append(Outcome(key, task.arch, "lost", None, error, task.attempts,
                                   seconds, worker))


class SerialExecutor(Executor):
    """Runs trials one at a time in this process: each `wait` evaluates one queued trial.

    Args:
        evaluator: an `EvaluatorSpec` (built here, once) or an evaluator itself.
    """

    capacity = 1

    def __init__(self, evaluator: EvaluatorSpec | Evaluator) -> None:
        super().__init__(max_retries=0)
        self.evaluator = evaluator.build() if isinstance(evaluator, EvaluatorSpec) else evaluator

    def _dispatch(self) -> None:
        pass  # trials run in `wait`, so the loop can ask again before the next one starts

    def _poll(self, timeout: float | None) -> None:
        key = self._queue.popleft()
        task = self._tasks[key]
        task.attempts += 1
        try:
            message = evaluate(self.evaluator, task.arch, reraise=True)
        except Exception:
            del self._tasks[key]
            raise
        status, payload, seconds, _ = message
        self._finished(key, (status, payload, seconds, ""))  # no worker: this process
