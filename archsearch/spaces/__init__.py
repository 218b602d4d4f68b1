"""Concrete search spaces, registered by name (the CLI's `--space`)."""

from __future__ import annotations

from archsearch.registry import Registry
from archsearch.spaces.darts import NAMED_CELLS, DartsCellSpace, Genotype

# name -> factory(**kwargs) -> SearchSpace; the factory's keyword defaults are the
# space's default settings (shown by `archsearch list spaces`).
SPACES: Registry = Registry("space")
SPACES.add("darts", DartsCellSpace)

__all__ = ["NAMED_CELLS", "SPACES", "DartsCellSpace", "Genotype"]
