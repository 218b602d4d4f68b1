"""Pareto fronts of a multi-objective search: dominance, NSGA-II sorting, hypervolume, files.

Non-dominated sorting and crowding distance follow NSGA-II (Deb, Pratap, Agarwal &
Meyarivan, "A Fast and Elitist Multiobjective Genetic Algorithm: NSGA-II", IEEE TEVC 2002,
section III). Every score vector here is MAXIMISED (the search loop negates metrics to be
minimised), so `a` dominates `b` when a ≥ b in every objective and a > b in at least one.

A multi-objective run directory gets two files:

- `pareto.json`: `{"format": "archsearch.pareto/1", "objectives": [{"metric": "val_acc",
  "direction": "max"}, ...], "front": [{"trial": 17, "arch": {...}, "metrics": {...}},
  ...]}`, the non-dominated complete trials, best first by the first objective;
- `pareto.png`: every evaluated trial in grey and the front highlighted, as a staircase
  (first objective on the y axis, second on the x axis).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike

from archsearch.errors import ConfigError
from archsearch.storage import atomic_write_bytes, atomic_write_json

PARETO_JSON = "pareto.json"
PARETO_PNG = "pareto.png"
FORMAT = "archsearch.pareto/1"
# Readable axis labels, units included (values are stored unscaled: darts' "MB" lesson).
AXIS_LABELS = {"val_acc": "validation accuracy", "test_acc": "test accuracy",
               "num_params": "parameters (count)", "macs": "MACs (multiply-accumulates)",
               "flops": "FLOPs", "latency_ms": "latency (ms)",
               "train_seconds": "training time (s)", "val_loss": "validation loss"}
MAX_NAMED_POINTS = 8  # front points are labelled with their trial numbers up to this many
LOG_SCALE_DECADES = 2.0  # an axis spanning more than this many decades is drawn log-scaled


class _Objective(Protocol):  # archsearch._loop.Objective, without importing the loop
    metric: str
    direction: str

    def score(self, metrics: Mapping[str, Any]) -> float: ...


class _Trial(Protocol):  # archsearch._loop.Trial
    number: int
    state: str
    metrics: dict[str, Any]

    @property
    def arch(self) -> Mapping[str, Any]: ...


# --- dominance ------------------------------------------------------------------------------
def _as_points(points: ArrayLike) -> np.ndarray:
    array = np.asarray(points, dtype=float)
    if array.ndim == 1:
        array = array.reshape(-1, 1) if array.size else array.reshape(0, 1)
    if array.ndim != 2:
        raise ValueError(f"points must be a (n, objectives) array, got shape {array.shape}")
    return array


def dominates(a: ArrayLike, b: ArrayLike) -> bool:
    """Whether maximised score vector `a` Pareto-dominates `b`."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(np.all(a >= b) and np.any(a > b))


def pareto_front(points: ArrayLike) -> list[int]:
    """Indices (ascending) of the non-dominated rows of `points` (maximised).

    Equal points do not dominate each other, so duplicates of a front point all belong to
    the front. Runs in O(n log n + n·|front|·m): in descending lexicographic order a point
    can only be dominated by an earlier one, and (dominance being transitive) it is
    dominated at all exactly when a front point found so far dominates it.
    """
    array = _as_points(points)
    order = np.lexsort(-array.T[::-1])  # descending by the first column, then the next ...
    front: list[int] = []
    for i in order:
        row = array[i]
        if not any(np.all(array[j] >= row) and np.any(array[j] > row) for j in front):
            front.append(int(i))
    return sorted(front)


def non_dominated_sort(points: ArrayLike) -> list[list[int]]:
    """NSGA-II's fast non-dominated sort (Deb et al. 2002, III-A): the fronts F1, F2, ...
    as lists of row indices (ascending); F1 is the Pareto front, F2 the front of the rest.

    O(m·n²) time and O(n²) memory, meant for populations (hundreds of points); use
    `pareto_front` for the first front of thousands.
    """
    array = _as_points(points)
    n = len(array)
    geq = np.all(array[:, None, :] >= array[None, :, :], axis=2)
    gt = np.any(array[:, None, :] > array[None, :, :], axis=2)
    dominance = geq & gt  # dominance[p, q]: p dominates q  (S_p in the paper, as a row)
    count = dominance.sum(axis=0)  # n_q: how many points dominate q
    fronts: list[list[int]] = []
    current = [q for q in range(n) if count[q] == 0]
    while current:
        fronts.append(current)
        for p in current:  # removing front i lowers n_q of everything p dominates
            count[dominance[p]] -= 1
        count[current] = -1  # never picked again
        current = [q for q in range(n) if count[q] == 0]
    return fronts


