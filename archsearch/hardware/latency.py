"""Measured latency of any `nn.Module`: warm-up, repeated timed runs, median and spread.

Latency is measured, not modelled: the model runs in eval mode under `torch.inference_mode`
on one input of `input_shape` (batch included) on `device`, first `warmup` times untimed
(allocator, oneDNN kernel selection, CUDA context), then `repeats` timed runs. On CUDA each
run is synchronised so the clock measures the kernels, not their launch. The median is the
figure to use; the interquartile range says how noisy the machine was.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from archsearch.errors import ConfigError


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per forward pass over `repeats` timed runs."""

    median_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    iqr_ms: float  # interquartile range: the spread of the middle half of the runs
    repeats: int

    def to_json(self) -> dict[str, float]:
        return {"median_ms": self.median_ms, "mean_ms": self.mean_ms, "min_ms": self.min_ms,
                "max_ms": self.max_ms, "iqr_ms": self.iqr_ms, "repeats": self.repeats}


def measure_latency(model: nn.Module, input_shape: Sequence[int],
                    device: str | torch.device = "cpu", *, warmup: int = 10,
                    repeats: int = 50) -> LatencyStats:
    """Time `model` on one input of `input_shape` (e.g. (1, 3, 32, 32)).

    Args:
        model: any module; it is moved to `device` and put in eval mode for the duration
            (its training flag is restored afterwards).
        input_shape: the full input shape, batch first.
        device: where to run ("cpu", "cuda:0", ...).
        warmup: untimed runs first.
        repeats: timed runs (at least 1).

    Raises:
        ConfigError: nonsensical counts or shape.
    """
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    if not input_shape or any(int(d) < 1 for d in input_shape):
        raise ConfigError(f"input shape must be positive sizes, got {tuple(input_shape)}")
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    x = torch.zeros(tuple(int(d) for d in input_shape), device=device)
    times_ms = []
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                _sync(device)
                start = time.perf_counter()
                model(x)
                _sync(device)
                if i >= warmup:
                    times_ms.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
    quartiles = statistics.quantiles(times_ms, n=4) if len(times_ms) > 1 else [times_ms[0]] * 3
    return LatencyStats(median_ms=statistics.median(times_ms),
                        mean_ms=statistics.fmean(times_ms), min_ms=min(times_ms),
                        max_ms=max(times_ms), iqr_ms=quartiles[2] - quartiles[0],
                        repeats=repeats)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
