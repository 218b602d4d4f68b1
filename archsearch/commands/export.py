"""`archsearch export`: a run's or an architecture's network as JSON, ONNX, TorchScript or PyTorch.

    archsearch export RUN_OR_ARCH --format {json,onnx,torchscript,pytorch} [--out PATH]
                      [--image-size N] [--classes K] [--in-channels C]
                      [--channels C --layers L] [--seed S] [--overwrite]

RUN_OR_ARCH is a train run directory (its model.pt weights), a search run directory (its
retrain/model.pt if there is one, else its arch.json or best_arch.json with fresh weights),
a model file, an architecture JSON file or a named cell (darts_v1, darts_v2). The work is
`archsearch.export.export`; model exports are checked against PyTorch before being written.
Bad input: one line, exit 2; an export that fails its check: one line, exit 1; nothing is
written either way.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

FORMATS = ("json", "onnx", "torchscript", "pytorch")


def register(subparsers: Any) -> None:
    """Add the `export` subcommand."""
    p = subparsers.add_parser(
        "export", help="export a run's or an architecture's network (JSON, ONNX, TorchScript, "
                       "PyTorch), checked against PyTorch")
    p.add_argument("source", metavar="RUN_OR_ARCH",
                   help="train run dir, search run dir, model.pt, arch JSON file, darts_v1 or "
                        "darts_v2")
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="json: the architecture; onnx / torchscript: an inference graph; "
                        "pytorch: weights + architecture (rebuild with "
                        "archsearch.export.load_model)")
    p.add_argument("--out", type=Path,
                   help="output file, or a folder for the default name (default: "
                        "runs/export-<time>/)")
    p.add_argument("--image-size", type=int, metavar="N",
                   help="side of the square input (default: the run's, else the space's)")
    p.add_argument("--classes", type=int, metavar="K",
                   help="classifier outputs of an architecture without weights")
    p.add_argument("--in-channels", type=int, metavar="C",
                   help="image channels of an architecture without weights")
    p.add_argument("--channels", type=int, metavar="C",
                   help="DARTS architecture without weights: C of the first cells (default 36)")
    p.add_argument("--layers", type=int, metavar="L",
                   help="DARTS architecture without weights: number of cells (default 20)")
    p.add_argument("--seed", type=int, default=0,
                   help="initialises a network without weights; draws the check's inputs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export, print what was written and how closely it matches PyTorch."""
    from archsearch.export import ExportCheckError, export

    out = args.out or Path("runs") / f"export-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        result = export(args.source, out, args.format, image_size=args.image_size,
                        num_classes=args.classes, in_channels=args.in_channels,
                        channels=args.channels, layers=args.layers, seed=args.seed,
                        overwrite=args.overwrite)
    except ExportCheckError as exc:
        print(f"archsearch: export failed: {exc}", file=sys.stderr)
        return 1
    for note in result.notes:
        print(f"archsearch: note: {note}", file=sys.stderr)
    print(result.summary())
    return 0
