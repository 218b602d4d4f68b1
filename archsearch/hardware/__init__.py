"""Hardware cost without training: parameter and MAC counts."""

from __future__ import annotations

from archsearch.hardware.counts import count_macs, num_params

__all__ = ["count_macs", "num_params"]
