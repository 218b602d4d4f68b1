"""ProcessExecutor: trials on N local worker processes that survive each other's deaths.

Each worker is a process of its own with a private pipe, so the executor always knows
which trial a worker holds: when a worker dies (killed, out of memory, a segfault in a
native library) its pipe closes and its process sentinel fires, only that trial is queued
again, and a fresh worker takes its place. `concurrent.futures.ProcessPoolExecutor`
cannot do this: one dead worker breaks the whole pool.

Workers start with the 'forkserver' method where there is one (POSIX), else 'spawn':
never a plain fork of a process that may already run torch threads. The forkserver
imports this module (and so torch) once, which makes replacing a worker take milliseconds.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Hashable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from typing import Any

from archsearch.errors import ConfigError
from archsearch.workers._base import (
    EvaluatorSpec,
    Executor,
    build_evaluator,
    evaluate,
    worker_label,
)

# How long close() lets idle workers exit on their own before terminating them.
STOP_GRACE_SECONDS = 2.0


def _worker_main(conn: Connection, spec: EvaluatorSpec, threads: int | None) -> None:
    """A worker: build the evaluator once, then answer one trial per message until told
    to stop (None) or the executor goes away (EOF)."""
    # Ctrl-C reaches the whole process group; the executor, not each worker, decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads is not None:
        import torch

        # Workers share the machine's cores: one OpenMP pool each of `threads` threads.
        torch.set_num_threads(threads)
    evaluator, broken = build_evaluator(spec)
    while True:
        try:
            arch = conn.recv()
        except (EOFError, OSError):
            return
        if arch is None:
            return
        conn.send(broken if broken is not None else evaluate(evaluator, arch))


def default_start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


@dataclass
class _Worker:
    process: Any  # multiprocessing.Process of the chosen context
    conn: Connection
    label: str
    key: Hashable | None = None  # the trial it is running
    started: float = 0.0


class ProcessExecutor(Executor):
    """Evaluates trials on `workers` local processes; a dead worker fails only its trial.

    Args:
        spec: builds the evaluator, once in each worker.
        workers: number of worker processes (trials at once).
        max_retries: restarts of a trial whose worker died before it is reported "lost".
        threads_per_worker: `torch.set_num_threads` in each worker (None: leave torch
            alone and do not import it).
        start_method: 'forkserver' or 'spawn' (default: forkserver where available).

    Example:
        >>> with ProcessExecutor(spec, workers=2) as ex:  # doctest: +SKIP
        ...     ex.submit(0, arch)
        ...     outcomes = ex.wait()
    """

    def __init__(self, spec: EvaluatorSpec, workers: int, *, max_retries: int = 2,
                 threads_per_worker: int | None = 1, start_method: str | None = None) -> None:
        super().__init__(max_retries=max_retries)
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        if threads_per_worker is not None and threads_per_worker < 1:
            raise ConfigError(f"threads_per_worker must be at least 1, got "
                              f"{threads_per_worker}")
        method = start_method or default_start_method()
        if method not in ("forkserver", "spawn"):
            raise ConfigError(f"start_method must be 'forkserver' or 'spawn', got {method!r}")
        spec.check_picklable()
        self.spec, self.capacity, self.threads = spec, workers, threads_per_worker
        self._context = multiprocessing.get_context(method)
        if method == "forkserver":
            # The forkserver imports this module (hence archsearch and torch) once; every
            # worker forked from it then starts at once, replacements included.
            self._context.set_forkserver_preload([__name__])
        self._workers: list[_Worker] = []
        try:
            for _ in range(workers):
                self._workers.append(self._start())
        except BaseException:
            self.close()
            raise

    def _start(self) -> _Worker:
        mine, theirs = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(theirs, self.spec,
                                                                   self.threads),
                                        name="archsearch-worker", daemon=True)
        process.start()
        theirs.close()  # only the worker holds its end now: its death means EOF here
        return _Worker(process, mine, f"{worker_label().split(':')[0]}:{process.pid}")

    def _replace(self, worker: _Worker) -> None:
        _stop(worker, grace_seconds=0.0)
        self._workers[self._workers.index(worker)] = self._start()

    def _dispatch(self) -> None:
        for index, worker in enumerate(self._workers):
            if not self._queue:
                return
            if worker.key is not None:
                continue
            key = self._queue.popleft()
            if worker.process.exitcode is not None or not _send(worker, self._tasks[key].arch):
                # It died while idle: its trial never started, so no attempt is counted.
                self._replace(worker)
                worker = self._workers[index]
                worker.conn.send(self._tasks[key].arch)
            self._tasks[key].attempts += 1
            worker.key, worker.started = key, time.monotonic()

    def _poll(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready and self._tasks:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            busy = [w for w in self._workers if w.key is not None]
            ready = wait_for([w.conn for w in busy] + [w.process.sentinel for w in busy],
                             remaining)
            for worker in busy:
                if worker.conn in ready or worker.process.sentinel in ready:
                    self._collect(worker)
            self._dispatch()
            if not ready:
                return  # timed out

    def _collect(self, worker: _Worker) -> None:
        """Read a busy worker's answer, or notice that it died without one."""
        key = worker.key
        try:
            message = worker.conn.recv() if worker.conn.poll() else None
        except (EOFError, OSError):
            message = None
        if message is None:
            seconds = time.monotonic() - worker.started
            reason = _death_reason(worker.process)
            self._replace(worker)
            self._died(key, reason, worker=worker.label, seconds=seconds)
            return
        worker.key = None
        self._finished(key, message)

    def _abandon(self) -> None:
        for worker in list(self._workers):
            if worker.key is not None:  # still computing a cancelled trial
                self._replace(worker)

    def close(self) -> None:
        super().close()
        workers, self._workers = self._workers, []
        for worker in workers:
            if worker.key is None:
                _send(worker, None)
        for worker in workers:
            _stop(worker, grace_seconds=STOP_GRACE_SECONDS if worker.key is None else 0.0)


def _send(worker: _Worker, message: Any) -> bool:
    try:
        worker.conn.send(message)
    except OSError:
        return False
    return True


def _death_reason(process: Any) -> str:
    process.join(timeout=5.0)  # the pipe can close a moment before the exit status is set
    code = process.exitcode
    if code is None:
        return "worker stopped answering"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _stop(worker: _Worker, *, grace_seconds: float) -> None:
    """End a worker process: let it exit, then terminate, then kill it."""
    process = worker.process
    process.join(timeout=grace_seconds)
    if process.is_alive():
        process.terminate()
        process.join(timeout=2.0)
    if process.is_alive():
        process.kill()
        process.join(timeout=2.0)
    worker.conn.close()
