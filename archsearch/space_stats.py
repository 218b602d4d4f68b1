"""Knowing a space before searching it: its cost distribution and its error EDF, by sampling.

Two descriptions of a design space from uniformly sampled architectures:

* the distribution of MACs and parameters. MCUNet's TinyNAS (Lin et al. 2020, "MCUNet: Tiny
  Deep Learning on IoT Devices", §3.1) compares the cumulative MAC distributions of candidate
  spaces that fit a memory budget and picks the space whose models compute the most: more
  compute under the same constraint, more likely accurate models.
* the empirical distribution function of the errors of sampled, cheaply trained models
  (Radosavovic et al. 2019, "On Network Design Spaces for Visual Recognition", eq. 1):
  F(e) = (1/n) Σ_i 1[e_i < e], the fraction of models with error below e. A space whose EDF
  lies higher holds more good models; the paper measures the gap between two EDFs with the
  Kolmogorov–Smirnov statistic D = sup_e |F_1(e) − F_2(e)| (`ks_distance`), and compares
  spaces of different complexity with "normalized" EDFs whose per-model weights make the
  complexity distribution uniform (`complexity_weights`).

The same seed samples the same architectures in `cost_distribution` and `error_edf`, so the
trained models are the first ones of the cost sample. Files are written atomically; plots are
drawn on matplotlib's Agg canvas (no pyplot, no display).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsearch.data import Dataset
from archsearch.data._dataset import stratified_split
from archsearch.errors import ConfigError
from archsearch.evaluators import TrialFailed
from archsearch.evaluators.train import TrainEvaluator
from archsearch.hardware import ArchCost
from archsearch.multitrial import VAL_FRACTION
from archsearch.space import Arch, SearchSpace
from archsearch.storage import atomic_write_bytes, atomic_write_text

Evaluator = Callable[[Arch], Mapping[str, float]]


@dataclass(frozen=True)
class CostRow:
    """One sampled architecture's size: parameters and MACs for one input."""

    sample: int
    fingerprint: str
    num_params: int
    macs: int


@dataclass(frozen=True)
class ErrorRow:
    """One sampled, briefly trained architecture; `error` = 1 − val_acc (NaN if it failed)."""

    sample: int
    fingerprint: str
    num_params: float
    macs: float
    val_acc: float
    error: float
    train_seconds: float
    failed: str = ""  # why the trial failed (diverged, cannot run), else empty