def crowding_distance(points: ArrayLike) -> np.ndarray:
    """NSGA-II's crowding distance of each point of one front (Deb et al. 2002, III-B).

    Per objective the points are sorted; the two boundary points get infinity and an
    inner point adds the normalised gap between its two neighbours, (f[i+1] − f[i−1]) /
    (f_max − f_min). An objective on which all points are equal adds nothing to inner
    points. Larger is lonelier, and preferred.
    """
    array = _as_points(points)
    n, m = array.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, math.inf)
    for k in range(m):
        order = np.argsort(array[:, k], kind="stable")
        values = array[order, k]
        distance[order[0]] = distance[order[-1]] = math.inf
        span = values[-1] - values[0]
        if span > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def hypervolume_2d(points: ArrayLike, reference: Sequence[float]) -> float:
    """The area dominated by maximised 2-D `points` and bounded below by `reference`.

    Points not strictly better than the reference in both objectives add nothing. On the
    front sorted by the first objective (descending, so the second ascends), the area is a
    sum of rectangles: Σ (x_i − r_x)·(y_i − y_{i−1}), with y_0 = r_y.
    """
    array = np.asarray(points, dtype=float)
    array = array.reshape(0, 2) if array.size == 0 else array
    if array.ndim != 2 or array.shape[1] != 2 or len(reference) != 2:
        raise ValueError("hypervolume_2d takes two objectives")
    rx, ry = float(reference[0]), float(reference[1])
    array = array[(array[:, 0] > rx) & (array[:, 1] > ry)]
    front = array[pareto_front(array)] if len(array) else array
    area, y_previous = 0.0, ry
    for x, y in sorted(map(tuple, front), key=lambda p: (-p[0], p[1])):
        if y > y_previous:
            area += (x - rx) * (y - y_previous)
            y_previous = y
    return area


# --- the run directory's front ---------------------------------------------------------------
def score_vectors(objectives: Sequence[_Objective], trials: Sequence[_Trial]) -> np.ndarray:
    """The maximised score vectors of `trials` under `objectives`, one row each."""
    return np.array([[o.score(t.metrics) for o in objectives] for t in trials],
                    dtype=float).reshape(len(trials), len(objectives))


def front_of(objectives: Sequence[_Objective], trials: Iterable[_Trial]) -> list[_Trial]:
    """The non-dominated complete trials, best first by the first objective (ties: by
    the next objectives, then by trial number)."""
    complete = [t for t in trials if t.state == "complete"]
    scores = score_vectors(objectives, complete)
    keep = sorted(pareto_front(scores), key=lambda i: (*(-scores[i]), complete[i].number))
    return [complete[i] for i in keep]


def objectives_json(objectives: Sequence[_Objective]) -> list[dict[str, str]]:
    return [{"metric": o.metric, "direction": o.direction} for o in objectives]


def write_front(run_dir: str | Path, objectives: Sequence[_Objective],
                trials: Iterable[_Trial]) -> Path:
    """Write `pareto.json` (atomically): the non-dominated complete trials among `trials`.

    Args:
        run_dir: the run directory.
        objectives: what is optimised; their scores decide dominance.
        trials: any trials (the search's, or a superset of its front); only complete ones
            count.

    Returns:
        The path of `pareto.json`.
    """
    front = front_of(objectives, trials)
    doc = {"format": FORMAT, "objectives": objectives_json(objectives),
           "front": [{"trial": t.number, "arch": dict(t.arch), "metrics": dict(t.metrics)}
                     for t in front]}
    return atomic_write_json(Path(run_dir) / PARETO_JSON, doc)


def read_front(run_dir: str | Path) -> dict[str, Any] | None:
    """`pareto.json` of a run directory, or None when it has none."""
    path = Path(run_dir) / PARETO_JSON
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{path} is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an {FORMAT} file")
    return doc


