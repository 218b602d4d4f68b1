"""Speed-up of 2 workers over 1, and the executors' overhead per trial (GitHub issue 7).

Run from the repository root:

    python benchmarks/parallel_trials.py [--trials 8] [--cpu-seconds 1.0]

    --trials N           timed trials per configuration (default 8)
    --cpu-seconds S      CPU time each trial computes (default 1.0)
    --backends LIST      process,ray (Ray only if installed)
    --json PATH          also write every number as JSON

Each trial is `archsearch.workers.toy.ToyEvaluator`: it computes (a Python loop, not a
sleep) until its thread has used S seconds of CPU, then scores the arch. Sleeping trials
would overstate the speed-up: they use no core, so any number of them overlaps perfectly.

For each backend and 1 and 2 workers the script starts the executor (its start-up is
reported, not counted), runs one warm-up trial per worker so every evaluator is built,
then times N trials submitted at once:

- `wall`: from the first submit to the last outcome.
- `speed-up` = wall(1 worker) / wall(2 workers); 2.0 is perfect on 2 idle cores.
- `overhead/trial` = (wall × workers − Σ evaluator seconds) / N: worker time per trial
  not spent in the evaluator (sending the arch, waking up, returning the metrics, idle
  slots at the end of the batch).
- `round trip`: wall / N for trials that compute nothing (cpu_seconds 0), 1 worker: the
  pure cost of one trial's trip through the executor.

The numbers are wall-clock times: other processes on the machine slow them down, and the
load average before each run is printed so that noisy runs can be spotted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from archsearch.testing.toys import categorical_space
from archsearch.workers import EvaluatorSpec, Executor, ProcessExecutor, SerialExecutor
from archsearch.workers._ray import RayExecutor, ray_available
from archsearch.workers.toy import ToyEvaluator

ROUND_TRIP_TRIALS = 200


def archs(count: int, seed: int = 0) -> list[Any]:
    space = categorical_space()
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(count)]


def make(backend: str, workers: int, cpu_seconds: float) -> Executor:
    spec = EvaluatorSpec(ToyEvaluator, {"cpu_seconds": cpu_seconds})
    if backend == "serial":
        return SerialExecutor(spec)
    if backend == "process":
        return ProcessExecutor(spec, workers, threads_per_worker=1)
    return RayExecutor(spec, workers)


def run_batch(executor: Executor, batch: list[Any]) -> tuple[float, float]:
    """Submit every arch at once; (wall seconds until the last outcome, Σ evaluator seconds)."""
    start = time.perf_counter()
    for key, arch in enumerate(batch):
        executor.submit(key, arch)
    evaluator_seconds = 0.0
    while executor.in_flight:
        for outcome in executor.wait():
            if outcome.state != "complete":
                raise RuntimeError(f"trial {outcome.key} {outcome.state}: {outcome.error}")
            evaluator_seconds += outcome.seconds
    return time.perf_counter() - start, evaluator_seconds


def measure(backend: str, workers: int, trials: int, cpu_seconds: float) -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    start = time.perf_counter()
    with make(backend, workers, cpu_seconds) as executor:
        startup = time.perf_counter() - start
        run_batch(executor, archs(workers, seed=1))  # warm-up: every evaluator is built
        wall, evaluator = run_batch(executor, archs(trials))
    overhead = (wall * workers - evaluator) / trials
    return {"backend": backend, "workers": workers, "trials": trials, "startup_s": startup,
            "wall_s": wall, "evaluator_s": evaluator, "overhead_per_trial_s": overhead,
            "load_before": load}


def round_trip(backend: str) -> float:
    """Seconds per trial through a 1-worker executor when the evaluator does nothing."""
    with make(backend, 1, 0.0) as executor:
        run_batch(executor, archs(1, seed=1))
        wall, _ = run_batch(executor, archs(ROUND_TRIP_TRIALS, seed=2))
    return wall / ROUND_TRIP_TRIALS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--cpu-seconds", type=float, default=1.0)
    parser.add_argument("--backends", default="process,ray")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b != "ray" or ray_available()]
    print(f"{args.trials} trials of {args.cpu_seconds:g} s CPU each, {os.cpu_count()} CPUs; "
          "wall-clock times, noisy on a shared machine")
    rows = [measure("serial", 1, args.trials, args.cpu_seconds)]
    report = {"rows": rows, "speedup": {}, "round_trip_s": {}}
    for backend in backends:
        for workers in (1, 2):
            rows.append(measure(backend, workers, args.trials, args.cpu_seconds))
        one, two = rows[-2]["wall_s"], rows[-1]["wall_s"]
        report["speedup"][backend] = one / two
        report["round_trip_s"][backend] = round_trip(backend)
    print(f"{'backend':<8} {'workers':>7} {'startup':>8} {'wall':>7} {'evaluator':>9} "
          f"{'overhead/trial':>14} {'load':>5}")
    for r in rows:
        print(f"{r['backend']:<8} {r['workers']:>7} {r['startup_s']:>7.2f}s {r['wall_s']:>6.2f}s "
              f"{r['evaluator_s']:>8.2f}s {r['overhead_per_trial_s'] * 1e3:>12.1f}ms "
              f"{r['load_before']:>5.1f}")
    for backend in backends:
        print(f"{backend}: speed-up of 2 workers over 1 = {report['speedup'][backend]:.2f}x; "
              f"round trip of an empty trial = {report['round_trip_s'][backend] * 1e3:.2f} ms")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
