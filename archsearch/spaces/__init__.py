"""Concrete search spaces, registered by name (the CLI's `--space`)."""

from __future__ import annotations

from archsearch.registry import Registry
from archsearch.spaces.chain import chain_space
from archsearch.spaces.compound import CompoundScalingSpace
from archsearch.spaces.darts import NAMED_CELLS, DartsCellSpace, Genotype
from archsearch.spaces.mobilenet import MobileNetSpace
from archsearch.spaces.nasbench201 import NasBench201Space
from archsearch.spaces.nasnet import NasnetCellSpace

# name -> factory(**kwargs) -> SearchSpace; the factory's keyword defaults are the
# space's default settings (shown by `archsearch list spaces`).
SPACES: Registry = Registry("space")
SPACES.add("darts", DartsCellSpace)
SPACES.add("nasnet", NasnetCellSpace)
SPACES.add("chain", chain_space)
SPACES.add("nb201", NasBench201Space)
SPACES.add("mobilenet", MobileNetSpace)
SPACES.add("compound", CompoundScalingSpace)

__all__ = [
    "NAMED_CELLS",
    "SPACES",
    "DartsCellSpace",
    "Genotype",
    "NasnetCellSpace",
    "chain_space",
]
