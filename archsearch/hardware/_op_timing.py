"""Timing the entries of a latency table: units in network order, container glue with stubs.

A *timer* is any callable `timer(calls, labels) -> [ms, ...]`: it runs the zero-argument
`calls` in order, round after round, and returns each call's latency in milliseconds;
`labels` say what is timed ("unit …", "glue …", "stub", "sequential …", "network"). Tests
inject a fake one; `RoundTimer` is the real one.

Units are timed *in the order their network runs them*, one round per forward pass, not
each in a tight loop of its own: a tight loop keeps the instruction cache and branch
predictors trained on one op, which on a CPU makes small ops look 20-50 % faster than they
run inside a network (PyTorch's per-op dispatch is much of their time).

Glue (see `_trace.py`): the container runs with each of its direct units and sub-containers
replaced by a replay stub that returns that child's recorded output; its time minus the
calls' stub cost (measured: one module call whose forward is a replay stub) is the glue.
The container's own call overhead stays in: end to end, every container is called once.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from archsearch.errors import ConfigError
from archsearch.hardware._trace import Call

Timer = Callable[[Sequence[Callable[[], Any]], Sequence[str]], list[float]]

# nn.Sequential glue is fitted as a + b·n from containers of these many stubs.
SEQUENTIAL_SIZES = (1, 16)
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter,
                                           "cpu": time.thread_time}


class RoundTimer:
    """Trimmed-mean milliseconds of each call over `repeats` timed rounds after `warmup`.

    A *trimmed mean*, not a median: a network's latency is the sum of its ops', and means
    add up while medians do not. On a busy machine every op is now and then slowed down
    (preempted, its caches flushed by another process); the median of each op drops those
    events, but a forward pass of many ops almost always contains some, so the sum of
    per-op medians under-states the median forward pass there. Dropping the `trim` share
    of the fastest and slowest samples keeps the mean safe from rare huge outliers.

    Args:
        warmup: untimed rounds first (allocator, oneDNN primitive creation).
        repeats: timed rounds.
        device: CUDA devices are synchronised around each call.
        clock: "wall" (elapsed time: latency as a user sees it) or "cpu" (CPU time of the
            calling thread: what the work costs when other processes preempt it; only
            meaningful with one torch thread on the CPU).
        trim: share of samples dropped at each end (0.5 gives the median).
    """

    def __init__(self, *, warmup: int = 3, repeats: int = 20,
                 device: str | torch.device = "cpu", clock: str = "wall",
                 trim: float = 0.1) -> None:
        if clock not in CLOCKS:
            raise ConfigError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
        if warmup < 0 or repeats < 1 or not 0 <= trim <= 0.5:
            raise ConfigError(f"need warmup >= 0, repeats >= 1 and 0 <= trim <= 0.5, got "
                              f"{warmup}, {repeats}, {trim}")
        self.warmup, self.repeats, self.clock, self.trim = warmup, repeats, clock, trim
        self.device = torch.device(device)

    def __call__(self, calls: Sequence[Callable[[], Any]], labels: Sequence[str]) -> list[float]:
        sync = self.device.type == "cuda"
        now = CLOCKS[self.clock]
        for _ in range(self.warmup):
            for fn in calls:
                fn()
        samples: list[list[float]] = [[] for _ in calls]
        for _ in range(self.repeats):
            for fn, times_ms in zip(calls, samples, strict=True):
                if sync:
                    torch.cuda.synchronize(self.device)
                start = now()
                fn()
                if sync:
                    torch.cuda.synchronize(self.device)
                times_ms.append((now() - start) * 1e3)
        return [trimmed_mean(times_ms, self.trim) for times_ms in samples]

    def __repr__(self) -> str:
        return (f"RoundTimer(warmup={self.warmup}, repeats={self.repeats}, "
                f"clock={self.clock!r}, trim={self.trim})")


def trimmed_mean(values: Sequence[float], trim: float) -> float:
    """Mean of `values` without the `trim` share at each end (the median at 0.5)."""
    if trim >= 0.5:
        return statistics.median(values)
    ordered = sorted(values)
    k = int(trim * len(ordered))
    return statistics.fmean(ordered[k:len(ordered) - k])


def time_one(timer: Timer, fn: Callable[[], Any], label: str) -> float:
    return timer([fn], [label])[0]


class _Replay:
    """A stand-in `forward` that returns recorded outputs in turn (ignores its inputs)."""

    def __init__(self, outputs: list[Any]) -> None:
        self.outputs, self.index = outputs, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.outputs[self.index % len(self.outputs)]
        self.index += 1
        return out


def time_units(calls: Sequence[Call], timer: Timer) -> list[float]:
    """Latency of each unit, run in the given (network) order on copies of its inputs."""
    fns = [functools.partial(call.module, *call.args, **call.kwargs) for call in calls]
    return timer(fns, [f"unit {call.label}" for call in calls])


def stub_ms(timer: Timer, device: torch.device) -> float:
    """The cost of calling a module whose forward is a replay stub."""
    stub = _stubbed_module(torch.zeros(1, device=device))
    x = torch.zeros(1, device=device)
    return time_one(timer, lambda: stub(x), "stub")


def _stubbed_module(output: Any) -> nn.Module:
    m = nn.Identity()
    m.forward = _Replay([output])  # type: ignore[method-assign]
    return m


def time_glue(call: Call, timer: Timer, stub_cost_ms: float) -> float:
    """A container's own latency: itself with every child replaced by a replay stub."""
    outputs: dict[int, tuple[nn.Module, list[Any]]] = {}
    for child in call.children:
        outputs.setdefault(id(child.module), (child.module, []))[1].append(child.output)
    saved = {}
    try:
        for key, (module, outs) in outputs.items():
            saved[key] = module.__dict__.get("forward")
            module.forward = _Replay(outs)  # type: ignore[method-assign]
        module, args, kwargs = call.module, call.args, call.kwargs
        total = time_one(timer, lambda: module(*args, **kwargs), f"glue {call.label}")
    finally:
        for key, (module, _) in outputs.items():
            if saved.get(key) is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = saved[key]  # type: ignore[method-assign]
    return max(0.0, total - len(call.children) * stub_cost_ms)


def time_sequential(timer: Timer, stub_cost_ms: float,
                    device: torch.device) -> tuple[float, float]:
    """(a, b) of nn.Sequential's glue a + b·n for a loop over n children."""
    x = torch.zeros(1, device=device)
    glue = []
    for n in SEQUENTIAL_SIZES:
        seq = nn.Sequential(*(_stubbed_module(x) for _ in range(n)))
        total = time_one(timer, lambda seq=seq: seq(x), f"sequential of {n} stubs")
        glue.append(total - n * stub_cost_ms)
    (n0, n1), (g0, g1) = SEQUENTIAL_SIZES, glue
    per_call = max(0.0, (g1 - g0) / (n1 - n0))
    return max(0.0, g0 - per_call * n0), per_call
