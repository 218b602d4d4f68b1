"""DARTS's architecture weights in pictures (Liu et al., arXiv:1806.09055, §2.1–2.2).

Each edge (i, j) of a cell mixes the candidate ops with weights softmax(α_{i,j}) (eq. 2); the
search log (`log.jsonl`) holds the raw α of both cells after every epoch. `alphas.png` is
a heat map of the final weights per cell (rows = edges in α-row order, columns = ops; the
ops the derived cell keeps are outlined), and `alphas_epochs.png` shows every edge's op
weights against the epoch, one small plot per edge, laid out as node × input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archsearch.errors import ArchsearchError, ConfigError
from archsearch.plots._common import darts_node_name, new_figure, op_colours, save_figure

CELLS = ("normal", "reduce")
CELL_TITLES = {"normal": "normal cell", "reduce": "reduction cell"}


@dataclass
class AlphaHistory:
    """softmax(α) of both cells after each logged epoch."""

    epochs: list[int]
    ops: tuple[str, ...]
    nodes: int
    weights: dict[str, np.ndarray]  # cell -> (epochs, edges, ops)

    def edges(self) -> list[tuple[int, int]]:
        """(node, input) per α row: node 2 reads 0, 1; node 3 reads 0, 1, 2; ..."""
        return [(i, j) for i in range(2, self.nodes + 2) for j in range(i)]

    def final(self, cell: str) -> np.ndarray:
        """(edges, ops) weights of the last epoch."""
        return self.weights[cell][-1]


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax over the last axis (shifted by the maximum for stability)."""
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def nodes_of(num_edges: int) -> int:
    """Intermediate nodes N of a cell with `num_edges` = Σ_{i=2}^{N+1} i = N(N+3)/2 edges."""
    n = int(round((-3 + math.sqrt(9 + 8 * num_edges)) / 2))
    if n < 1 or n * (n + 3) // 2 != num_edges:
        raise ConfigError(f"α has {num_edges} rows, which is no DARTS cell's edge count")
    return n


def alpha_history(records: Sequence[Mapping[str, Any]], ops: Sequence[str] | None = None,
                  *, source: str = "log.jsonl") -> AlphaHistory | None:
    """softmax(α) per epoch from the search log's records; None if no record holds α.

    Args:
        records: the log's records; those without an `alphas` entry are skipped.
        ops: the op names of the α columns (from config.json); None or a list of the wrong
            length gives generic names.
        source: named in errors.

    Raises:
        ConfigError: when α is not a pair of equally shaped numeric matrices throughout.
    """
    epochs, stacks = [], {cell: [] for cell in CELLS}
    for index, record in enumerate(records):
        alphas = record.get("alphas")
        if alphas is None:
            continue
        try:
            rows = {cell: np.asarray(alphas[cell], dtype=np.float64) for cell in CELLS}
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{source}: record {index + 1} has malformed 'alphas' (expected "
                              "{'normal': [[...]], 'reduce': [[...]]})") from None
        for cell, matrix in rows.items():
            if matrix.ndim != 2 or (stacks[cell] and matrix.shape != stacks[cell][0].shape):
                raise ConfigError(f"{source}: record {index + 1}: alphas[{cell!r}] has shape "
                                  f"{matrix.shape}, unlike the other epochs or not a matrix")
            stacks[cell].append(matrix)
        epochs.append(int(record.get("epoch", len(epochs) + 1)))
    if not epochs:
        return None
    num_edges, num_ops = stacks["normal"][0].shape
    names = tuple(ops) if ops is not None and len(ops) == num_ops else tuple(
        f"op{k}" for k in range(num_ops))
    return AlphaHistory(epochs, names, nodes_of(num_edges),
                        {cell: softmax(np.stack(stacks[cell])) for cell in CELLS})


def row_labels(history: AlphaHistory) -> list[str]:
    """One label per α row: input -> node, named as in the cell graph."""
    return [f"{darts_node_name(j)} → {i - 2}" for i, j in history.edges()]


def kept_ops(history: AlphaHistory) -> dict[str, set[tuple[int, int]]]:
    """(row, column) of the ops the derived cell keeps per cell (DARTS §2.4), or {} when
    the ops are not a DARTS op set that can be derived."""
    from archsearch.spaces.darts import DartsCellSpace

    try:
        space = DartsCellSpace(nodes=history.nodes, ops=history.ops)
        arch = space.derive({cell: np.log(history.final(cell)) for cell in CELLS})
    except ArchsearchError:
        return {}
    out: dict[str, set[tuple[int, int]]] = {}
    for cell in CELLS:
        out[cell] = {(row, history.ops.index(arch[f"{cell}.n{i}.e{j}"]))
                     for row, (i, j) in enumerate(history.edges())
                     if arch[f"{cell}.n{i}.e{j}"] != "none"}
    return out


