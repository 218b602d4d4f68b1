"""`ArchCost`: the hardware cost of an architecture, without training it.

A cost model in the design's sense: `Arch -> {"num_params": …, "macs": …, "latency_ms": …}`.
It builds the architecture's network with the space's builder (seeded; weights do not
matter for counts and hardly for latency) and counts or measures it. Multi-trial search
uses it to reject architectures that break a constraint before any training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from archsearch.hardware.counts import count_macs, num_params
from archsearch.hardware.latency import measure_latency
from archsearch.space import Arch, SearchSpace

COST_METRICS = ("num_params", "macs", "latency_ms")


class ArchCost:
    """Parameters, MACs and (optionally) measured latency of a space's architectures.

    Args:
        space: builds the network of an arch (`space.build(arch, **build_kwargs)`).
        input_shape: one input without the batch, e.g. (3, 32, 32).
        build_kwargs: passed to `space.build` (num_classes, in_channels, channels, ...).
        latency: also measure `latency_ms` (median of `repeats` runs at batch 1).
        device: where latency is measured.
    """

    def __init__(self, space: SearchSpace, input_shape: Sequence[int], *,
                 build_kwargs: Mapping[str, Any] | None = None, latency: bool = False,
                 device: str | torch.device = "cpu", warmup: int = 3,
                 repeats: int = 10) -> None:
        self.space = space
        self.input_shape = tuple(int(d) for d in input_shape)
        self.build_kwargs = dict(build_kwargs or {})
        self.latency = latency
        self.device = torch.device(device)
        self.warmup, self.repeats = warmup, repeats

    def metric_names(self) -> tuple[str, ...]:
        return COST_METRICS if self.latency else COST_METRICS[:2]

    def __call__(self, arch: Arch) -> dict[str, float]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = self.space.build(arch, **self.build_kwargs)
        costs: dict[str, float] = {
            "num_params": num_params(model, exclude_prefixes=("aux_head",)),
            "macs": count_macs(model, self.input_shape)}
        if self.latency:
            stats = measure_latency(model, (1, *self.input_shape), self.device,
                                    warmup=self.warmup, repeats=self.repeats)
            costs["latency_ms"] = stats.median_ms
        return costs
