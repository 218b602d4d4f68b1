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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _measure import (  # noqa: E402
    peak_rss_mb,
    rss_mb,
    saved_mb,
    spawn,
    wait_until_quiet,
)
from _reference_darts import ReferenceArchitect, ReferenceNetwork  # noqa: E402

from archsearch.hardware import count_macs  # noqa: E402
from archsearch.spaces.darts import DartsCellSpace  # noqa: E402
from archsearch.strategies.darts import DARTS  # noqa: E402
from archsearch.supernet import DartsSupernet, finite_difference, first_order  # noqa: E402
from archsearch.supernet.cost import op_macs_table  # noqa: E402

IMPLS = ("ours", "reference")
MEASURES = ("forward", "fwd+bwd", "step-first", "step-second")
CHANNELS, LAYERS, NODES, CLASSES, IMAGE = 16, 8, 4, 10, (3, 32, 32)
EXPECTED_WEIGHTS = 1_930_618

# Reported in the issue: the reference implementation on 2 cores of this machine.
PUBLISHED = {
    "text": ("reference implementation on 2 cores of this machine: batch 16: forward 1.1 s, "
             "fwd+bwd 3.0 s, first-order step 6.1 s, second-order step 15 s, peak 2.3–3.6 GB; "
             "batch 32: fwd+bwd 5.3 s, first order 11 s, 5.0 GB"),
    "seconds": {16: {"forward": 1.1, "fwd+bwd": 3.0, "step-first": 6.1, "step-second": 15.0},
                32: {"fwd+bwd": 5.3, "step-first": 11.0}},
    "peak_mb": {16: (2300.0, 3600.0), 32: (5000.0, 5000.0)},
}
SPEEDUP_TARGET, MEMORY_TARGET = 3.0, 0.5
BUSY = 0.1  # share of the CPUs taken by other processes above which a timing is suspect
CHECK_RTOL = 1e-8  # float64: both sides compute the same formulas; only rounding may differ
CHECK_KEYS = ("logits", "alpha_grad_first", "alpha_grad_second", "step_loss",
              "weights_after_step", "alpha_after_step")

Batch = tuple[Tensor, Tensor]


# --------------------------------------------------------------------------------------------
# Building one configuration
# --------------------------------------------------------------------------------------------

@dataclass
class Bench:
    """A model with its data and the callables that are timed."""

    model: nn.Module
    train: Batch
    val: Batch
    forward: Callable[[], Any]
    fwd_bwd: Callable[[], Any]
    step: Callable[[], Any]
    optimizer: Any  # ours: BilevelOptimizer; reference: ReferenceArchitect


def _strategy(order: str) -> DARTS:
    return DARTS(DartsCellSpace(nodes=NODES), order=order, hvp="finite-difference",
                 channels=CHANNELS, layers=LAYERS, seed=0)


def _batches(batch: int, dtype: torch.dtype, size: int, seed: int = 1) -> tuple[Batch, Batch]:
    gen = torch.Generator().manual_seed(seed)

    def one() -> Batch:
        return (torch.randn(batch, IMAGE[0], size, size, generator=gen, dtype=dtype),
                torch.randint(0, CLASSES, (batch,), generator=gen))

    return one(), one()


