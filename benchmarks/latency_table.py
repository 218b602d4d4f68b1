"""How well a latency lookup table predicts measured end-to-end latency (issue 5's target:
median absolute error under 10 % on this machine's CPU).

Run from the repository root:

    python benchmarks/latency_table.py [--spaces darts,mobilenet] [--samples 30]
                                       [--calibrate 5] [--threads 1] [--clock wall|cpu]
                                       [--repeats 20] [--json PATH] [--quick]

For each space (small networks: DARTS with C=8, 5 cells on 3×32×32 inputs; the mobilenet
space's default stages on 1×8×8 digits) it builds a `LatencyTable` on the CPU and reports
the time that took, then draws `--samples` archs, predicts each one's latency from the
table, measures it end to end (median of `--repeats` forward passes, batch 1) and reports
the median / mean / max absolute relative error — of the plain sum of entries and, with
`--calibrate N`, of the sum scaled by a ratio fitted on N *other* archs.

Timings are only as good as the machine is quiet: on a shared CPU other processes preempt
both the op timings and the end-to-end runs, by different amounts. The load average before
and after each space is printed; trust runs where it stays below the number of cores.
`--clock cpu` times the thread's CPU time instead of elapsed time, which removes the
waiting (not the cache pollution) that other processes cause.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsearch.hardware import LatencyTable, evaluate_predictor
from archsearch.spaces import SPACES

SETTINGS: dict[str, dict[str, Any]] = {
    "darts": {"space_args": {}, "build_kwargs": {"channels": 8, "layers": 5},
              "input_size": 32, "in_channels": 3},
    "mobilenet": {"space_args": {}, "build_kwargs": {}, "input_size": 8, "in_channels": 1},
    "nb201": {"space_args": {}, "build_kwargs": {"channels": 8, "cells_per_stage": 2},
              "input_size": 32, "in_channels": 3},
    "chain": {"space_args": {}, "build_kwargs": {}, "input_size": 8, "in_channels": 1},
}


def sample_archs(space: Any, n: int, seed: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    archs: dict[str, Any] = {}
    while len(archs) < n:
        arch = space.sample(rng)
        archs.setdefault(arch.fingerprint(), arch)
    return list(archs.values())


def run_space(name: str, args: argparse.Namespace) -> dict[str, Any]:
    s = SETTINGS[name]
    space = SPACES.get(name)(**s["space_args"])
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    table = LatencyTable.build(space, build_kwargs=s["build_kwargs"],
                               input_size=s["input_size"], in_channels=s["in_channels"],
                               threads=args.threads, clock=args.clock, warmup=args.warmup,
                               repeats=args.repeats, progress=not args.json)
    build_s = time.perf_counter() - start
    archs = sample_archs(space, args.calibrate + args.samples, seed=args.seed)
    calibration, held_out = archs[:args.calibrate], archs[args.calibrate:]
    raw = evaluate_predictor(table, held_out)
    result: dict[str, Any] = {
        "space": name, "settings": s, "entries": len(table.entries),
        "covering_archs": table.covering, "build_seconds": build_s,
        "raw": _summary(raw.to_json()), "load_before": load_before}
    if calibration:
        table.calibrate(calibration)
        # Re-predict from the same measurements: only the ratio changes.
        slope = table.calibration.slope
        scaled = [slope * p for p in raw.predicted_ms]
        errors = [abs(p - m) / m for p, m in zip(scaled, raw.measured_ms, strict=True)]
        result["calibrated"] = {"slope": slope, "median_abs_error": float(np.median(errors)),
                                "mean_abs_error": float(np.mean(errors)),
                                "max_abs_error": float(np.max(errors))}
    result["load_after"] = os.getloadavg()[0]
    result["per_arch"] = raw.to_json()["archs"]
    return result


def _summary(report: dict[str, Any]) -> dict[str, float]:
    return {k: report[k] for k in ("median_abs_error", "mean_abs_error", "max_abs_error")}


def _print(r: dict[str, Any]) -> None:
    measured = [a["measured_ms"] for a in r["per_arch"]]
    print(f"{r['space']}: {r['entries']} entries from {r['covering_archs']} archs in "
          f"{r['build_seconds']:.1f} s; measured {min(measured):.2f}-{max(measured):.2f} ms "
          f"(load {r['load_before']:.1f} -> {r['load_after']:.1f})")
    for kind in ("raw", "calibrated"):
        if kind in r:
            e = r[kind]
            extra = f" (ratio {e['slope']:.3f})" if kind == "calibrated" else ""
            print(f"  {kind:10s}{extra}: median |error| {100 * e['median_abs_error']:.1f} %, "
                  f"mean {100 * e['mean_abs_error']:.1f} %, max {100 * e['max_abs_error']:.1f} %")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", default="darts,mobilenet")
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--calibrate", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write every number here")
    p.add_argument("--quick", action="store_true", help="10 samples, 10 repeats")
    args = p.parse_args()
    if args.quick:
        args.samples, args.repeats = 10, 10
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.clock} clock, "
          f"{os.cpu_count()} CPUs")
    results = []
    for name in args.spaces.split(","):
        results.append(run_space(name.strip(), args))
        _print(results[-1])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
