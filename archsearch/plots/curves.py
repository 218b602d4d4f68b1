"""Search curves of a multi-trial run: the best score so far against trials and against time.

The anytime curve is how NAS strategies are compared (e.g. NAS-Bench-201, Dong & Yang,
arXiv:2001.00326, Fig. 7; Real et al., arXiv:1802.01548, Fig. 3): after each trial of the
journal (`trials.jsonl`), the best objective value seen so far. Complete trials are dots,
repeats answered from the journal hollow dots, failed and infeasible trials marks along the
bottom, and the best-so-far a step line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archsearch.errors import ConfigError
from archsearch.plots._common import new_figure, save_figure

SCORED_STATES = ("complete", "cached")


@dataclass
class CurveData:
    """Per journal record: its trial number, end time, state, value and the best so far."""

    label: str  # what the y axis shows
    direction: str  # "max" or "min": which way is better
    trial: np.ndarray
    elapsed_s: np.ndarray
    state: list[str]
    value: np.ndarray  # NaN where the trial has no value (failed, infeasible)
    best: np.ndarray  # NaN until the first complete trial

    def count(self, state: str) -> int:
        return sum(s == state for s in self.state)


def curve_data(records: Sequence[Mapping[str, Any]], settings: Mapping[str, Any] | None = None,
               *, source: str = "trials.jsonl") -> CurveData:
    """The curve of a journal's records.

    The value is the objective metric in its own direction (`settings["objective"]`,
    `settings["direction"]` from config.json), or the score the strategy maximised when
    the run used a MnasNet reward or the settings are unknown.

    Raises:
        ConfigError: for a record without a state or with a value that is not a number.
    """
    s = settings or {}
    metric, direction = s.get("objective"), s.get("direction", "max")
    if s.get("reward_cost") or not isinstance(metric, str) or direction not in ("max", "min"):
        metric, direction = None, "max"
    label = "score (maximised)" if metric is None else f"{metric} ({direction}imised)"
    trials, elapsed, states, values = [], [], [], []
    for index, record in enumerate(records):
        state = record.get("state")
        if not isinstance(state, str):
            raise ConfigError(f"{source}: record {index + 1} has no 'state'")
        states.append(state)
        trials.append(_number(record.get("trial", index), source, index, "trial"))
        elapsed.append(_number(record.get("elapsed_seconds", math.nan), source, index,
                               "elapsed_seconds"))
        values.append(_value(record, metric, source, index) if state in SCORED_STATES
                      else math.nan)
    value = np.asarray(values, dtype=np.float64)
    return CurveData(label, direction, np.asarray(trials, dtype=np.float64),
                     np.asarray(elapsed, dtype=np.float64), states, value,
                     best_so_far(value, direction))


def best_so_far(values: np.ndarray, direction: str = "max") -> np.ndarray:
    """Running best of `values` (NaN = no value) in `direction`; NaN before the first."""
    out = np.full(len(values), math.nan)
    best = math.nan
    for k, v in enumerate(values):
        if not math.isnan(v) and (math.isnan(best) or
                                  (v > best if direction == "max" else v < best)):
            best = float(v)
        out[k] = best
    return out


def _value(record: Mapping[str, Any], metric: str | None, source: str, index: int) -> float:
    metrics = record.get("metrics") or {}
    raw = record.get("score") if metric is None else (
        metrics.get(metric) if isinstance(metrics, Mapping) else None)
    if isinstance(raw, list) and raw:  # several objectives: the first one's score
        raw = raw[0]
    return math.nan if raw is None else _number(raw, source, index, metric or "score")


def _number(raw: Any, source: str, index: int, name: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ConfigError(f"{source}: record {index + 1}: {name} is not a number ({raw!r})")
    return float(raw)


def draw_search_curve(data: CurveData, stem: Path, formats: Sequence[str] = ("png",), *,
                      title: str = "") -> list[Path]:
    """Two panels, best-so-far against trial number and against elapsed seconds, sharing
    the y axis (logarithmic when the values are positive and span over 2 decades)."""
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    fig = new_figure(11.0, 4.4, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    finite = data.value[np.isfinite(data.value)]
    log = finite.size > 1 and finite.min() > 0 and finite.max() / finite.min() > 1e2
    scored = np.isin(data.state, SCORED_STATES)
    for ax, x, xlabel in ((axes[0], data.trial, "trial number"),
                          (axes[1], data.elapsed_s, "elapsed seconds")):
        complete = np.asarray([s == "complete" for s in data.state])
        cached = scored & ~complete
        ax.plot(x[complete], data.value[complete], "o", color="#1f77b4", markersize=4,
                alpha=0.7, label=f"complete ({int(complete.sum())})")
        if cached.any():
            ax.plot(x[cached], data.value[cached], "o", markerfacecolor="none",
                    color="#7f7f7f", markersize=5, label=f"repeat ({int(cached.sum())})")
        has_best = np.isfinite(data.best) & np.isfinite(x)
        if has_best.any():
            ax.step(x[has_best], data.best[has_best], where="post", color="#d62728",
                    linewidth=1.8, label="best so far")
        bottom = blended_transform_factory(ax.transData, ax.transAxes)
        for state, marker, colour in (("failed", "x", "#d62728"),
                                      ("infeasible", "v", "#ff7f0e")):
            hit = np.asarray([s == state for s in data.state])
            if hit.any():
                ax.plot(x[hit], np.full(int(hit.sum()), 0.03), marker, color=colour,
                        markersize=6, transform=bottom, clip_on=False,
                        label=f"{state} ({int(hit.sum())})", linestyle="none")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("log")
    if data.count("failed") or data.count("infeasible"):
        _room_below(axes[0], log)  # a free strip for the marks along the bottom
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel(data.label)
    axes[0].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, Path(stem), formats)


def _room_below(ax: Any, log: bool) -> None:
    low, high = ax.get_ylim()
    if log:
        ax.set_ylim(low / (high / low) ** 0.12, high)
    else:
        ax.set_ylim(low - 0.12 * (high - low), high)


def curve_title(data: CurveData, settings: Mapping[str, Any] | None) -> str:
    """e.g. "evolution on nb201: best val_acc 0.9341 (trial 17)"."""
    s = settings or {}
    head = f"{s.get('strategy', 'search')} on {s.get('space', '?')}"
    if not np.isfinite(data.best).any():
        return f"{head}: no trial completed"
    k = int(np.flatnonzero(data.value == data.best[-1])[0])
    name = data.label.split(" ")[0]
    return f"{head}: best {name} {data.best[-1]:.4g} (trial {int(data.trial[k])})"