def build(impl: str, batch: int, order: str = "first", dtype: torch.dtype = torch.float32,
          size: int = IMAGE[-1]) -> Bench:
    """Model, data and timed callables of one implementation; `order` picks the step."""
    strategy = _strategy(order)
    train, val = _batches(batch, dtype, size)
    step: Callable[[], Any]
    if impl == "ours":
        net = strategy.build_supernet(num_classes=CLASSES, in_channels=IMAGE[0]).to(dtype)
        # Exactly what `DARTS.search` steps with (SGD + Adam + grad clip, order, HVP).
        strategy._cost_tables = op_macs_table(net, size)
        optimizer: Any = strategy._bilevel(net, {})

        def step() -> Any:
            return optimizer.step(train, val)

        arch: list[Tensor] = list(net.arch_parameters())
    elif impl == "reference":
        torch.manual_seed(strategy.seed)
        net = ReferenceNetwork(CHANNELS, CLASSES, LAYERS, NODES).to(dtype)
        net.set_alphas(*(a.to(dtype) for a in net.arch_parameters()))
        optimizer = ReferenceArchitect(
            net, lr=strategy.lr, momentum=strategy.momentum, weight_decay=strategy.weight_decay,
            arch_lr=strategy.arch_lr, arch_betas=strategy.arch_betas,
            arch_weight_decay=strategy.arch_weight_decay, grad_clip=strategy.grad_clip)

        def step() -> Any:
            return optimizer.step(train, val, order)

        arch = net.arch_parameters()
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    net.train()

    def forward() -> Tensor:
        return F.cross_entropy(net(train[0]), train[1])

    def fwd_bwd() -> None:
        for p in [*net.parameters(), *arch]:
            p.grad = None
        forward().backward()

    return Bench(net, train, val, forward, fwd_bwd, step, optimizer)


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
# Equivalence in float64
# --------------------------------------------------------------------------------------------

def _max_abs(a: list[Tensor] | Tensor, b: list[Tensor] | Tensor) -> tuple[float, float]:
    """(max |a − b|, that divided by max |b|) over all tensors."""
    a = a if isinstance(a, list) else [a]
    b = b if isinstance(b, list) else [b]
    diff = max(float((x - y).detach().abs().max()) for x, y in zip(a, b, strict=True))
    scale = max(float(y.detach().abs().max()) for y in b)
    return diff, diff / scale if scale else diff


def check_equivalence(batch: int = 4, size: int = 16) -> dict[str, Any]:
    """Same weights and α in both implementations; compare logits and α-gradients in float64.

    The images are `size`×`size` (16 by default): float64 convolutions run on PyTorch's slow
    reference kernels, and the semantics checked do not depend on the resolution (the
    network is fully convolutional; 16 → 8 → 4 keeps every stride-2 input even, as 32 does).

    Parameters map 1:1 in module order: both stack stem, cells (preprocess0, preprocess1,
    then the edges in α-row order, each edge's parametric ops in op order) and classifier.
    The reference's extra modules (pooling BNs per edge, zero, identity) have no parameters,
    and ours keeps only the parametric ops per edge, so the two weight lists align; every
    pair's shape is verified before copying.
    """
    dtype = torch.float64
    ours = build("ours", batch, "second", dtype, size)
    ref = build("reference", batch, "second", dtype, size)
    net: DartsSupernet = ours.model  # type: ignore[assignment]
    rnet: ReferenceNetwork = ref.model  # type: ignore[assignment]
    ours_w, ref_w = net.weight_parameters(), list(rnet.parameters())
    if len(ours_w) != len(ref_w):
        raise AssertionError(f"{len(ours_w)} weight tensors in ours, {len(ref_w)} in reference")
    for (name, p), q in zip(((n, p) for n, p in net.named_parameters()
                             if n not in net.arch_parameter_names()), ref_w, strict=True):
        if p.shape != q.shape:
            raise AssertionError(f"shape mismatch at {name}: {tuple(p.shape)} vs {tuple(q.shape)}")
    n_ours, n_ref = sum(p.numel() for p in ours_w), sum(p.numel() for p in ref_w)
    if not n_ours == n_ref == EXPECTED_WEIGHTS:
        raise AssertionError(f"weights: ours {n_ours}, reference {n_ref}, "
                             f"expected {EXPECTED_WEIGHTS}")
    with torch.no_grad():
        for p, q in zip(ours_w, ref_w, strict=True):
            p.copy_(q)
        for a, b in zip(net.arch_parameters(), rnet.arch_parameters(), strict=True):
            a.copy_(b)
    train, val = ours.train, ours.val
    ref_arch: ReferenceArchitect = ref.optimizer
    ours_bilevel = ours.optimizer

    results: dict[str, Any] = {"batch": batch, "size": size, "dtype": "float64",
                               "weights": n_ours,
                               "weight_tensors": len(ours_w)}
    with torch.no_grad():
        results["logits"] = _max_abs(net(train[0]), rnet(train[0]))

    names = net.arch_parameter_names()

    def loss(model: nn.Module, b: Batch) -> Tensor:
        return F.cross_entropy(model(b[0]), b[1])

    g_ours = first_order(net, names, loss, loss, train, val, ours_bilevel.virtual_step())
    g_ref = ref_arch.first_order_grads(val)
    results["alpha_grad_first"] = _max_abs([g_ours[n] for n in names], g_ref)

    # Non-zero momentum buffers, identical in both, so the virtual step uses all its terms.
    gen = torch.Generator().manual_seed(2)
    for p, q in zip(ours_w, ref_w, strict=True):
        buf = 0.01 * torch.randn(p.shape, generator=gen, dtype=dtype)
        ours_bilevel.weight_optimizer.state[p]["momentum_buffer"] = buf.clone()
        ref_arch.network_optimizer.state[q]["momentum_buffer"] = buf.clone()
    g_ours = finite_difference(net, names, loss, loss, train, val, ours_bilevel.virtual_step())
    rnet.zero_grad(set_to_none=True)
    g_ref = ref_arch.second_order_grads(train, val)
    results["alpha_grad_second"] = _max_abs([g_ours[n] for n in names], g_ref)

    # One whole second-order search step of each: the weights and α afterwards.
    loss_ours = ours_bilevel.step(train, val)
    loss_ref = ref_arch.step(train, val, "second")
    results["step_loss"] = _max_abs(loss_ours, loss_ref)
    results["weights_after_step"] = _max_abs(ours_w, ref_w)
    results["alpha_after_step"] = _max_abs(net.arch_parameters(), rnet.arch_parameters())
    # NaN compares False, so a NaN difference counts as a failure too.
    results["failed"] = [k for k in CHECK_KEYS if not results[k][1] <= CHECK_RTOL]
    return results


