"""The results of a strategy benchmark (`archsearch bench`) and their files: bench.json,
curves.csv, curves.png, and a readable summary table.

The plot is drawn on matplotlib's Agg canvas directly (no pyplot), so it needs no display
and does not change the caller's backend. Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from archsearch.storage import atomic_write_bytes, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from archsearch.bench import BenchSettings

BENCH_JSON = "bench.json"
CURVES_CSV = "curves.csv"
CURVES_PNG = "curves.png"


@dataclass
class RunRecord:
    """One search run: the architecture it returns and its anytime curve."""

    strategy: str
    seed: int
    arch: str | None  # the benchmark's arch string of the returned cell
    val_acc: float  # what the run chose it by (at the highest fidelity it queried)
    test_acc: float  # reported: test accuracy at REPORT_EPOCHS
    regret: float
    queries: int  # distinct cells evaluated (per fidelity)
    simulated_seconds: float
    curve: list[float]  # test accuracy of the best-so-far cell at each point of the x axis
    val_curve: list[float]  # its validation accuracy (non-decreasing at one fidelity)

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class BenchResult:
    """The runs of a benchmark and their per-strategy aggregates.

    `x` is the anytime curves' axis: queries 1..Q, or simulated seconds for a time budget.
    `val_is_test`: the table has no held-out validation accuracy at the searched fidelity
    (CIFAR-100 and ImageNet16-120 at 200 epochs), so the searches saw the test accuracy.
    """

    settings: BenchSettings
    best_test_acc: float
    x: list[float]
    x_label: str
    runs: list[RunRecord]
    val_is_test: bool = False

    def runs_of(self, strategy: str) -> list[RunRecord]:
        return [run for run in self.runs if run.strategy == strategy]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per strategy: mean and (sample) standard deviation over seeds of the returned
        cells' test accuracy, and the mean regret, in percent."""
        out = {}
        for name in self.settings.strategies:
            test = np.asarray([run.test_acc for run in self.runs_of(name)])
            regret = np.asarray([run.regret for run in self.runs_of(name)])
            out[name] = {"mean_test_accuracy": _mean(test),
                         "std_test_accuracy": _std(test),
                         "mean_regret": _mean(regret)}
        return out

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per strategy: the mean and standard deviation over seeds of the anytime curves
        (NaN where no run has a result yet)."""
        out = {}
        for name in self.settings.strategies:
            stack = np.asarray([run.curve for run in self.runs_of(name)], dtype=np.float64)
            out[name] = _nan_mean_std(stack)
        return out

    def to_json(self) -> dict[str, Any]:
        summary = self.summary()
        for name, row in summary.items():
            runs = self.runs_of(name)
            row["mean_queries"] = _mean(np.asarray([r.queries for r in runs], dtype=float))
            row["mean_simulated_seconds"] = _mean(
                np.asarray([r.simulated_seconds for r in runs]))
        return {"settings": self.settings.to_json(), "best_test_accuracy": self.best_test_acc,
                "val_is_test": self.val_is_test, "summary": summary,
                "x_label": self.x_label, "x": self.x, "runs": [run.to_json() for run in self.runs]}

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write bench.json, curves.csv and curves.png into `out_dir` (each atomically)."""
        return write_report(self, Path(out_dir))




def write_report(result: BenchResult, out_dir: Path) -> dict[str, Path]:
    """Write the three files into `out_dir` (created if needed); returns their paths."""
    paths = {"json": out_dir / BENCH_JSON, "csv": out_dir / CURVES_CSV,
             "png": out_dir / CURVES_PNG}
    atomic_write_json(paths["json"], jsonable(result.to_json()))
    atomic_write_text(paths["csv"], curves_csv(result))
    png = plot_png(result)
    atomic_write_bytes(paths["png"], lambda f: f.write(png))
    return paths