# --- heat map -----------------------------------------------------------------------------
def draw_alphas(history: AlphaHistory, stem: Path, formats: Sequence[str] = ("png",)
                ) -> list[Path]:
    """The final-epoch heat maps of both cells, side by side, to `stem.<fmt>`."""
    from matplotlib.patches import Rectangle

    num_edges, num_ops = history.final("normal").shape
    fig = new_figure(2 * (1.5 + 0.62 * num_ops) + 1.0, 1.9 + 0.3 * num_edges,
                     layout="constrained")
    low = min(float(history.final(c).min()) for c in CELLS)
    high = max(float(history.final(c).max()) for c in CELLS)
    kept = kept_ops(history)
    axes = fig.subplots(1, 2)
    digits = 3 if high - low < 0.05 else 2  # near-uniform weights need the third digit
    image = None
    for ax, cell in zip(axes, CELLS, strict=True):
        weights = history.final(cell)
        image = ax.imshow(weights, cmap="viridis", vmin=low, vmax=high, aspect="auto")
        middle = (low + high) / 2
        for (r, c), value in np.ndenumerate(weights):
            ax.text(c, r, f"{value:.{digits}f}", ha="center", va="center", fontsize=6.5,
                    color="white" if value < middle else "black")
        for r, c in kept.get(cell, ()):
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="#d62728",
                                   linewidth=1.8))
        for boundary in np.cumsum(list(range(2, history.nodes + 1))):
            ax.axhline(boundary - 0.5, color="white", linewidth=1.5)
        ax.set_xticks(range(num_ops), history.ops, rotation=40, ha="right", fontsize=8)
        ax.set_yticks(range(num_edges), row_labels(history), fontsize=8)
        ax.set_title(f"{CELL_TITLES[cell]}: softmax(α), epoch {history.epochs[-1]}",
                     fontsize=10)
    fig.colorbar(image, ax=list(axes), fraction=0.04, pad=0.02, label="op weight")
    if kept:
        fig.supxlabel("outlined: the ops the derived cell keeps", fontsize=8, color="#d62728",
                      x=0.01, ha="left")
    return save_figure(fig, Path(stem), formats)


# --- weights over the epochs ---------------------------------------------------------------
def draw_alpha_epochs(history: AlphaHistory, stem: Path, formats: Sequence[str] = ("png",)
                      ) -> list[Path]:
    """Every edge's op weights against the epoch: per cell a grid of node (rows) × input
    (columns), one shared y scale, one legend of the ops."""
    from matplotlib.ticker import MaxNLocator

    rows, cols = history.nodes, history.nodes + 1
    sub_height_in = 1.35 * rows + 0.75
    width_in = 2.0 * cols + 0.6
    fig = new_figure(width_in, 2 * sub_height_in)
    colours = op_colours(history.ops)
    high = max(float(history.weights[c].max()) for c in CELLS)
    epochs = np.asarray(history.epochs)
    marker = "o" if len(epochs) <= 12 else None
    handles: dict[str, Any] = {}
    first_axes = None
    for subfig, cell in zip(fig.subfigures(2, 1), CELLS, strict=True):
        subfig.suptitle(CELL_TITLES[cell], fontsize=11, fontweight="bold", x=0.02, ha="left")
        axes = subfig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
        first_axes = first_axes if first_axes is not None else axes
        for row, (i, j) in enumerate(history.edges()):
            ax = axes[i - 2][j]
            for k, op in enumerate(history.ops):
                (line,) = ax.plot(epochs, history.weights[cell][:, row, k], color=colours[op],
                                  linestyle="--" if op == "none" else "-", linewidth=1.2,
                                  marker=marker, markersize=2.5)
                handles.setdefault(op, line)
            ax.set_title(f"{darts_node_name(j)} → {i - 2}", fontsize=8, pad=2)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.set_ylim(0, high * 1.05)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for i in range(rows):
            for j in range(i + 2, cols):
                axes[i][j].set_axis_off()
            axes[i][0].set_ylabel("weight", fontsize=8)
        for j in range(cols):
            axes[rows - 1][j].set_xlabel("epoch", fontsize=8)
        subfig.subplots_adjust(left=0.75 / width_in, right=1 - 0.15 / width_in,
                               bottom=0.62 / sub_height_in,
                               top=1 - 0.5 / sub_height_in, hspace=0.55, wspace=0.15)
    # The legend fills the empty slots right of node 0's two inputs (there are none with
    # a single node: then it goes below the last plot of the first row).
    free = cols - 2
    if free >= 1:
        first_axes[0][cols - 1].legend(list(handles.values()), list(handles), loc="upper right",
                                       fontsize=7.5, ncols=2 if free >= 2 else 1, title="op",
                                       title_fontsize=8, frameon=True)
    else:
        fig.legend(list(handles.values()), list(handles), loc="lower right", fontsize=7.5,
                   ncols=len(handles), title="op", title_fontsize=8)
    return save_figure(fig, Path(stem), formats)
