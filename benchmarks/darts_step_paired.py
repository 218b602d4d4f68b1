"""DARTS search steps of ours and of the reference, timed alternately, pair by pair.

Run from the repository root:

    python benchmarks/darts_step_paired.py [--batches 16,32] [--orders first,second]
                                           [--pairs 8] [--warmup 1] [--json PATH]

`darts_step.py` measures every configuration in its own process, one after the other, so
the reference's steps and ours run minutes apart; on a machine whose speed drifts (ours
took 5.1–6.8 s for the same step within one hour) their ratio drifts with it. Here both
implementations are built once, each in its own process, and take turns: one step of
one, then one step of the other (who goes first alternates), `--pairs` times. The speed-up
of each pair is the reference's seconds over ours from steps seconds apart, and the
report gives the median over pairs beside the spread. Peak memory is each process's own
(as in `darts_step.py`, model and data included). The models and steps are those of
`darts_step.py` (`build`); its float64 equivalence check covers them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _darts_setup import build  # noqa: E402
from _measure import peak_rss_mb  # noqa: E402

IMPLS = ("ours", "reference")
TARGET = 3.0  # the speed-up target per search step


def serve(impl: str, batch: int, order: str, warmup: int) -> None:
    """Child: build, warm up, then one timed step per `step` line on stdin."""
    bench = build(impl, batch, order)
    for _ in range(warmup):
        bench.step()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        start = time.perf_counter()
        bench.step()
        print(f"{time.perf_counter() - start:.6f}", flush=True)
    print(json.dumps({"peak_mb": peak_rss_mb()}), flush=True)


def _start(impl: str, batch: int, order: str, warmup: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--_serve",
         json.dumps([impl, batch, order, warmup])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    _expect(proc, "ready")
    return proc


def _expect(proc: subprocess.Popen[str], what: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line or (what == "ready" and line != "ready"):
        raise RuntimeError(f"benchmark child stopped (exit {proc.poll()}) instead of {what}")
    return line


def _step(proc: subprocess.Popen[str]) -> float:
    assert proc.stdin is not None
    proc.stdin.write("step\n")
    proc.stdin.flush()
    return float(_expect(proc, "a step time"))


def measure_pairs(batch: int, order: str, pairs: int, warmup: int) -> dict[str, Any]:
    """Both implementations alive at once, stepping in turn; times and peaks."""
    procs = {impl: _start(impl, batch, order, warmup) for impl in IMPLS}
    times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    try:
        for i in range(pairs):
            for impl in (IMPLS if i % 2 == 0 else IMPLS[::-1]):
                times[impl].append(_step(procs[impl]))
        peaks = {}
        for impl, proc in procs.items():
            assert proc.stdin is not None
            proc.stdin.write("quit\n")
            proc.stdin.flush()
            peaks[impl] = json.loads(_expect(proc, "the peak"))["peak_mb"]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    ratios = [r / o for r, o in zip(times["reference"], times["ours"], strict=True)]
    return {"batch": batch, "order": order, "times": times, "ratios": ratios,
            "speedup": statistics.median(ratios), "peak_mb": peaks,
            "peak_ratio": peaks["ours"] / peaks["reference"]}


def report(r: dict[str, Any]) -> str:
    ours, ref = (statistics.median(r["times"][i]) for i in ("ours", "reference"))
    verdict = "PASS" if r["speedup"] >= TARGET else "FAIL"
    return (f"batch {r['batch']:3d} {r['order']:6s}  reference {ref:6.2f} s  ours {ours:5.2f} s"
            f"  speed-up {r['speedup']:.2f}× [{verdict}] (pairs {min(r['ratios']):.2f}–"
            f"{max(r['ratios']):.2f}×)  peak {r['peak_mb']['ours']:.0f} / "
            f"{r['peak_mb']['reference']:.0f} MB = {r['peak_ratio']:.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="16,32", help="comma-separated batch sizes")
    p.add_argument("--orders", default="first,second", help="search-step orders")
    p.add_argument("--pairs", type=int, default=8, help="timed steps of each implementation")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps of each first")
    p.add_argument("--json", type=Path, help="write all times to this JSON file")
    p.add_argument("--_serve", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._serve:
        impl, batch, order, warmup = json.loads(args._serve)
        serve(impl, batch, order, warmup)
        return 0
    orders = [o for o in args.orders.split(",") if o]
    if args.pairs < 1 or args.warmup < 0 or not set(orders) <= {"first", "second"}:
        print("darts_step_paired: --pairs ≥ 1, --warmup ≥ 0, --orders from first,second",
              file=sys.stderr)
        return 2
    results = []
    for batch in (int(b) for b in args.batches.split(",") if b):
        for order in orders:
            results.append(measure_pairs(batch, order, args.pairs, args.warmup))
            print(report(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
