"""Concrete search spaces."""

from __future__ import annotations

from archsearch.spaces.darts import NAMED_CELLS, DartsCellSpace, Genotype

__all__ = ["NAMED_CELLS", "DartsCellSpace", "Genotype"]
