"""Hardware cost without training: parameter and MAC counts, measured latency."""

from __future__ import annotations

from archsearch.hardware.cost import COST_METRICS, ArchCost
from archsearch.hardware.counts import count_macs, num_params
from archsearch.hardware.latency import LatencyStats, measure_latency
from archsearch.hardware.latency_eval import PredictorReport, TableLatencyCost, evaluate_predictor
from archsearch.hardware.latency_table import LatencyTable

__all__ = ["COST_METRICS", "ArchCost", "LatencyStats", "count_macs", "measure_latency",
           "num_params"]
__all__ += ["LatencyTable", "PredictorReport", "TableLatencyCost", "evaluate_predictor"]
