"""Discrete networks built from found architectures."""

from __future__ import annotations

from archsearch.networks.darts import AuxiliaryHead, DartsNetwork, DiscreteCell, drop_path

__all__ = ["AuxiliaryHead", "DartsNetwork", "DiscreteCell", "drop_path"]
