"""Peak memory and time of a ProxylessNAS search step, against DARTS and one discrete network.

Run from the repository root:

    python benchmarks/proxyless_memory.py [--quick]

    --quick              batch 16 only
    --batches 16,32      batch sizes
    --impls LIST         which of: discrete, proxyless-weight, proxyless-arch, proxyless,
                         darts-first (default: all)
    --repeats 3          timed repeats per configuration (median reported), after 1 warm-up
    --threads 1          torch threads in each measuring process
    --json PATH          also write every number as JSON

The setting is the DARTS CIFAR-10 search (C=16, 8 cells, 4 nodes, the DARTS op set,
10 classes, 3×32×32 inputs). ProxylessNAS (arXiv:1812.00332) claims its search needs about
the memory of training one discrete network, because only sampled paths are computed;
DARTS computes every op of every edge. Measured, per batch size:

* discrete: one SGD training step of the DARTS network of the published `darts_v2` cell
  (8 ops per cell, affine BN), the yardstick;
* proxyless-weight / proxyless-arch: ProxylessNAS's weight step (one sampled op per edge)
  and architecture step (two sampled ops per edge, gradient through the binary gates);
* proxyless: one whole search step (architecture step, then weight step), as `search` runs;
* darts-first: one first-order DARTS search step (α step, then w step) on the same space.

Each configuration runs in a fresh Python process: one warm-up, then `--repeats` timed runs.
Memory is (a) the process's peak resident set size (`ru_maxrss`) minus the RSS after model
and data were built ("act. peak MB"), and (b) the MB of distinct storages autograd saves in
the forward passes of one step (the largest pass; "saved MB"): (b) is exact and repeatable,
(a) includes allocator caching and oneDNN workspaces. ProxylessNAS samples new paths every
step, so its numbers vary a little from step to step (the peak is the max over the runs).
Timings are wall-clock and suffer from other processes on the machine: each row reports the
share of the CPUs other processes took while it ran ("other load"); compare ratios from one
run, not seconds across runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _measure import peak_rss_mb, rss_mb, saved_mb, spawn
from torch import Tensor

from archsearch.spaces.darts import DartsCellSpace
from archsearch.strategies.darts import DARTS
from archsearch.strategies.proxyless import ProxylessNAS
from archsearch.supernet import BilevelOptimizer
from archsearch.supernet.proxyless import default_cost_tables

IMPLS = ("discrete", "proxyless-weight", "proxyless-arch", "proxyless", "darts-first")
CHANNELS, LAYERS, NODES, CLASSES, IMAGE = 16, 8, 4, 10, (3, 32, 32)
Batch = tuple[Tensor, Tensor]


def _batches(batch: int, seed: int = 1) -> tuple[Batch, Batch]:
    gen = torch.Generator().manual_seed(seed)

    def one() -> Batch:
        return (torch.randn(batch, *IMAGE, generator=gen),
                torch.randint(0, CLASSES, (batch,), generator=gen))

    return one(), one()


def build(impl: str, batch: int) -> tuple[Callable[[], Any], list[Callable[[], Tensor]]]:
    """(one step, the forward passes that step makes) of one implementation."""
    space = DartsCellSpace(nodes=NODES)
    train, val = _batches(batch)
    if impl == "discrete":
        torch.manual_seed(0)
        net = space.build(space.named("darts_v2"), channels=CHANNELS, layers=LAYERS,
                          num_classes=CLASSES, in_channels=IMAGE[0]).train()
        opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)

        def forward() -> Tensor:
            return F.cross_entropy(net(train[0]), train[1])

        def train_step() -> None:
            opt.zero_grad(set_to_none=True)
            forward().backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()

        return train_step, [forward]
    if impl.startswith("proxyless"):
        return _proxyless(impl, space, train, val)
    if impl == "darts-first":
        return _darts(space, train, val)
    raise ValueError(f"unknown implementation {impl!r}")


def _proxyless(impl: str, space: DartsCellSpace, train: Batch,
               val: Batch) -> tuple[Callable[[], Any], list[Callable[[], Tensor]]]:
    strategy = ProxylessNAS(space, channels=CHANNELS, layers=LAYERS, seed=0)
    net = strategy.build_supernet(num_classes=CLASSES, in_channels=IMAGE[0]).train()
    # Exactly what `ProxylessNAS.search` steps with (SGD + Adam, seeded gates, MACs table).
    opt = strategy.build_optimizer(net, default_cost_tables(net, IMAGE[-1]))
    gen = torch.Generator().manual_seed(123)

    def weight_forward() -> Tensor:
        return F.cross_entropy(net(train[0], net.sample_paths(gen)), train[1])

    def arch_forward() -> Tensor:
        return F.cross_entropy(net(val[0], net.sample_pairs(gen)), val[1])

    steps: dict[str, tuple[Callable[[], Any], list[Callable[[], Tensor]]]] = {
        "proxyless-weight": (lambda: opt.weight_step(train), [weight_forward]),
        "proxyless-arch": (lambda: opt.arch_step(val), [arch_forward]),
        "proxyless": (lambda: (opt.arch_step(val), opt.weight_step(train)),
                      [arch_forward, weight_forward]),
    }
    return steps[impl]


def _darts(space: DartsCellSpace, train: Batch,
           val: Batch) -> tuple[Callable[[], Any], list[Callable[[], Tensor]]]:
    s = DARTS(space, order="first", channels=CHANNELS, layers=LAYERS, seed=0)
    net = s.build_supernet(num_classes=CLASSES, in_channels=IMAGE[0]).train()

    def loss(model: torch.nn.Module, b: Batch) -> Tensor:
        return F.cross_entropy(model(b[0]), b[1])

    # DARTS's optimiser settings (SGD + clip on w, Adam on α), first order.
    opt = BilevelOptimizer(
        net, net.arch_parameter_names(), train_loss=loss, val_loss=loss,
        weight_optimizer=torch.optim.SGD(net.weight_parameters(), lr=s.lr, momentum=s.momentum,
                                         weight_decay=s.weight_decay),
        arch_optimizer=torch.optim.Adam(net.arch_parameters(), lr=s.arch_lr,
                                        betas=s.arch_betas, weight_decay=s.arch_weight_decay),
        order="first", grad_clip=s.grad_clip)
    return (lambda: opt.step(train, val)), [lambda: loss(net, val), lambda: loss(net, train)]


# --------------------------------------------------------------------------------------------
# Child process: one configuration
# --------------------------------------------------------------------------------------------

def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(spec["threads"])
    step, forwards = build(spec["impl"], spec["batch"])
    gc.collect()
    base = rss_mb()
    step()  # warm-up
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = peak_rss_mb()
    saved = max(statistics.median(saved_mb(f) for _ in range(3)) for f in forwards)
    return {**spec, "times": times, "median_s": statistics.median(times), "base_rss_mb": base,
            "peak_mb": peak, "activation_peak_mb": peak - base, "saved_mb": saved}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def _ratios(r: dict[str, Any], base: dict[str, Any]) -> str:
    return (f"time {r['median_s'] / base['median_s']:5.2f}×  "
            f"act. peak {r['activation_peak_mb'] / base['activation_peak_mb']:5.2f}×  "
            f"saved {r['saved_mb'] / base['saved_mb']:5.2f}×")


def report(results: list[dict[str, Any]], batches: list[int]) -> None:
    print(f"\n{'batch':>5} {'impl':<17} {'s/step':>8} {'act. peak MB':>13} {'saved MB':>9} "
          f"{'peak MB':>8} {'other load':>10}")
    for r in results:
        if "error" in r:
            print(f"{r['batch']:>5} {r['impl']:<17} FAILED {r['error']}")
            continue
        print(f"{r['batch']:>5} {r['impl']:<17} {r['median_s']:>8.3f} "
              f"{r['activation_peak_mb']:>13.0f} {r['saved_mb']:>9.1f} {r['peak_mb']:>8.0f} "
              f"{100 * r.get('other_cpu', 0.0):>9.0f}%")
    print("\n== Ratios (per batch): against the discrete network's training step, and "
          "ProxylessNAS against DARTS first order ==")
    for b in batches:
        rows = {r["impl"]: r for r in results if r["batch"] == b and "error" not in r}
        base = rows.get("discrete")
        for impl, r in rows.items():
            if base is not None and impl != "discrete":
                print(f"batch {b:>3} {impl + ' / discrete':<30} {_ratios(r, base)}")
        if "proxyless" in rows and "darts-first" in rows:
            print(f"batch {b:>3} {'proxyless / darts-first':<30} "
                  f"{_ratios(rows['proxyless'], rows['darts-first'])}")
    others = [r.get("other_cpu", 0.0) for r in results]
    if others and max(others) > 0.1:
        print(f"\nwarning: other processes took up to {100 * max(others):.0f}% of the CPUs "
              "while a configuration ran; its seconds are inflated (memory is not affected).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="batch 16 only")
    p.add_argument("--batches", default="16,32", help="comma-separated batch sizes")
    p.add_argument("--impls", default=",".join(IMPLS), help="implementations to measure")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--json", type=Path, help="write all numbers to this JSON file")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        print(json.dumps(run_child(json.loads(args._child))))
        return 0
    batches = [16] if args.quick else [int(b) for b in args.batches.split(",") if b]
    impls = [i for i in args.impls.split(",") if i]
    bad = [i for i in impls if i not in IMPLS]
    if bad or args.repeats < 1:
        p.error(f"unknown implementation {bad[0]!r}" if bad else "--repeats must be ≥ 1")
    print(f"ProxylessNAS vs DARTS vs a discrete network: C={CHANNELS}, {LAYERS} cells, "
          f"{NODES} nodes, input {'×'.join(map(str, IMAGE))}; torch {torch.__version__}, "
          f"{args.threads} thread(s); {args.repeats} repeats", flush=True)
    results = []
    for b in batches:
        for impl in impls:
            r = spawn(__file__, {"impl": impl, "batch": b, "repeats": args.repeats,
                       "threads": args.threads})
            results.append(r)
            status = (f"FAILED {r['error']}" if "error" in r else
                      f"{r['median_s']:.3f} s, act. peak {r['activation_peak_mb']:.0f} MB")
            print(f"batch {b} {impl}: {status}", file=sys.stderr, flush=True)
    report(results, batches)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
