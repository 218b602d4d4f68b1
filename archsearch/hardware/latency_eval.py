"""Using a latency table: its error against measured latency, and a cost model for search.

`evaluate_predictor(table, archs)` predicts and measures each arch end to end and reports
the relative errors (the issue's acceptance figure is the median absolute error).
`TableLatencyCost(table)` is `Arch -> {"latency_ms": predicted}` for multi-trial
constraints and rewards (ProxylessNAS, arXiv:1812.00332, §3.3 uses such a table as its
latency model), checked against the search's space, build settings and input.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archsearch.errors import ConfigError
from archsearch.hardware.latency_table import LatencyTable, measure_ms
from archsearch.space import Arch, SearchSpace


@dataclass(frozen=True)
class PredictorReport:
    """Predicted vs measured end-to-end latency of some archs (relative errors)."""

    fingerprints: tuple[str, ...]
    predicted_ms: tuple[float, ...]
    measured_ms: tuple[float, ...]

    @property
    def errors(self) -> list[float]:
        """(predicted − measured) / measured, per arch."""
        return [(p - m) / m for p, m in zip(self.predicted_ms, self.measured_ms, strict=True)]

    @property
    def median_abs_error(self) -> float:
        return statistics.median(abs(e) for e in self.errors)

    @property
    def mean_abs_error(self) -> float:
        return statistics.fmean(abs(e) for e in self.errors)

    def to_json(self) -> dict[str, Any]:
        return {"median_abs_error": self.median_abs_error,
                "mean_abs_error": self.mean_abs_error,
                "max_abs_error": max(abs(e) for e in self.errors),
                "archs": [{"fingerprint": f, "predicted_ms": p, "measured_ms": m}
                          for f, p, m in zip(self.fingerprints, self.predicted_ms,
                                             self.measured_ms, strict=True)]}


def evaluate_predictor(table: LatencyTable, archs: Sequence[Arch], *, measure: Any = None,
                       raw: bool = False) -> PredictorReport:
    """Predict and measure (end to end, `measure_ms`) each arch, one after the other.

    Args:
        table: the latency table.
        archs: archs of its space, none of them a calibration arch.
        measure: `measure(arch) -> ms` instead of timing the network here.
        raw: compare the uncalibrated sum of entries.

    Raises:
        ConfigError: no archs, or an arch the table was calibrated on (its error says
            nothing about other archs).
    """
    if not archs:
        raise ConfigError("evaluate_predictor needs at least one arch")
    used = set(table.calibration.archs) if table.calibration is not None else set()
    predicted, measured = [], []
    for arch in archs:
        if arch.fingerprint() in used:
            raise ConfigError(f"arch {arch.fingerprint()[:12]} calibrated the table; "
                              "evaluate the predictor on other archs")
        predicted.append(table.predict_ms(arch, raw=raw))
        measured.append(measure_ms(table, arch, measure=measure))
    return PredictorReport(tuple(a.fingerprint() for a in archs), tuple(predicted),
                           tuple(measured))


class TableLatencyCost:
    """A cost model `Arch -> {"latency_ms": predicted}` from a latency table, for
    constraints and rewards of multi-trial search; optionally merged into `base`'s costs.

    Args:
        table: the latency table.
        space: if given, must be the table's space (same name and settings).
        build_kwargs, input_shape: if given, the search's build settings and (C, H, W)
            input, which must be the table's: a table timed for other networks would
            predict another network's latency.
        base: a cost model whose metrics are merged in (e.g. `ArchCost(latency=False)`).
    """

    def __init__(self, table: LatencyTable, *, space: SearchSpace | None = None,
                 build_kwargs: Mapping[str, Any] | None = None,
                 input_shape: Sequence[int] | None = None, base: Any = None) -> None:
        if space is not None and (space.name, space.space_hash) != (table.space_name,
                                                                    table.space_hash):
            raise ConfigError(f"the latency table is for space {table.space_name!r} with "
                              f"{table.space_args}; this search's space is {space.name!r} "
                              f"with {space.space_args}")
        if build_kwargs is not None and dict(build_kwargs) != table.build_kwargs:
            raise ConfigError(f"the latency table was built with {table.build_kwargs}; this "
                              f"search builds with {dict(build_kwargs)}: rebuild the table")
        if input_shape is not None and tuple(input_shape) != table.input_shape[1:]:
            raise ConfigError(f"the latency table was timed on inputs "
                              f"{table.input_shape[1:]}; this search feeds {tuple(input_shape)}")
        self.table, self.base = table, base
        self._cache: dict[str, float] = {}

    def metric_names(self) -> tuple[str, ...]:
        names = tuple(self.base.metric_names()) if self.base is not None else ()
        return (*(n for n in names if n != "latency_ms"), "latency_ms")

    def __call__(self, arch: Arch) -> dict[str, float]:
        costs = dict(self.base(arch)) if self.base is not None else {}
        key = arch.fingerprint()
        if key not in self._cache:
            self._cache[key] = self.table.predict_ms(arch)
        costs["latency_ms"] = self._cache[key]
        return costs


__all__ = ["PredictorReport", "TableLatencyCost", "evaluate_predictor"]
