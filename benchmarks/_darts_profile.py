"""Where the time of a DARTS step of ours goes: the passes a step is made of, and
`torch.profiler` tables (`darts_step.py --profile`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from _darts_setup import (
    IMPLS,
    build,
)
from _measure import (
    saved_mb,
    wait_until_quiet,
)

from archsearch.supernet import first_order

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

