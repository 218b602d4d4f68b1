"""Training of discrete networks."""

from __future__ import annotations

from archsearch.train._evaluate import cosine_lr, evaluate
from archsearch.train._trainer import Trainer

__all__ = ["Trainer", "cosine_lr", "evaluate"]