def curves_csv(result: BenchResult) -> str:
    """Long format: strategy, x (queries or simulated seconds), mean and std over seeds of
    the best-so-far cell's test accuracy (empty where no run has a result yet)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["strategy", result.x_label, "mean_test_accuracy", "std_test_accuracy",
                     "runs"])
    for name, (mean, std) in result.curves().items():
        runs = len(result.runs_of(name))
        for x, m, s in zip(result.x, mean.tolist(), std.tolist(), strict=True):
            writer.writerow([name, _g(x), _g(m), _g(s), runs])
    return out.getvalue()


def plot_png(result: BenchResult) -> bytes:
    """Mean ± std anytime curves per strategy and the best cell as a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.asarray(result.x)
    lows = []
    for name, (mean, std) in result.curves().items():
        (line,) = ax.plot(x, mean, label=name, linewidth=1.6)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15,
                        linewidth=0)
        # The interesting range: after the first tenth of the budget.
        tail = mean[len(mean) // 10:]
        if np.any(np.isfinite(tail)):
            lows.append(float(np.nanmin(tail)))
    ax.axhline(result.best_test_acc, color="black", linestyle="--", linewidth=0.8,
               label=f"best cell ({result.best_test_acc:.2f})")
    if lows:
        ax.set_ylim(min(lows) - 0.2, result.best_test_acc + 0.15)
    s = result.settings
    ax.set_xlabel("queries (distinct cells evaluated)" if result.x_label == "queries"
                  else "simulated training seconds")
    ax.set_ylabel("test accuracy of best-so-far cell (%)")
    ax.set_title(f"NAS-Bench-201 {s.dataset}: {s.seeds} seeds, fidelity {s.fidelity} "
                 "(mean ± std)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def format_table(result: BenchResult) -> str:
    """A readable table: one row per strategy."""
    s = result.settings
    budget = " and ".join(part for part in (
        None if s.queries is None else f"{s.queries} queries",
        None if s.seconds is None else f"{s.seconds:g} simulated seconds") if part)
    lines = [f"NAS-Bench-201 {s.dataset}, {s.seeds} seeds x {budget}, search on validation "
             f"({s.fidelity} epochs), test accuracy at 200 epochs; best cell "
             f"{result.best_test_acc:.2f}",
             f"{'strategy':<16} {'test acc (%)':>16} {'regret':>8} {'queries':>8}"]
    if result.val_is_test:
        lines.insert(1, f"(the tables hold no held-out {s.dataset} validation accuracy at "
                        f"{s.fidelity} epochs: the searches saw the test accuracy; "
                        "--fidelity 12 has one)")
    for name, row in result.summary().items():
        queries = np.mean([run.queries for run in result.runs_of(name)])
        lines.append(f"{name:<16} {row['mean_test_accuracy']:>9.2f} ± "
                     f"{row['std_test_accuracy']:<4.2f} {row['mean_regret']:>8.2f} "
                     f"{queries:>8.1f}")
    return "\n".join(lines)


def _g(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6g}"


def jsonable(doc: object) -> object:
    """NaN (a run with no result yet) becomes null: bench.json stays strict JSON."""
    if isinstance(doc, float):
        return None if math.isnan(doc) else doc
    if isinstance(doc, dict):
        return {k: jsonable(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [jsonable(v) for v in doc]
    return doc


# --- statistics -------------------------------------------------------------------------------
def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else math.nan


def _std(values: np.ndarray) -> float:
    # Sample standard deviation over seeds (ddof=1); one seed has none to speak of.
    return float(np.std(values, ddof=1)) if values.size > 1 else 0.0


def _nan_mean_std(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    count = np.sum(~np.isnan(stack), axis=0)
    total = np.nansum(stack, axis=0)
    mean = np.divide(total, count, out=np.full(stack.shape[1], np.nan), where=count > 0)
    squares = np.nansum((stack - mean) ** 2, axis=0)
    std = np.divide(squares, count - 1, out=np.zeros(stack.shape[1]), where=count > 1) ** 0.5
    return mean, np.where(count > 0, std, np.nan)