# --------------------------------------------------------------------------------------------
# FLOPs and the matmul yardstick
# --------------------------------------------------------------------------------------------

def forward_flops_per_example() -> dict[str, int]:
    """2 × conv+linear MACs of one forward pass for one example, for both implementations."""
    torch.manual_seed(0)
    ours = DartsSupernet(DartsCellSpace(nodes=NODES), channels=CHANNELS, layers=LAYERS,
                         num_classes=CLASSES)
    ref = ReferenceNetwork(CHANNELS, CLASSES, LAYERS, NODES)
    return {"ours": 2 * count_macs(ours, IMAGE), "reference": 2 * count_macs(ref, IMAGE)}


def matmul_gflops(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    t = statistics.median(times)
    return {"n": n, "seconds": t, "gflops": 2 * n ** 3 / t / 1e9}


# --------------------------------------------------------------------------------------------
# Profiling ours
# --------------------------------------------------------------------------------------------

def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def phase_breakdown(batch: int, repeats: int = 3) -> list[tuple[str, float]]:
    """Median seconds of the passes a search step of ours is made of."""
    from archsearch.supernet._hypergrad import _virtual_weights, loss_at, split_parameters

    bench = build("ours", batch, "second")
    net, bilevel, train, val = bench.model, bench.optimizer, bench.train, bench.val
    loss_fn, names = bilevel.train_loss, bilevel.arch_names
    bilevel.step(train, val)  # creates the momentum buffers the virtual step reads
    weights, arch = split_parameters(net, names)
    step = bilevel.virtual_step()

    def val_pass() -> Any:
        virtual = {n: w.detach().requires_grad_() for n, w in weights.items()}
        loss = loss_at(net, loss_fn, val, virtual)
        return torch.autograd.grad(loss, [*arch.values(), *virtual.values()])

    phases: list[tuple[str, Callable[[], Any]]] = [
        ("forward, autograd recording", lambda: loss_fn(net, train)),
        ("forward + backward, all gradients", bench.fwd_bwd),
        ("α-only pass: fwd + bwd for α only (first order; each HVP side)",
         lambda: first_order(net, names, loss_fn, loss_fn, train, val, step)),
        ("virtual step w': fwd + bwd for w + update",
         lambda: _virtual_weights(net, weights, loss_fn, train, step, create_graph=False,
                                  average=None)),
        ("validation pass at w': fwd + bwd for α and w'", val_pass),
        ("weight step: fwd + bwd for w + clip + SGD", lambda: bilevel.weight_step(train)),
        ("whole second-order step", lambda: bilevel.step(train, val)),
    ]
    return [(name, _median_time(fn, repeats)) for name, fn in phases]


def _op_kind(event: Any) -> str | None:
    """'conv fwd depthwise 5×5 @32²'-style label of a conv/BN event (needs record_shapes)."""
    shapes = event.input_shapes
    if event.name in ("aten::mkldnn_convolution", "aten::convolution_backward"):
        x, w = (shapes[0], shapes[1]) if event.name == "aten::mkldnn_convolution" \
            else (shapes[1], shapes[2])
        if len(w) != 4 or len(x) != 4:
            return None
        if w[1] == 1 and w[0] > 1:
            kind = f"depthwise {w[2]}×{w[3]}"
        elif w[2] == w[3] == 1:
            kind = "1×1"
        else:
            kind = f"dense {w[2]}×{w[3]}"
        phase = "fwd" if event.name == "aten::mkldnn_convolution" else "bwd"
        return f"conv {phase} {kind} @{x[2]}²"
    if event.name in ("aten::native_batch_norm", "aten::native_batch_norm_backward"):
        x = shapes[0] if event.name == "aten::native_batch_norm" else shapes[1]
        phase = "fwd" if event.name == "aten::native_batch_norm" else "bwd"
        return f"batch norm {phase} @{x[2]}²" if len(x) == 4 else None
    return None


def print_by_kind(prof: Any, rows: int = 20) -> None:
    """Self CPU time of convolutions and BNs grouped by kind and resolution."""
    totals: dict[str, list[float]] = {}
    everything = 0.0
    for event in prof.events():
        everything += event.self_cpu_time_total
        kind = _op_kind(event)
        if kind is not None:
            entry = totals.setdefault(kind, [0.0, 0])
            entry[0] += event.self_cpu_time_total
            entry[1] += 1
    print(f"{'self CPU ms':>12} {'share':>6} {'calls':>6}  kind")
    for kind, (us, calls) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:rows]:
        print(f"{us / 1e3:>12.1f} {100 * us / everything:>5.1f}% {calls:>6}  {kind}")
    groups = {"depthwise conv": 0.0, "1×1 conv": 0.0, "batch norm": 0.0}
    for kind, (us, _) in totals.items():
        for name in groups:
            if name.split()[0] in kind:
                groups[name] += us
    print("total: " + ", ".join(f"{name} {100 * us / everything:.0f}%"
                                for name, us in groups.items()) + " of all self CPU time")


