"""The search-space mechanism: dimensions, architectures, spaces and choosers.

Framework-light: nothing here imports torch; a builder's models are built by the builder.
"""

from __future__ import annotations

from archsearch.space._arch import ARCH_FORMAT, Arch, hash_dims
from archsearch.space._builder import BuilderSpace
from archsearch.space._chooser import Chooser, FixedChooser, RecordingChooser
from archsearch.space._dims import Categorical, Dimension, Float, Int, dimension_from_json
from archsearch.space._space import MAX_ENUMERATE, SearchSpace, SpaceExhausted

__all__ = [
    "ARCH_FORMAT",
    "MAX_ENUMERATE",
    "Arch",
    "BuilderSpace",
    "Categorical",
    "Chooser",
    "Dimension",
    "FixedChooser",
    "Float",
    "Int",
    "RecordingChooser",
    "SearchSpace",
    "SpaceExhausted",
    "dimension_from_json",
    "hash_dims",
]
