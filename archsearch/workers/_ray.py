"""RayExecutor: trials on Ray actors, on a local cluster or an existing one (Moritz et al.,
"Ray: A Distributed Framework for Emerging AI Applications", OSDI 2018, arXiv:1712.05889).

One actor per worker slot builds the evaluator once and then runs one trial at a time;
each actor reserves the CPUs and GPUs a trial asks for, so Ray places it on a node that
has them. An actor that dies (its process killed, its node lost) surfaces as a
`RayActorError` on its trial's result: that trial is started again on a fresh actor.
Ray is an optional extra and is imported only here, when a RayExecutor is made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from archsearch.errors import ConfigError
from archsearch.space import Arch
from archsearch.workers._base import (
    EvaluatorSpec,
    Executor,
    Message,
    build_evaluator,
    evaluate,
    worker_label,
)

RAY_MISSING = "--workers with --ray-address needs Ray: pip install 'archsearch[ray]'"


def import_ray(missing: str = RAY_MISSING) -> Any:
    """The `ray` module, or ConfigError(`missing`) saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(missing) from None
    return ray


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


class _TrialActor:
    """The body of a Ray actor (wrapped with `ray.remote` when Ray is in use)."""

    def __init__(self, spec: EvaluatorSpec, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)  # the CPUs this actor reserved
        self.evaluator, self.broken = build_evaluator(spec)

    def run(self, arch: Arch) -> Message:
        return self.broken if self.broken is not None else evaluate(self.evaluator, arch)

    def label(self) -> str:
        return worker_label()


@dataclass
class _Slot:
    actor: Any
    number: int  # actors started in this slot so far, for the label
    index: int
    ref: Any = None  # the running trial's result
    key: Hashable | None = None
    started: float = 0.0

    @property
    def label(self) -> str:
        return f"ray-actor-{self.index}.{self.number}"


class RayExecutor(Executor):
    """Evaluates trials on `workers` Ray actors.

    Args:
        spec: builds the evaluator, once in each actor.
        workers: number of actors (trials at once).
        address: an existing cluster ("auto", "ray://host:10001", ...); None starts a local
            one with `workers × num_cpus_per_trial` CPUs, or uses the one this process
            already initialised. A cluster started here is shut down by `close`.
        num_cpus_per_trial: CPUs each actor reserves (also its torch thread count).
        num_gpus_per_trial: GPUs each actor reserves (fractions share a GPU).
        max_retries: restarts of a trial whose actor died before it is reported "lost".

    Raises:
        ConfigError: Ray is not installed, the cluster cannot be reached, or it has fewer
            CPUs/GPUs than one trial asks for.
    """

    def __init__(self, spec: EvaluatorSpec, workers: int, *, address: str | None = None,
                 num_cpus_per_trial: float = 1, num_gpus_per_trial: float = 0,
                 max_retries: int = 2) -> None:
        super().__init__(max_retries=max_retries)
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        if not num_cpus_per_trial > 0 or num_gpus_per_trial < 0:
            raise ConfigError(f"a trial needs > 0 CPUs and >= 0 GPUs, got "
                              f"{num_cpus_per_trial} and {num_gpus_per_trial}")
        self._ray = ray = import_ray()
        spec.check_picklable()
        self.spec, self.capacity = spec, workers
        self._initialised_here = _connect(ray, address, workers, num_cpus_per_trial)
        try:
            _check_resources(ray, num_cpus_per_trial, num_gpus_per_trial)
            self._actor_class = ray.remote(_TrialActor).options(
                num_cpus=num_cpus_per_trial, num_gpus=num_gpus_per_trial, max_restarts=0,
                max_task_retries=0)
            self._threads = max(1, int(num_cpus_per_trial))
            self._slots = [self._new_slot(i, 1) for i in range(workers)]
        except BaseException:
            self.close()
            raise
        self._dead = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                      ray.exceptions.ObjectLostError, ray.exceptions.NodeDiedError,
                      ray.exceptions.LocalRayletDiedError)

    def _new_slot(self, index: int, number: int) -> _Slot:
        return _Slot(self._actor_class.remote(self.spec, self._threads), number, index)

    def _replace(self, slot: _Slot) -> None:
        try:
            self._ray.kill(slot.actor, no_restart=True)
        except Exception:  # already gone with its node: nothing to release
            pass
        self._slots[slot.index] = self._new_slot(slot.index, slot.number + 1)

    def _dispatch(self) -> None:
        for slot in self._slots:
            if not self._queue:
                return
            if slot.key is None:
                key = self._queue.popleft()
                slot.ref = slot.actor.run.remote(self._tasks[key].arch)
                self._tasks[key].attempts += 1
                slot.key, slot.started = key, time.monotonic()

    def _poll(self, timeout: float | None) -> None:
        ray = self._ray
        busy = {slot.ref: slot for slot in self._slots if slot.key is not None}
        ready, _ = ray.wait(list(busy), num_returns=1, timeout=timeout)
        if ready:  # collect everything else that has finished too
            ready, _ = ray.wait(list(busy), num_returns=len(busy), timeout=0)
        for ref in ready:
            self._collect(busy[ref])
        self._dispatch()

    def _collect(self, slot: _Slot) -> None:
        key, slot.key = slot.key, None
        try:
            message = self._ray.get(slot.ref)
        except self._dead as exc:
            reason = f"{type(exc).__name__}: {_first_line(exc)}"
            self._replace(slot)
            self._died(key, reason, worker=slot.label, seconds=time.monotonic() - slot.started)
            return
        self._finished(key, message)

    def _abandon(self) -> None:
        for slot in list(self._slots):
            if slot.key is not None:  # still computing a cancelled trial
                self._replace(slot)

    def close(self) -> None:
        super().close()
        ray = getattr(self, "_ray", None)
        for slot in getattr(self, "_slots", []):
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:
                pass
        self._slots = []
        if getattr(self, "_initialised_here", False) and ray.is_initialized():
            ray.shutdown()
            self._initialised_here = False


def _connect(ray: Any, address: str | None, workers: int, cpus_per_trial: float) -> bool:
    """Initialise Ray if this process has not; True if it was initialised here (then
    `close` shuts it down: a local cluster stops, a remote one is only disconnected)."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address is None:
        ray.init(num_cpus=max(1, round(workers * cpus_per_trial)), include_dashboard=False,
                 **quiet)
        return True
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"--ray-address {address}: cannot connect ({_first_line(exc)})") \
            from None
    return True


def _check_resources(ray: Any, cpus: float, gpus: float) -> None:
    """A trial that asks for more than the cluster has would wait forever: refuse it."""
    total = ray.cluster_resources()
    if total.get("CPU", 0) < cpus:
        raise ConfigError(f"each trial asks for {cpus} CPUs but the Ray cluster has "
                          f"{total.get('CPU', 0):g}")
    if gpus > 0 and total.get("GPU", 0) < gpus:
        raise ConfigError(f"each trial asks for {gpus} GPUs but the Ray cluster has "
                          f"{total.get('GPU', 0):g}")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