def run_profile(batch: int, rows: int = 25, wait_quiet: float = 0.0) -> None:
    from torch.profiler import ProfilerActivity, profile, record_function

    for impl in IMPLS:
        bench = build(impl, batch)
        print(f"{impl}: tensors saved for backward by one forward pass (batch {batch}): "
              f"{saved_mb(bench.forward):.0f} MB")
    if wait_quiet > 0:
        wait_until_quiet(wait_quiet)
    print(f"\n=== ours, batch {batch}: the passes of a search step (median of 3) ===")
    for name, seconds in phase_breakdown(batch):
        print(f"{seconds:8.3f} s  {name}")
    for order in ("first", "second"):
        bench = build("ours", batch, order)
        bilevel = bench.optimizer
        bilevel.step(bench.train, bench.val)  # warm-up
        if wait_quiet > 0:
            wait_until_quiet(wait_quiet)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            with record_function(f"arch_step[{order}]"):
                bilevel.arch_step(bench.train, bench.val)
            with record_function("weight_step"):
                bilevel.weight_step(bench.train)
        print(f"\n=== ours, {order}-order step, batch {batch}: top ops by self CPU time ===")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
        print(f"=== ours, {order}-order step, batch {batch}: convolutions and BNs by kind ===")
        print_by_kind(prof)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            bilevel.step(bench.train, bench.val)
        print(f"=== ours, {order}-order step, batch {batch}: top ops by allocated memory ===")
        print(prof.key_averages().table(sort_by="self_cpu_memory_usage", row_limit=12))


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
