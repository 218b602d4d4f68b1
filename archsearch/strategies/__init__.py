"""Search strategies. Each built-in registers itself under its file name."""

from __future__ import annotations

from archsearch.registry import Registry
from archsearch.strategies._base import OneShotStrategy, SampleStrategy
from archsearch.strategies.darts import DARTS, DartsResult

STRATEGIES: Registry[type] = Registry("strategy")
STRATEGIES.add("darts", DARTS)

__all__ = ["DARTS", "STRATEGIES", "DartsResult", "OneShotStrategy", "SampleStrategy"]
