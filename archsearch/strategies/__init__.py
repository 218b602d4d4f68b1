"""Search strategies. Each built-in registers itself under its file name."""

from __future__ import annotations

from archsearch.registry import Registry
from archsearch.strategies._base import OneShotStrategy, SampleStrategy
from archsearch.strategies.bo import BayesianOptimization
from archsearch.strategies.darts import DARTS, DartsResult
from archsearch.strategies.evolution import RegularizedEvolution
from archsearch.strategies.grid import GridSearch
from archsearch.strategies.nsga2 import NSGA2
from archsearch.strategies.proxyless import ProxylessNAS, ProxylessResult
from archsearch.strategies.random import RandomSearch
from archsearch.strategies.rl import ReinforceController

STRATEGIES: Registry[type] = Registry("strategy")
STRATEGIES.add("bo", BayesianOptimization)
STRATEGIES.add("darts", DARTS)
STRATEGIES.add("evolution", RegularizedEvolution)
STRATEGIES.add("grid", GridSearch)
STRATEGIES.add("nsga2", NSGA2)
STRATEGIES.add("random", RandomSearch)
STRATEGIES.add("rl", ReinforceController)

__all__ = [
    "DARTS",
    "STRATEGIES",
    "BayesianOptimization",
    "DartsResult",
    "GridSearch",
    "NSGA2",
    "OneShotStrategy",
    "ProxylessNAS",
    "ProxylessResult",
    "RandomSearch",
    "RegularizedEvolution",
    "ReinforceController",
    "SampleStrategy",
]