# --- the plot --------------------------------------------------------------------------------
def plot_front(run_dir: str | Path) -> Path | None:
    """Draw `pareto.png` from `pareto.json` (and every complete trial of `trials.jsonl`).

    The first objective goes on the y axis and the second on the x axis (with three or
    more objectives, the front's projection onto these two is shown as points only). An
    axis whose values span more than two decades is log-scaled.

    Returns:
        The path of `pareto.png`, or None when the run has no `pareto.json` (a
        single-objective search) or fewer than two objectives.
    """
    run_dir = Path(run_dir)
    doc = read_front(run_dir)
    if doc is None or len(doc["objectives"]) < 2:
        return None
    y_obj, x_obj = doc["objectives"][0], doc["objectives"][1]
    front = _metric_pairs(doc["front"], x_obj["metric"], y_obj["metric"])
    evaluated = _metric_pairs(_complete_records(run_dir), x_obj["metric"], y_obj["metric"])
    png = _render(front, evaluated, x_obj, y_obj, staircase=len(doc["objectives"]) == 2,
                  labels=[r["trial"] for r in doc["front"]])
    return atomic_write_bytes(run_dir / PARETO_PNG, lambda f: f.write(png))


def _complete_records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "trials.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash; the plot does without it
        if isinstance(record, dict) and record.get("state") == "complete":
            records.append(record)
    return records


def _metric_pairs(records: Iterable[Mapping[str, Any]], x: str, y: str) -> np.ndarray:
    pairs = [(float(r["metrics"][x]), float(r["metrics"][y])) for r in records
             if x in r.get("metrics", {}) and y in r.get("metrics", {})]
    return np.array(pairs, dtype=float).reshape(len(pairs), 2)


def axis_label(metric: str, direction: str, values: np.ndarray) -> str:
    """`metric`'s readable name with its unit and which way is better."""
    label = AXIS_LABELS.get(metric, metric)
    if metric.endswith("_acc") and len(values):
        # TableEvaluator reports NAS-Bench-201's percentages, TrainEvaluator fractions.
        label += " (%)" if np.nanmax(values) > 1.0 else " (fraction)"
    return f"{label}, {'higher' if direction == 'max' else 'lower'} is better"


def _is_log_scale(values: np.ndarray) -> bool:
    values = values[np.isfinite(values)]
    return bool(len(values) and values.min() > 0
                and math.log10(values.max() / values.min()) > LOG_SCALE_DECADES)


def _scale_axis(ax: Any, axis: Any, values: np.ndarray) -> None:
    """Log scale past two decades; counts such as MACs read 200k / 1.5M, not "1e6"."""
    from matplotlib.ticker import EngFormatter

    if _is_log_scale(values):
        (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
    if len(values) and np.nanmax(np.abs(values)) >= 1e4:
        axis.set_major_formatter(EngFormatter())


def _render(front: np.ndarray, evaluated: np.ndarray, x_obj: Mapping[str, str],
            y_obj: Mapping[str, str], *, staircase: bool, labels: Sequence[int]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if len(evaluated):
        ax.scatter(evaluated[:, 0], evaluated[:, 1], s=14, color="0.72", linewidths=0,
                   label=f"evaluated ({len(evaluated)})", zorder=1)
    order = np.argsort(front[:, 0], kind="stable")
    xs, ys = front[order, 0], front[order, 1]
    if staircase and len(front) > 1:
        # The attainment curve: with a cost budget x (minimised x), the best reachable y is
        # that of the last front point at or left of x, so the step follows a point ("post");
        # with x maximised it is that of the first point at or right of x ("pre").
        ax.step(xs, ys, where="post" if x_obj["direction"] == "min" else "pre",
                color="tab:red", linewidth=1.4, zorder=2)
    ax.scatter(xs, ys, s=36, color="tab:red", edgecolors="black", linewidths=0.6,
               label=f"Pareto front ({len(front)})", zorder=3)
    if len(front) <= MAX_NAMED_POINTS:
        for (x, y), trial in zip(front, labels, strict=True):
            ax.annotate(f"#{trial}", (x, y), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color="0.25")
    every = np.vstack([evaluated, front]) if len(evaluated) else front
    for axis, values in ((ax.xaxis, every[:, 0]), (ax.yaxis, every[:, 1])):
        _scale_axis(ax, axis, values)
    ax.set_xlabel(axis_label(x_obj["metric"], x_obj["direction"], every[:, 0]))
    ax.set_ylabel(axis_label(y_obj["metric"], y_obj["direction"], every[:, 1]))
    ax.set_title(f"Pareto front: {y_obj['metric']} ({y_obj['direction']}) vs "
                 f"{x_obj['metric']} ({x_obj['direction']})")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
