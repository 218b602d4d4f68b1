"""Evaluators: score an architecture (train it, look it up, or compute a zero-cost proxy)."""

from __future__ import annotations

from archsearch.evaluators._base import Evaluator, Metrics, TrialFailed

__all__ = ["Evaluator", "Metrics", "TrialFailed"]