def sample_archs(space: SearchSpace, n: int, *, seed: int) -> list[Arch]:
    """`n` architectures drawn uniformly (with replacement) from `space`, reproducibly."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"the number of samples must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def cost_distribution(space: SearchSpace, n: int, *, seed: int, input_shape: Sequence[int],
                      build_kwargs: Mapping[str, Any] | None = None,
                      progress: bool = False) -> list[CostRow]:
    """Parameters and MACs of `n` sampled architectures, counted on `input_shape` (C, H, W).

    Archs that are one network (`space.canonical`, where the space has it) are counted once.

    Raises:
        ConfigError: `n` is not positive, or the space cannot build with `build_kwargs`.
    """
    from tqdm.auto import tqdm

    cost = ArchCost(space, input_shape, build_kwargs=build_kwargs)
    canonical = getattr(space, "canonical", lambda arch: arch)
    cache: dict[str, dict[str, float]] = {}
    rows = []
    archs = sample_archs(space, n, seed=seed)
    for i, arch in enumerate(tqdm(archs, desc=f"costs {space.name}", unit="arch",
                                  disable=not progress)):
        key = canonical(arch).fingerprint()
        if key not in cache:
            try:
                cache[key] = cost(arch)
            except TypeError as exc:  # an option the space's build does not take
                raise ConfigError(f"space {space.name!r} cannot build with "
                                  f"{dict(build_kwargs or {})}: {exc}") from None
        rows.append(CostRow(i, arch.fingerprint(), int(cache[key]["num_params"]),
                            int(cache[key]["macs"])))
    return rows


def train_evaluator(space: SearchSpace, data: Dataset, *, seed: int, epochs: int = 1,
                    batch_size: int = 64, lr: float = 0.05,
                    build_kwargs: Mapping[str, Any] | None = None,
                    device: str | torch.device = "cpu") -> TrainEvaluator:
    """The multi-trial train evaluator on `data`: a stratified `VAL_FRACTION` of the training
    split (chosen by `seed`) scores the models, as in `archsearch search`."""
    index = np.arange(len(data.y_train))
    train_idx, val_idx, _, _ = stratified_split(data.name, index, data.y_train.numpy(),
                                                seed=seed, test_fraction=VAL_FRACTION)
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    return TrainEvaluator(space, x_train=data.x_train[train_idx],
                          y_train=data.y_train[train_idx], x_val=data.x_train[val_idx],
                          y_val=data.y_train[val_idx], num_classes=data.num_classes,
                          epochs=epochs, batch_size=batch_size, lr=lr, device=device,
                          seed=seed, build_kwargs=build_kwargs)


def error_edf(space: SearchSpace, n: int, evaluator: Evaluator | Dataset, *, seed: int,
              epochs: int = 1, build_kwargs: Mapping[str, Any] | None = None,
              device: str | torch.device = "cpu", progress: bool = False,
              **train_kwargs: Any) -> list[ErrorRow]:
    """Train `n` sampled architectures cheaply and record their error 1 − val_acc.

    Args:
        space: the space to sample.
        n: models to train.
        evaluator: an evaluator reporting `val_acc`, or a dataset, for which the train
            evaluator of `train_evaluator` is made (`epochs`, `build_kwargs`, `device` and
            `train_kwargs` — batch_size, lr — apply only then).
        seed: sampling seed (and the evaluator's seed when one is made here).
        progress: show a progress bar.

    Returns:
        One row per model; a failed trial has error NaN and its reason in `failed`.
    """
    from tqdm.auto import tqdm

    archs = sample_archs(space, n, seed=seed)
    if isinstance(evaluator, Dataset):
        evaluator = train_evaluator(space, evaluator, seed=seed, epochs=epochs,
                                    build_kwargs=build_kwargs, device=device, **train_kwargs)
    elif train_kwargs:
        raise ConfigError(f"{sorted(train_kwargs)} apply only when a dataset is given")
    rows = []
    bar = tqdm(archs, desc=f"train {space.name}", unit="arch", disable=not progress)
    for i, arch in enumerate(bar):
        try:
            m = evaluator(arch)
        except TrialFailed as exc:
            rows.append(ErrorRow(i, arch.fingerprint(), *[math.nan] * 5, failed=str(exc)))
            continue
        acc = float(m["val_acc"])
        rows.append(ErrorRow(i, arch.fingerprint(), float(m.get("num_params", math.nan)),
                             float(m.get("macs", math.nan)), acc, 1.0 - acc,
                             float(m.get("train_seconds", math.nan))))
        bar.set_postfix(error=f"{1.0 - acc:.3f}")
    return rows


@dataclass(frozen=True)
class EDF:
    """An empirical distribution function F(e) = Σ_i w_i 1[e_i < e] (eq. 1 with w_i = 1/n).

    `errors` are the finite values, sorted, with their `weights`; failed models (NaN) keep
    their weight but are below no e, so F stays under 1 when some failed.
    """

    errors: np.ndarray
    weights: np.ndarray
    n: int
    failed: int

    def __call__(self, e: float | np.ndarray) -> float | np.ndarray:
        """F(e): the (weighted) fraction of models with error strictly below `e`."""
        return self._cdf(e, side="left")

    def _cdf(self, e: float | np.ndarray, side: str) -> Any:
        cumulative = np.concatenate([[0.0], np.cumsum(self.weights)])
        out = cumulative[np.searchsorted(self.errors, e, side=side)]
        return float(out) if np.ndim(out) == 0 else out

    def quantile(self, q: float) -> float:
        """The smallest model error e_k with Σ_{i ≤ k} w_i ≥ q (inf if failed models hold
        the mass): the generalised inverse of F, always an observed error."""
        cumulative = np.cumsum(self.weights)
        k = int(np.searchsorted(cumulative, q - 1e-12, side="left"))
        return float(self.errors[k]) if k < len(self.errors) else math.inf

    def area(self, low: float = 0.0, high: float = 1.0) -> float:
        """∫_low^high F(e) de / (high − low), in [0, 1]: higher means better models.

        Each model adds w_i·(high − max(e_i, low)) when e_i < high; over [0, 1] this is the
        (weighted) mean accuracy, failed models counting as accuracy 0.
        """
        if not high > low:
            raise ConfigError(f"need high > low, got [{low}, {high}]")
        inside = self.errors < high
        spans = high - np.maximum(self.errors[inside], low)
        return float(np.sum(self.weights[inside] * spans) / (high - low))

    def summary(self, levels: Sequence[float] = (0.05, 0.1, 0.2, 0.5)) -> dict[str, float]:
        """n, failed, quartiles of the error, and F at each of `levels`."""
        out: dict[str, float] = {"n": self.n, "failed": self.failed, "q25": self.quantile(0.25),
                                 "median": self.quantile(0.5), "q75": self.quantile(0.75)}
        out.update({f"F({level:g})": float(self(level)) for level in levels})
        return out


def edf(values: Sequence[float] | np.ndarray,
        weights: Sequence[float] | np.ndarray | None = None) -> EDF:
    """The EDF of `values` (errors; NaN = a failed model), weighted by `weights` (normalised
    to sum to 1; default 1/n each)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ConfigError("an EDF needs at least one value")
    w = np.full(v.size, 1.0 / v.size) if weights is None else np.asarray(weights, float)
    if w.shape != v.shape or np.any(w < 0) or not np.sum(w) > 0:
        raise ConfigError("weights must be non-negative, one per value, not all zero")
    w = w / np.sum(w)
    finite = np.isfinite(v)
    order = np.argsort(v[finite], kind="stable")
    return EDF(v[finite][order], w[finite][order], int(v.size), int(np.sum(~finite)))


def ks_distance(a: EDF, b: EDF) -> float:
    """Kolmogorov–Smirnov statistic sup_e |F_a(e) − F_b(e)| (checked on both sides of every
    jump, since F is a step function)."""
    points = np.concatenate([a.errors, b.errors])
    if points.size == 0:  # every model failed in both: F_a = F_b = 0
        return 0.0
    gaps = [np.abs(a._cdf(points, side) - b._cdf(points, side)) for side in ("left", "right")]
    return float(max(np.max(g) for g in gaps))


def complexity_weights(complexity: Sequence[float] | np.ndarray, *,
                       edges: Sequence[float] | np.ndarray | None = None,
                       bins: int = 10) -> np.ndarray:
    """Per-model weights that make the binned complexity (e.g. MACs) distribution uniform.

    Every non-empty bin gets the same total weight, shared by its models; models outside
    `edges` get 0. Pass the same `edges` (default: `bins` log-spaced bins over the values)
    for every space to compare their errors at equal complexity ("normalized" EDFs).
    """
    c = np.asarray(complexity, dtype=np.float64)
    if c.size == 0 or np.any(c <= 0):
        raise ConfigError("complexities must be positive numbers")
    if edges is None:
        low, high = float(c.min()), float(c.max())
        edges = np.geomspace(low, high * (1 + 1e-9), bins + 1) if high > low else \
            np.array([low * (1 - 1e-9), high * (1 + 1e-9)])
    edges = np.asarray(edges, dtype=np.float64)
    which = np.searchsorted(edges, c, side="right") - 1
    which[c == edges[-1]] = len(edges) - 2  # the last bin is closed on the right
    inside = (which >= 0) & (which < len(edges) - 1)
    counts = np.bincount(which[inside], minlength=len(edges) - 1)
    if not np.any(inside):
        raise ConfigError("no complexity falls inside the bin edges")
    weights = np.zeros(c.size)
    weights[inside] = 1.0 / (np.count_nonzero(counts) * counts[which[inside]])
    return weights


# --- files --------------------------------------------------------------------------------
def rows_csv(rows_by_space: Mapping[str, Sequence[CostRow | ErrorRow]]) -> str:
    """Long format: a `space` column, then the row's fields (NaN written empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    first = next((row for rows in rows_by_space.values() for row in rows), None)
    if first is not None:
        writer.writerow(["space", *(f.name for f in dataclasses.fields(first))])
    for label, rows in rows_by_space.items():
        writer.writerows([label, *(_cell(v) for v in dataclasses.astuple(row))] for row in rows)
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def write_csv(path: str | Path, rows_by_space: Mapping[str, Sequence[Any]]) -> Path:
    return atomic_write_text(path, rows_csv(rows_by_space))


def write_png(path: str | Path, png: bytes) -> Path:
    return atomic_write_bytes(path, lambda f: f.write(png))


# --- plots --------------------------------------------------------------------------------
def _figure(rows: int, cols: int, size: tuple[float, float]) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=120)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _png(fig: Any) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _step_cdf(ax: Any, values: np.ndarray, **style: Any) -> None:
    """The sample's CDF as a step line from 0 (just left of the smallest value) to 1."""
    x = np.sort(values)
    y = np.arange(1, x.size + 1) / x.size
    ax.step(np.concatenate([[x[0]], x]), np.concatenate([[0.0], y]), where="post", **style)


def _log_axis(ax: Any, low: float, high: float) -> None:
    """A log x axis labelled 30k, 1M, ...; minor ticks at 2 and 5 labelled too when the
    data span less than about a decade and a half (else too few major labels show)."""
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    narrow = high < 30 * low
    ax.xaxis.set_minor_formatter(EngFormatter(sep="") if narrow else NullFormatter())
    ax.grid(alpha=0.3, which="both")


def plot_costs_png(costs: Mapping[str, Sequence[CostRow]]) -> bytes:
    """Per metric (MACs, parameters): overlaid histograms (log-spaced bins shared by the
    spaces, as a fraction of each space's samples) and the cumulative distributions."""
    fig, axes = _figure(2, 2, (10.0, 7.0))
    for r, (field, name) in enumerate((("macs", "MACs (one input)"),
                                       ("num_params", "parameters"))):
        values = {label: np.asarray([getattr(row, field) for row in rows], dtype=float)
                  for label, rows in costs.items()}
        low = min(float(v.min()) for v in values.values())
        high = max(float(v.max()) for v in values.values())
        # About 1.5·√n bins (10 to 40), log-spaced, shared: the same bars for every space.
        bins = int(np.clip(1.5 * np.sqrt(min(v.size for v in values.values())), 10, 40))
        edges = np.geomspace(low / 1.05, high * 1.05, bins + 1)
        hist, cdf = axes[r]
        for k, (label, v) in enumerate(values.items()):
            color = f"C{k % 10}"
            hist.hist(v, bins=edges, weights=np.full(v.size, 1.0 / v.size), histtype="step",
                      linewidth=1.6, color=color)
            _step_cdf(cdf, v, color=color, linewidth=1.6,
                      label=f"{label} (median {_si(float(np.median(v)))})")
        for ax in (hist, cdf):
            _log_axis(ax, low, high)
            ax.set_xlabel(name)
        hist.set_ylabel("fraction of sampled archs")
        cdf.set_ylabel("cumulative fraction")
        cdf.set_ylim(0, 1.02)
        cdf.legend(fontsize=8, loc="lower right")  # CDFs usually leave it empty
    n = ", ".join(f"{label}: {len(rows)}" for label, rows in costs.items())
    fig.suptitle(f"cost of uniformly sampled architectures ({n})", fontsize=10)
    return _png(fig)


def plot_edf_png(edfs: Mapping[str, EDF], *, title: str = "") -> bytes:
    """The error EDFs of several spaces on one axes (error in %, as in Radosavovic et al.)."""
    fig, axes = _figure(1, 1, (7.0, 4.5))
    ax = axes[0][0]
    finite = [e.errors for e in edfs.values() if e.errors.size]
    low = min((float(x.min()) for x in finite), default=0.0)
    high = max((float(x.max()) for x in finite), default=1.0)
    pad = max(0.02, 0.05 * (high - low))
    left, right = max(0.0, low - pad), min(1.0, high + pad)
    for k, (label, e) in enumerate(edfs.items()):
        x = np.concatenate([[left], e.errors, [right]])
        y = np.concatenate([[0.0], np.cumsum(e.weights), [np.sum(e.weights)]])
        failed = f", {e.failed} failed" if e.failed else ""
        ax.step(100 * x, y, where="post", color=f"C{k % 10}", linewidth=1.6,
                label=f"{label} (n={e.n}, median {100 * e.quantile(0.5):.1f}%{failed})")
    ax.set_xlim(100 * left, 100 * right)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("error (%)")
    ax.set_ylabel("cumulative prob. F(error)")
    ax.set_title(title or "error EDF of sampled architectures", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def _si(value: float) -> str:
    """1234567 -> '1.23M' (k, M, G)."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"
