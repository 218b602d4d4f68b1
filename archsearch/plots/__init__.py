"""Pictures of runs: cells as graphs, DARTS's α, search curves, Pareto fronts (issue 6).

`plot_run(run_dir)` finds out what kind of run a directory holds and draws everything that
applies into it:

- cell_normal / cell_reduce (.png and .svg): the found cell(s) as graphs, for archs of the
  DARTS and NASNet spaces (`cell.png`/`.svg` for a NAS-Bench-201 cell);
- alphas.png and alphas_epochs.png: softmax(α) of a DARTS search, at the end and per epoch;
- search_curve.png: best-so-far against trials and seconds of a multi-trial search;
- the Pareto front, by `archsearch.pareto.plot_front`, where a run has a pareto.json.

Everything is drawn on matplotlib's Agg canvas (no display, no pyplot state) and written
atomically.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archsearch.plots._common import check_formats
from archsearch.plots._rundir import DARTS, MULTITRIAL, TRAIN, RunDir, open_run, space_for

CELL_FORMATS = ("png", "svg")
FIGURE_FORMATS = ("png",)

__all__ = ["plot_run"]


def plot_run(run_dir: str | Path, formats: Sequence[str] | None = None) -> list[Path]:
    """Draw every picture that applies to the run in `run_dir`, into `run_dir`.

    Args:
        run_dir: a DARTS search, training or multi-trial run directory (finished or not).
        formats: the formats of every picture, e.g. ("svg",); None: PNG and SVG for the
            cell graphs and PNG for the plots.

    Returns:
        The files written, in order.

    Raises:
        ConfigError: if `run_dir` holds no run, a file of it is malformed, or `formats`
            names something other than png and svg.
    """
    cells = check_formats(formats) if formats is not None else CELL_FORMATS
    figures = cells if formats is not None else FIGURE_FORMATS
    run = open_run(run_dir)
    paths: list[Path] = []
    arch = None
    if run.kind == DARTS:
        history = _alpha_history(run)
        if history is not None:
            from archsearch.plots.alphas import draw_alpha_epochs, draw_alphas

            paths += draw_alphas(history, run.path / "alphas", figures)
            paths += draw_alpha_epochs(history, run.path / "alphas_epochs", figures)
        arch = run.arch("arch.json") or _derived(history)
    elif run.kind == MULTITRIAL:
        records = run.jsonl("trials.jsonl")
        if records:
            from archsearch.plots.curves import curve_data, curve_title, draw_search_curve

            data = curve_data(records, run.settings, source=str(run.path / "trials.jsonl"))
            paths += draw_search_curve(data, run.path / "search_curve", figures,
                                       title=curve_title(data, run.settings))
        arch = run.arch("best_arch.json")
    elif run.kind == TRAIN:
        arch = run.trained_arch()
    if arch is not None:
        from archsearch.plots.cell_graph import cell_graphs, draw_cell

        space = space_for(arch, source=str(run.path))
        for stem, graph in cell_graphs(space, arch).items():
            paths += draw_cell(graph, run.path / stem, cells)
    paths += _pareto(run.path)
    return paths


def _alpha_history(run: RunDir) -> Any:
    from archsearch.plots.alphas import alpha_history

    ops = run.settings.get("ops")
    return alpha_history(run.jsonl("log.jsonl"), ops if isinstance(ops, list) else None,
                         source=str(run.path / "log.jsonl"))


def _derived(history: Any) -> Any:
    """The cell of the last logged α (a search still running has no arch.json yet)."""
    if history is None:
        return None
    import numpy as np

    from archsearch.errors import ArchsearchError
    from archsearch.spaces.darts import DartsCellSpace

    try:
        space = DartsCellSpace(nodes=history.nodes, ops=history.ops)
        # log of the softmax weights: logits whose softmax is exactly those weights
        return space.derive({cell: np.log(history.weights[cell][-1])
                             for cell in ("normal", "reduce")})
    except ArchsearchError:  # generic op names: not a space we can rebuild
        return None


def _pareto(run_dir: Path) -> list[Path]:
    """The Pareto front, drawn by `archsearch.pareto` when both it and pareto.json exist."""
    if not (run_dir / "pareto.json").is_file():
        return []
    try:
        module = importlib.import_module("archsearch.pareto")
    except ModuleNotFoundError as exc:
        if exc.name != "archsearch.pareto":
            raise
        return []
    plot_front = getattr(module, "plot_front", None)
    if plot_front is None:
        return []
    result = plot_front(run_dir)
    if result is None:
        return []
    if isinstance(result, str | Path):
        return [Path(result)]
    return [Path(p) for p in result]
