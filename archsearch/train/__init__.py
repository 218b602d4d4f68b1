"""Training of discrete networks."""

from __future__ import annotations

from archsearch.train._trainer import Trainer

__all__ = ["Trainer"]
