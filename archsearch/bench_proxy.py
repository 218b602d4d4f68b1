"""Zero-cost proxies on NAS-Bench-201: how well a proxy ranks the cells, and evolution
warm-started from it.

The proxy is NASWOT (Mellor et al., "Neural Architecture Search without Training", ICML
2021, arXiv:2006.04647): a score of an untrained network computed from one mini-batch. Its
quality as a ranking is the Spearman rank correlation with the trained accuracy over the
benchmark (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021,
arXiv:2101.08134, Table 1). The same paper's "warmup" uses the proxy to choose the initial
population of aging evolution: `ProxyEvolution` ranks a large random sample of cells by the
proxy — free, no training, so no queries — and starts from the best of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from archsearch.errors import ConfigError
from archsearch.space import Arch, SearchSpace
from archsearch.strategies.evolution import RegularizedEvolution

PROXY_COLUMN = "proxy_naswot"


def proxy_correlation(table: Any, dataset: str = "cifar10", *, fidelity: int = 200,
                      proxy: str = PROXY_COLUMN) -> dict[str, Any]:
    """Spearman's ρ between a proxy column and the validation and test accuracy of every
    cell of `table` with a finite proxy score.

    Returns:
        {"proxy", "dataset", "fidelity", "cells", "scored" (finite proxy),
        "excluded" (NaN proxy: NASWOT is undefined on cells with no input-to-output path),
        "spearman_val", "spearman_test"}. Where the table's `val_acc` is the test accuracy
        (CIFAR-100 / ImageNet16 at 200 epochs) the two coincide.
    """
    score = table.values(proxy)
    if np.all(np.isnan(score)):
        raise ConfigError(f"the table has no {proxy!r} scores")
    keep = ~np.isnan(score)
    out: dict[str, Any] = {"proxy": proxy, "dataset": dataset, "fidelity": fidelity,
                           "cells": int(score.size), "scored": int(keep.sum()),
                           "excluded": int((~keep).sum())}
    for metric in ("val_acc", "test_acc"):
        accuracy = table.values(metric, dataset=dataset, fidelity=fidelity)
        both = keep & ~np.isnan(accuracy)
        rho = spearmanr(score[both], accuracy[both]).statistic if both.sum() > 2 else math.nan
        out[f"spearman_{metric.removesuffix('_acc')}"] = (None if math.isnan(rho)
                                                          else float(rho))
    return out


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


class ProxyEvolution(RegularizedEvolution):
    """Regularized evolution whose initial population is the best of `proxy_sample` random
    cells by a zero-cost proxy, instead of `population` random cells.

    Args:
        space: the search space.
        seed: seeds the sample and the evolution.
        proxy: arch -> score (higher is better; NaN ranks last). Evaluating it is free.
        proxy_sample: random cells ranked by the proxy (distinct functions when the space
            has `canonical`).
        population, sample_size, crossover_prob: as in `RegularizedEvolution`.
    """

    def __init__(self, space: SearchSpace, *, seed: int | None = None,
                 proxy: Callable[[Arch], float] | None = None, proxy_sample: int = 1000,
                 population: int = 20, sample_size: int = 5,
                 crossover_prob: float = 0.25) -> None:
        super().__init__(space, seed=seed, population=population, sample_size=sample_size,
                         crossover_prob=crossover_prob)
        if proxy is None:
            raise ConfigError("proxy-evolution needs a proxy (arch -> score)")
        if isinstance(proxy_sample, bool) or not isinstance(proxy_sample, int) \
                or proxy_sample < population:
            raise ConfigError(f"proxy_sample must be an integer >= population ({population}), "
                              f"got {proxy_sample!r}")
        self.proxy = proxy
        self.proxy_sample = proxy_sample
        self._warm: list[Arch] | None = None  # drawn at the first ask (it uses the rng)
        self._warm_next = 0

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, proxy_sample={self.proxy_sample}"

    def ask(self) -> Arch:
        if self._warm is None:
            self._warm = self._rank_sample()
        if self._warm_next < len(self._warm) and len(self._members) < self.population:
            self._warm_next += 1
            return self._warm[self._warm_next - 1]
        return super().ask()

    def _rank_sample(self) -> list[Arch]:
        key = getattr(self.space, "canonical", Arch.fingerprint)
        sample: dict[str, Arch] = {}
        for _ in range(self.proxy_sample * 10):  # a small space may have fewer functions
            if len(sample) >= self.proxy_sample:
                break
            arch = self.space.sample(self.rng)
            sample.setdefault(key(arch), arch)
        scored = [(float(self.proxy(arch)), arch) for arch in sample.values()]
        # Best first, NaN last; the stable sort keeps the draw order among ties.
        scored.sort(key=lambda pair: -pair[0] if not math.isnan(pair[0]) else math.inf)
        return [arch for _, arch in scored[:self.population]]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["warm"] = None if self._warm is None else [dict(a) for a in self._warm]
        state["warm_next"] = self._warm_next
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        warm = state["warm"]
        self._warm = None if warm is None else [self.space.arch(c) for c in warm]
        self._warm_next = int(state["warm_next"])


def create_proxy_evolution(space: Any, table: Any, *, seed: int,
                           args: Mapping[str, Any]) -> ProxyEvolution:
    """`ProxyEvolution` scoring cells by the table's NASWOT column (settings `args`)."""
    known = ("proxy_sample", "population", "sample_size", "crossover_prob")
    for key in args:
        if key not in known:
            raise ConfigError(f"--strategy-arg proxy-evolution.{key}: no such option "
                              f"(options: {', '.join(known)})")

    def naswot(arch: Arch) -> float:
        return _number(table.query(space.to_string(arch))[PROXY_COLUMN])

    return ProxyEvolution(space, seed=seed, proxy=naswot, **args)
