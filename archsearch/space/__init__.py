"""The search-space mechanism: dimensions and architectures (framework-light, no torch)."""

from __future__ import annotations

from archsearch.space._arch import ARCH_FORMAT, Arch, hash_dims
from archsearch.space._dims import Categorical

__all__ = ["ARCH_FORMAT", "Arch", "Categorical", "hash_dims"]
