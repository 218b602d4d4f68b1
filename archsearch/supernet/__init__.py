"""The differentiable relaxation: mixed ops, the DARTS supernet and architecture gradients."""

from __future__ import annotations

from archsearch.supernet._bilevel import HVPS, ORDERS, BilevelOptimizer
from archsearch.supernet._hypergrad import (
    HYPERGRADS,
    VirtualStep,
    exact,
    finite_difference,
    first_order,
)
from archsearch.supernet._mixed import MixedEdge, SearchCell
from archsearch.supernet.darts import DartsSupernet

__all__ = [
    "HVPS",
    "ORDERS",
    "BilevelOptimizer",
    "HYPERGRADS",
    "DartsSupernet",
    "MixedEdge",
    "SearchCell",
    "VirtualStep",
    "exact",
    "finite_difference",
    "first_order",
]
