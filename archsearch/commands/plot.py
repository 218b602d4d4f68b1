"""`archsearch plot RUN_DIR [--format png,svg]`: draw every picture that applies (issue 6).

The found cell as a graph, DARTS's α as heat maps and over the epochs, the search curve of
a multi-trial run, and its Pareto front where it has one (see `archsearch.plots`). Prints
the files it wrote, one per line; a directory that holds no run is a one-line error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("plot", help="draw a run's pictures: cells, α, search curves, "
                              "Pareto front")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    p.add_argument("--format", default=None, metavar="FORMATS",
                   help="comma-separated png and/or svg for every picture (default: PNG and "
                        "SVG for the cells, PNG for the plots)")
    p.set_defaults(run=handler)


def handler(args: argparse.Namespace) -> int:
    from archsearch.plots import plot_run
    from archsearch.plots._common import check_formats

    formats = None if args.format is None else check_formats(args.format.split(","))
    paths = plot_run(args.run_dir, formats)
    for path in paths:
        print(path)
    if not paths:
        print(f"archsearch: nothing to draw yet in {args.run_dir}")
    return 0
