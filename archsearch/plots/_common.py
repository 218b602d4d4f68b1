"""Helpers shared by the pictures: figures on the Agg canvas, atomic saving, op colours.

Figures are made with `matplotlib.figure.Figure` and an Agg canvas directly (no pyplot), so
drawing needs no display and never changes the caller's backend or leaks figures. Saving
goes through a BytesIO and `atomic_write_bytes`, so a crash leaves no half-written picture.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archsearch.errors import ConfigError
from archsearch.storage import atomic_write_bytes

FORMATS = ("png", "svg")
DPI = 150
# A palette of 10 distinguishable colours (matplotlib's tab10), one per op of a space, so
# one op has one colour in the cell graphs and in the α plots.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
NONE_COLOUR = "#000000"
# Deterministic SVG: fixed ids, no date; text stays text (searchable, smaller files).
_RC = {"svg.hashsalt": "archsearch", "svg.fonttype": "none"}


def new_figure(width_in: float, height_in: float, *, layout: str | None = None) -> Any:
    """A matplotlib Figure on an Agg canvas, `width_in` × `height_in` inches (`layout`:
    None, or "constrained" to let matplotlib fit titles, labels and colour bars)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The picture formats asked for, checked: a non-empty subset of png and svg."""
    out = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    unknown = [f for f in out if f not in FORMATS]
    if unknown or not out:
        raise ConfigError(f"--format must list png and/or svg, got {','.join(formats)!r}")
    return out


def save_figure(fig: Any, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Write `fig` as `stem.<fmt>` for each format, each file atomically; returns the paths."""
    from matplotlib import rc_context

    paths = []
    for fmt in formats:
        buffer = io.BytesIO()
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        with rc_context(_RC):
            fig.savefig(buffer, format=fmt, metadata=metadata)
        data = buffer.getvalue()
        paths.append(atomic_write_bytes(stem.with_name(f"{stem.name}.{fmt}"),
                                        lambda f, data=data: f.write(data)))
    return paths


def op_colours(ops: Sequence[str]) -> dict[str, str]:
    """One colour per op, in the space's op order; `none` is black (it means "no edge")."""
    colours: dict[str, str] = {}
    real = [op for op in ops if op != "none"]
    for k, op in enumerate(real):
        colours[op] = PALETTE[k % len(PALETTE)]
    colours["none"] = NONE_COLOUR
    return colours


def darts_node_name(index: int, *, math: bool = True) -> str:
    """DARTS Fig. 1 naming: inputs c_{k-2}, c_{k-1}; intermediate nodes 0, 1, ..."""
    if index == 0:
        return r"$c_{k-2}$" if math else "c_{k-2}"
    if index == 1:
        return r"$c_{k-1}$" if math else "c_{k-1}"
    return str(index - 2)
