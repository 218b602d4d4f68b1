"""Parallel trial evaluation: executors that keep up to N trials in flight (GitHub issue 7).

Asynchronous parallel search as in Zoph & Le 2017 (arXiv:1611.01578) and Real et al. 2019
(arXiv:1802.01548): the loop asks for N architectures, and tells each result as it
arrives. Strategies stay ask/tell and never see the concurrency; the loop stays the only
writer of the journal. Backends:

- `SerialExecutor`: in this process, one trial at a time (the default).
- `ProcessExecutor`: N local worker processes; needs nothing extra.
- `RayExecutor`: N Ray actors on a local or existing cluster (`pip install 'archsearch[ray]'`).

A worker that dies fails only its trial, which is retried (`max_retries`, default 2) and
then reported "lost"; the executor replaces the worker and goes on.

Reproducibility with N > 1 workers: results are told in completion order, which depends on
timing. Strategies whose proposals do not depend on the scores (grid, and random search)
evaluate the same set of architectures with 1 or N workers and a trial budget; only the
journal's order differs (with a time budget the set depends on the clock anyway).
Evolution, NSGA-II, the RL controller and Bayesian optimisation choose their next
proposals from the results told so far, so with N > 1 the architectures they propose
depend on which trials finished first, and two runs with the same seed can differ.
Resuming works for every strategy: the journal records each tell's place among the asks,
and a resumed run replays that interleaving, so the strategy is exactly where it was when
the run stopped; the trials then in flight are evaluated again before anything new is asked.
The metrics of one architecture do not depend on the worker (each trial seeds itself from
the arch), up to floating-point differences across thread counts and devices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from archsearch.errors import ConfigError
from archsearch.evaluators._base import Evaluator
from archsearch.workers._base import EvaluatorSpec, Executor, Outcome, SerialExecutor
from archsearch.workers._process import ProcessExecutor
from archsearch.workers._ray import RAY_MISSING, RayExecutor, ray_available

BACKENDS = ("auto", "process", "ray")


def create_executor(spec: EvaluatorSpec | Evaluator, workers: int = 1, *,
                    backend: str = "auto", ray_address: str | None = None,
                    num_cpus_per_trial: float = 1, num_gpus_per_trial: float = 0,
                    max_retries: int = 2,
                    log: Callable[[str], None] | None = None) -> Executor:
    """The executor for `--workers N [--ray-address ADDR]`.

    One worker and no Ray address: a `SerialExecutor` in this process. More, with backend
    "auto": Ray (a local cluster) when it is installed, else local processes (and `log`
    says how to install Ray). "process" and "ray" force a backend; an address forces Ray.

    Args:
        spec: builds the evaluator in each worker (a plain evaluator is accepted for the
            serial executor, and shipped with `EvaluatorSpec.of` otherwise).
        workers: trials at once.
        backend: "auto", "process" or "ray".
        ray_address: an existing Ray cluster to run on.
        num_cpus_per_trial: CPUs each trial reserves on Ray; torch threads per worker.
        num_gpus_per_trial: GPUs each trial reserves on Ray (the process backend reserves
            none: the evaluator's device decides).
        max_retries: restarts of a trial whose worker died.
        log: where a note about the chosen backend goes.

    Raises:
        ConfigError: a bad setting, or Ray asked for but not installed.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {workers!r}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if ray_address is not None and backend == "process":
        raise ConfigError("--ray-address needs the ray backend, not 'process'")
    use_ray = backend == "ray" or ray_address is not None
    if use_ray and not ray_available():
        raise ConfigError(RAY_MISSING if ray_address is not None else
                          "the ray backend needs Ray: pip install 'archsearch[ray]'")
    if workers == 1 and not use_ray:
        return SerialExecutor(spec)
    if not isinstance(spec, EvaluatorSpec):
        spec = EvaluatorSpec.of(spec)
    if backend == "auto" and not use_ray:
        use_ray = ray_available()
        if not use_ray and log is not None:
            log(f"--workers {workers}: Ray is not installed, so trials run on {workers} local "
                "processes (for a Ray cluster: pip install 'archsearch[ray]')")
    if use_ray:
        return RayExecutor(spec, workers, address=ray_address,
                           num_cpus_per_trial=num_cpus_per_trial,
                           num_gpus_per_trial=num_gpus_per_trial, max_retries=max_retries)
    threads = max(1, int(num_cpus_per_trial))
    return ProcessExecutor(spec, workers, max_retries=max_retries, threads_per_worker=threads)


def evaluator_from_settings(settings: Mapping[str, Any]) -> Evaluator:
    """The evaluator of a multi-trial run's settings (as in its config.json), rebuilt in a
    worker: the space, the dataset and then the evaluator, as `run_multitrial` makes them."""
    from archsearch.data import load_dataset
    from archsearch.multitrial import create_evaluator, create_space

    space = create_space(settings["space"], settings["space_args"])
    data = load_dataset(settings["dataset"], settings["data_dir"], seed=settings["seed"])
    return create_evaluator(settings, space, data)


def settings_spec(settings: Mapping[str, Any]) -> EvaluatorSpec:
    """An `EvaluatorSpec` that builds a run's evaluator from its settings in each worker."""
    return EvaluatorSpec(evaluator_from_settings, {"settings": dict(settings)})


# The run-time settings of a multi-trial run (not part of what it searches: a resumed run
# may change them), with their defaults.
PARALLEL_DEFAULTS: dict[str, Any] = {"workers": 1, "ray_address": None,
                                     "cpus_per_trial": 1.0, "gpus_per_trial": 0.0}


def check_parallel_settings(settings: Mapping[str, Any]) -> bool:
    """Check `--workers`, `--ray-address`, `--cpus-per-trial`, `--gpus-per-trial` (before
    anything is loaded) and say whether the trials will run on Ray.

    Raises:
        ConfigError: a bad value; Ray asked for but not installed; GPUs reserved for trials
            that run on the CPU, or a GPU device for Ray trials that reserve none (Ray hides
            the GPUs from an actor that reserved none).
    """
    s = {**PARALLEL_DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    workers, address = s["workers"], settings.get("ray_address")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {workers!r}")
    if not float(s["cpus_per_trial"]) > 0:
        raise ConfigError(f"--cpus-per-trial must be positive, got {s['cpus_per_trial']}")
    if not float(s["gpus_per_trial"]) >= 0:
        raise ConfigError(f"--gpus-per-trial must be at least 0, got {s['gpus_per_trial']}")
    if address is not None and not ray_available():
        raise ConfigError(RAY_MISSING)
    on_ray = address is not None or (workers > 1 and ray_available())
    gpu_device = str(s.get("device", "cpu")).startswith("cuda")
    if float(s["gpus_per_trial"]) > 0 and not on_ray:
        raise ConfigError("--gpus-per-trial reserves GPUs on Ray workers (--workers N > 1 or "
                          "--ray-address, pip install 'archsearch[ray]'); without Ray, pick "
                          "the GPU with --device")
    if float(s["gpus_per_trial"]) > 0 and not gpu_device:
        raise ConfigError(f"--gpus-per-trial {s['gpus_per_trial']:g} reserves GPUs that "
                          f"--device {s.get('device', 'cpu')} does not use; add --device cuda")
    if on_ray and gpu_device and not float(s["gpus_per_trial"]) > 0:
        raise ConfigError(f"--device {s['device']} on Ray workers needs --gpus-per-trial "
                          "(e.g. 1, or 0.5 to share a GPU): Ray hides GPUs from a trial that "
                          "reserves none")
    return on_ray


def executor_for_run(settings: Mapping[str, Any], evaluator: Evaluator,
                     log: Callable[[str], None] | None = None) -> Executor:
    """The executor of a multi-trial run's settings: `evaluator` itself with one worker,
    else workers that rebuild the evaluator from the settings (`settings_spec`)."""
    s = {**PARALLEL_DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    on_ray = check_parallel_settings(s)
    if s["workers"] == 1 and not on_ray:
        return SerialExecutor(evaluator)
    executor = create_executor(settings_spec(settings), s["workers"],
                               ray_address=settings.get("ray_address"),
                               num_cpus_per_trial=float(s["cpus_per_trial"]),
                               num_gpus_per_trial=float(s["gpus_per_trial"]), log=log)
    if log is not None:
        where = (f"the Ray cluster at {s['ray_address']}" if s["ray_address"] is not None
                 else "a local Ray cluster" if on_ray else "local processes")
        log(f"workers: {executor.capacity} trials at once on {where}")
    return executor


__all__ = [
    "BACKENDS",
    "EvaluatorSpec",
    "Executor",
    "Outcome",
    "ProcessExecutor",
    "RayExecutor",
    "SerialExecutor",
    "PARALLEL_DEFAULTS",
    "check_parallel_settings",
    "create_executor",
    "evaluator_from_settings",
    "executor_for_run",
    "settings_spec",
]
