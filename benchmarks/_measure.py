"""What the memory/time benchmarks share: process memory (RSS), what autograd saves, the
machine's CPU load, and running one configuration in a fresh interpreter.

Each configuration runs in its own process so that its peak resident set size is its own:
the script is started again with `--_child '<json spec>'` and prints its JSON result as the
last line of stdout.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def rss_mb() -> float:
    """Current resident set size of this process in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def saved_mb(forward: Callable[[], Any]) -> float:
    """MB of the distinct storages autograd saves for backward in one call of `forward`."""
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    del out
    return sum(storages.values()) / 2 ** 20


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = sum(fields) / ticks
    return total - (fields[3] + fields[4]) / ticks, total  # idle and iowait are not busy


def busy_fraction(seconds: float = 2.0) -> float | None:
    """Fraction of all CPUs busy over the next `seconds` (this process is idle meanwhile)."""
    before = cpu_times()
    time.sleep(seconds)
    after = cpu_times()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def wait_until_quiet(max_wait: float, threshold: float = 0.15) -> float | None:
    """Wait (up to `max_wait` s) until other processes use < `threshold` of the CPUs."""
    deadline = time.monotonic() + max_wait
    busy = busy_fraction()
    while busy is not None and busy >= threshold and time.monotonic() < deadline:
        time.sleep(10)
        busy = busy_fraction()
    return busy


def spawn(script: str | Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration of `script` in a fresh interpreter (`--_child SPEC`); its last
    stdout line is the JSON result.

    Also records `other_cpu`: the CPU time other processes took while it ran, as a fraction
    of all CPUs (0 on a quiet machine; 0.5 on 2 CPUs means a whole core was taken away).
    """
    cmd = [sys.executable, str(Path(script).resolve()), "--_child", json.dumps(spec)]
    before, mine_before = cpu_times(), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    after, mine_after = cpu_times(), resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return {**spec, "error": f"exit {proc.returncode}: {tail}"}
    result = json.loads(lines[-1])
    if before is not None and after is not None:
        mine = (mine_after.ru_utime + mine_after.ru_stime
                - mine_before.ru_utime - mine_before.ru_stime)
        others = (after[0] - before[0]) - mine
        result["other_cpu"] = max(0.0, others / max(after[1] - before[1], wall))
    return result


def median_us(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> float:
    """Median microseconds of `repeats` calls of `fn`, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e6


def kernel_bench_args(description: str, repeats: int, unit: str = "µs") -> Any:
    """The options of the native-kernel benchmarks (`--batch`, `--repeats`), parsed, after
    printing the report's header line; None (after saying why) when the native kernels are
    not built."""
    import argparse

    from archsearch.ops import native

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=repeats)
    args = parser.parse_args()
    if not native.available():
        print("the native kernels are not built (no C compiler with OpenMP at install time)")
        return None
    print(f"batch {args.batch}, {torch.get_num_threads()} threads; {unit} per call (median), "
          "PyTorch / native = speed-up")
    return args



def without_native(applies: str, fn: Callable[[], Any]) -> Any:
    """`fn()` with `archsearch.ops.native.<applies>` (`batch_norm_applies`, `pool_applies`,
    ...) answering False: what PyTorch's route gives where that kernel is not built."""
    from archsearch.ops import native

    saved = getattr(native, applies)
    setattr(native, applies, lambda *args, **kwargs: False)
    try:
        return fn()
    finally:
        setattr(native, applies, saved)
