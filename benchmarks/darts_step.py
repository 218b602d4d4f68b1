"""Time one DARTS search step of archsearch's supernet against a reference-style supernet.

Run from the repository root:

    python benchmarks/darts_step.py [--quick]

    --quick              batch 16 only (about a third of the full run's time)
    --batches 16,32      batch sizes to time
    --orders first,second  search-step orders to time
    --repeats 3          timed repeats per configuration (median reported), after 1 warm-up
    --json PATH          also write every number as JSON
    --no-check           skip the float64 equivalence check
    --wait-quiet SECONDS before each configuration, wait up to this long for an idle machine
    --retry-busy N       re-measure a configuration up to N times (default 2) when other
                         processes took > 10% of the CPUs while it ran; the quietest run counts
    --profile            instead of timing, profile one first- and one second-order step of
                         ours with torch.profiler and print the top ops

What it does (CIFAR-sized search: C=16, 8 cells, 4 nodes, 10 classes, 3×32×32 inputs, the
DARTS op set, the optimiser settings of `archsearch.strategies.DARTS`):

1. For each implementation ("ours" = `DartsSupernet` + `BilevelOptimizer`, "reference" =
   `_reference_darts.py`, organised like the paper's code), batch size and measure
   (forward with autograd recording, forward+backward, a first-order search step, a
   second-order search step with the finite-difference Hessian-vector product) it starts a
   fresh Python process, builds the model and data, runs one warm-up and `--repeats` timed
   runs, and reports the median time and the peak RSS of that process (`ru_maxrss`), as an
   absolute peak and as "activation peak" = peak − RSS right after building model and data.
2. First, in its own process, checks in float64 that both implementations compute the same
   logits, first- and second-order architecture gradients and search step (the reference's
   weights and α copied into ours); any difference above 1e-8 relative is reported as FAIL
   and makes the script exit with status 1.
3. Counts forward FLOPs (2 × MACs of conv and linear layers), takes backward ≈ 2 × forward,
   and compares the achieved fwd+bwd GFLOP/s with a 2048² float32 matmul.

The thread count is PyTorch's default. Timings are wall-clock; other processes on the
machine slow them down a lot (with 2 cores, one competing busy process can make a step 5-10×
slower), so each configuration also reports "other load", the share of the CPUs that other
processes used while it ran; trust rows where it is near 0%.
"""


from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _darts_check import check_equivalence, forward_flops_per_example, matmul_gflops  # noqa: E402,E501
from _darts_profile import run_profile  # noqa: E402
from _darts_setup import (  # noqa: E402
    BUSY,
    CHANNELS,
    CHECK_KEYS,
    CHECK_RTOL,
    CLASSES,
    IMAGE,
    IMPLS,
    LAYERS,
    MEMORY_TARGET,
    NODES,
    PUBLISHED,
    SPEEDUP_TARGET,
    build,
)
from _measure import (  # noqa: E402
    peak_rss_mb,
    rss_mb,
    spawn,
    wait_until_quiet,
)

# --------------------------------------------------------------------------------------------
# Child process: one configuration
# --------------------------------------------------------------------------------------------

def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    impl, batch, measure = spec["impl"], spec["batch"], spec["measure"]
    order = measure.removeprefix("step-") if measure.startswith("step-") else "first"
    bench = build(impl, batch, order)
    fn = {"forward": bench.forward, "fwd+bwd": bench.fwd_bwd, "step-first": bench.step,
          "step-second": bench.step}[measure]
    gc.collect()
    base = rss_mb()
    for _ in range(spec["warmup"]):
        fn()
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    peak = peak_rss_mb()
    return {**spec, "times": times, "median_s": statistics.median(times), "min_s": min(times),
            "base_rss_mb": base, "peak_mb": peak, "activation_peak_mb": peak - base}

# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def pool_rounds(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per (impl, batch, measure): the timed runs of all rounds together (median
    and min over them), the highest peaks and CPU load; a failed round is dropped unless all
    failed."""
    pooled: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in results:
        key = (r["impl"], r["batch"], r["measure"])
        if key not in pooled or "error" in pooled[key]:
            pooled[key] = dict(r)
        elif "error" not in r:
            p = pooled[key]
            p["times"] = [*p["times"], *r["times"]]
            p["median_s"], p["min_s"] = statistics.median(p["times"]), min(p["times"])
            for name in ("peak_mb", "activation_peak_mb", "other_cpu"):
                if name in r:
                    p[name] = max(p.get(name, 0.0), r[name])
    return list(pooled.values())


def _find(results: list[dict[str, Any]], impl: str, batch: int, measure: str
          ) -> dict[str, Any] | None:
    for r in results:
        if (r["impl"], r["batch"], r["measure"]) == (impl, batch, measure) and "error" not in r:
            return r
    return None


def report(out: dict[str, Any]) -> None:
    results, batches, measures = out["results"], out["batches"], out["measures"]
    print("\n== Timings (median of repeats; peak = max RSS of the configuration's process) ==")
    print(f"{'impl':<10} {'batch':>5} {'measure':<12} {'median s':>9} {'min s':>8} "
          f"{'peak MB':>8} {'act. peak MB':>13} {'other load':>11}")
    for b in batches:
        for impl in out["impls"]:
            for m in measures:
                r = next((r for r in results if (r["impl"], r["batch"], r["measure"])
                          == (impl, b, m)), None)
                if r is None:
                    continue
                if "error" in r:
                    print(f"{impl:<10} {b:>5} {m:<12} FAILED: {r['error'].splitlines()[-1]}")
                    continue
                other = r.get("other_cpu")
                other_text = "?" if other is None else f"{100 * other:.0f}%"
                print(f"{impl:<10} {b:>5} {m:<12} {r['median_s']:>9.3f} {r['min_s']:>8.3f} "
                      f"{r['peak_mb']:>8.0f} {r['activation_peak_mb']:>13.0f} "
                      f"{other_text:>11}")

    print("\n== Ratios: speed-up = reference s / ours s; memory = ours MB / reference MB ==")
    print(f"{'batch':>5} {'measure':<12} {'ref s':>8} {'ours s':>8} {'speed-up':>9} "
          f"{'ref MB':>8} {'ours MB':>8} {'mem ratio':>10} {'act. ratio':>11}")
    ratios = []
    for b in batches:
        for m in measures:
            r, o = _find(results, "reference", b, m), _find(results, "ours", b, m)
            if r is None or o is None:
                continue
            row = {"batch": b, "measure": m, "speedup": r["median_s"] / o["median_s"],
                   "memory_ratio": o["peak_mb"] / r["peak_mb"],
                   "activation_ratio": (o["activation_peak_mb"] / r["activation_peak_mb"]
                                        if r["activation_peak_mb"] > 0 else float("nan"))}
            ratios.append(row)
            print(f"{b:>5} {m:<12} {r['median_s']:>8.3f} {o['median_s']:>8.3f} "
                  f"{row['speedup']:>8.2f}× {r['peak_mb']:>8.0f} {o['peak_mb']:>8.0f} "
                  f"{row['memory_ratio']:>10.2f} {row['activation_ratio']:>11.2f}")
    out["ratios"] = ratios

    print(f"\n== Targets: ≥{SPEEDUP_TARGET:g}× faster per search step, ≤{MEMORY_TARGET:g}× the "
          "peak memory (against the reference measured above) ==")
    for row in ratios:
        if not row["measure"].startswith("step-"):
            continue
        fast = "PASS" if row["speedup"] >= SPEEDUP_TARGET else "FAIL"
        mem = "PASS" if row["memory_ratio"] <= MEMORY_TARGET else "FAIL"
        act = "PASS" if row["activation_ratio"] <= MEMORY_TARGET else "FAIL"
        print(f"batch {row['batch']:>3} {row['measure']:<12} speed-up {row['speedup']:5.2f}× "
              f"{fast}   peak {row['memory_ratio']:.2f} {mem}   "
              f"activation peak {row['activation_ratio']:.2f} {act}")

    print(f"\n== Published numbers, for context: {PUBLISHED['text']} ==")
    print(f"{'batch':>5} {'measure':<12} {'published s':>12} {'ours s':>8} {'published/ours':>15}")
    for b in batches:
        for m, seconds in PUBLISHED["seconds"].get(b, {}).items():
            o = _find(results, "ours", b, m)
            if o is not None:
                print(f"{b:>5} {m:<12} {seconds:>12.1f} {o['median_s']:>8.3f} "
                      f"{seconds / o['median_s']:>14.2f}×")
        lo, hi = PUBLISHED["peak_mb"].get(b, (None, None))
        peaks = [o["peak_mb"] for m in measures if (o := _find(results, "ours", b, m))]
        if lo is not None and peaks:
            print(f"{b:>5} {'peak':<12} {lo:>6.0f}–{hi:<5.0f} {max(peaks):>8.0f} "
                  f"{'(ours MB / published MB: ' + format(max(peaks) / hi, '.2f') + ')':>15}")

    flops, mm = out["flops_per_example"], out["matmul"]
    print(f"\n== Throughput: forward = {flops['ours'] / 1e9:.3f} GFLOP per example "
          "(2×MACs of conv+linear; reference counts "
          f"{flops['reference'] / 1e9:.3f}), fwd+bwd ≈ 3× forward; "
          f"{mm['n']}² float32 matmul: {mm['gflops']:.1f} GFLOP/s ==")
    print(f"{'impl':<10} {'batch':>5} {'fwd+bwd s':>10} {'GFLOP':>8} {'GFLOP/s':>8} "
          f"{'of matmul':>10}")
    throughput = []
    for b in batches:
        for impl in out["impls"]:
            r = _find(results, impl, b, "fwd+bwd")
            if r is None:
                continue
            gflop = 3 * flops["ours"] * b / 1e9
            rate = gflop / r["median_s"]
            throughput.append({"impl": impl, "batch": b, "gflop": gflop, "gflops": rate,
                               "fraction_of_matmul": rate / mm["gflops"]})
            print(f"{impl:<10} {b:>5} {r['median_s']:>10.3f} {gflop:>8.2f} {rate:>8.2f} "
                  f"{100 * rate / mm['gflops']:>9.1f}%")
    out["throughput"] = throughput

    check = out.get("check")
    if check:
        print(f"\n== Equivalence (float64, batch {check['batch']} of {check['size']}×"
              f"{check['size']} images, {check['weights']:,} weights in "
              f"{check['weight_tensors']} tensors copied reference → ours): "
              "max |ours − reference|, relative to max |reference| ==")
        for key in CHECK_KEYS:
            diff, rel = check[key]
            verdict = "FAIL" if key in check["failed"] else "ok"
            print(f"{key:<20} {diff:.3e}  (relative {rel:.3e})  {verdict}")
        if check["failed"]:
            print(f"EQUIVALENCE FAILED (relative tolerance {CHECK_RTOL:g}): "
                  f"{', '.join(check['failed'])} differ; ours does not compute what the "
                  "reference computes")
    elif "check_error" in out:
        print(f"\n== Equivalence check FAILED: {out['check_error']} ==")

    load0, load1 = out["loadavg_start"], out["loadavg_end"]
    print(f"\nload average at start {load0[0]:.2f}, at end {load1[0]:.2f} "
          f"({os.cpu_count()} CPUs, torch threads {out['threads']})")
    others = [r["other_cpu"] for r in results if "other_cpu" in r]
    if others and max(others) > BUSY:
        print(f"warning: other processes took up to {100 * max(others):.0f}% of the CPUs while "
              "a configuration ran (column 'other load'); those timings are inflated. "
              "Re-run on a quiet machine, or with --wait-quiet.")


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="batch 16 only")
    p.add_argument("--batches", default="16,32", help="comma-separated batch sizes")
    p.add_argument("--orders", default="first,second", help="search-step orders to time")
    p.add_argument("--impls", default=",".join(IMPLS), help="implementations to time")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    p.add_argument("--rounds", type=int, default=1, metavar="N",
                   help="measure every configuration N times, in N passes over all of them, "
                        "and pool the timed runs (the machine's slow spells then fall on "
                        "both implementations alike)")
    p.add_argument("--json", type=Path, help="write all numbers to this JSON file")
    p.add_argument("--no-check", action="store_true", help="skip the float64 equivalence check")
    p.add_argument("--retry-busy", type=int, default=2, metavar="N",
                   help="measure a configuration again (up to N times) when other processes "
                        f"took more than {100 * BUSY:.0f}%% of the CPUs while it ran")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each configuration, wait up to this long for other processes "
                        "to leave the CPUs idle (for shared machines)")
    p.add_argument("--profile", action="store_true",
                   help="profile one first- and one second-order step of ours instead of timing")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args._child:
        spec = json.loads(args._child)
        print(json.dumps({"check": check_equivalence()} if spec.get("check")
                         else run_child(spec)))
        return 0
    batches = [16] if args.quick else [int(b) for b in args.batches.split(",") if b]
    orders = [o for o in args.orders.split(",") if o]
    impls = [i for i in args.impls.split(",") if i]
    for name, values, allowed in (("order", orders, ("first", "second")),
                                  ("impl", impls, IMPLS)):
        bad = [v for v in values if v not in allowed]
        if bad:
            print(f"unknown {name} {bad[0]!r}; choose from {', '.join(allowed)}", file=sys.stderr)
            return 2
    if args.profile:
        run_profile(batches[0], wait_quiet=args.wait_quiet)
        return 0
    measures = ["forward", "fwd+bwd", *(f"step-{o}" for o in orders)]
    out: dict[str, Any] = {
        "batches": batches, "impls": impls, "measures": measures, "repeats": args.repeats,
        "warmup": args.warmup, "rounds": args.rounds, "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "published": PUBLISHED,
        "results": []}
    print(f"DARTS search step: C={CHANNELS}, {LAYERS} cells, {NODES} nodes, {CLASSES} classes, "
          f"input {'×'.join(map(str, IMAGE))}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; batches {batches}; {args.repeats} repeats",
          flush=True)
    if not args.no_check:  # first, in a fresh process, so a broken build shows at once
        check = spawn(__file__, {"check": True})
        if "error" in check:
            out["check_error"] = check["error"]
        else:
            out["check"] = check["check"]
        verdict = ("FAILED" if "check_error" in out or out["check"]["failed"] else "passed")
        print(f"equivalence check (float64) {verdict}", file=sys.stderr, flush=True)
    configs = [(b, m, impl) for _ in range(args.rounds)
               for b in batches for m in measures for impl in impls]
    for k, (b, m, impl) in enumerate(configs, 1):
        spec = {"impl": impl, "batch": b, "measure": m, "repeats": args.repeats,
                "warmup": args.warmup}
        if args.wait_quiet > 0:
            wait_until_quiet(args.wait_quiet)
        r = spawn(__file__, spec)
        for _ in range(args.retry_busy):
            if r.get("other_cpu", 0.0) <= BUSY:
                break
            print(f"[{k}/{len(configs)}] {impl} batch {b} {m}: other processes took "
                  f"{100 * r['other_cpu']:.0f}% of the CPUs; measuring again", file=sys.stderr,
                  flush=True)
            if args.wait_quiet > 0:
                wait_until_quiet(args.wait_quiet)
            again = spawn(__file__, spec)
            if "error" not in again and again.get("other_cpu", 1.0) < r["other_cpu"]:
                r = again
        out["results"].append(r)
        status = (f"FAILED {r['error']}" if "error" in r else
                  f"median {r['median_s']:.3f} s, peak {r['peak_mb']:.0f} MB")
        print(f"[{k}/{len(configs)}] {impl} batch {b} {m}: {status}", file=sys.stderr,
              flush=True)
    out["results"] = pool_rounds(out["results"])
    out["flops_per_example"] = forward_flops_per_example()
    if args.wait_quiet > 0:
        wait_until_quiet(args.wait_quiet)
    out["matmul"] = matmul_gflops()
    out["loadavg_end"] = os.getloadavg()
    report(out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    failed = [r for r in out["results"] if "error" in r]
    check_failed = "check_error" in out or bool(out.get("check", {}).get("failed"))
    return 1 if failed or check_failed else 0


if __name__ == "__main__":
    sys.exit(main())
