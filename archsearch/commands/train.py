"""`archsearch train`: retrain a found or named cell (or any space's architecture) from
scratch with a recipe, or continue an interrupted training run with `--resume`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from archsearch import runs
from archsearch.commands._shared import check_resume_flags, common_arguments, out_dir, pick
from archsearch.errors import ConfigError
from archsearch.train.recipes import RECIPE_NAMES


def register(subparsers: Any) -> None:
    train = subparsers.add_parser("train", help="retrain a found or named cell from scratch")
    train.add_argument("arch", metavar="ARCH", nargs="?",
                       help="darts_v1, darts_v2, an arch.json or a run dir")
    common_arguments(train)
    train_arguments(train)
    train.set_defaults(run=handler)


def train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue an interrupted training run (settings from its config.json)")
    p.add_argument("--recipe", choices=RECIPE_NAMES,
                   help="quick (small data; default on digits) or paper (DARTS CIFAR-10: "
                        "C=36, 20 cells, 600 epochs, batch 96, auxiliary, drop-path 0.2, "
                        "cutout; default elsewhere); the flags below override it")
    p.add_argument("--auxiliary", action=argparse.BooleanOptionalAction,
                   help="auxiliary head after the cell at 2/3 depth")
    p.add_argument("--auxiliary-weight", type=float, help="its loss weight (0.4)")
    p.add_argument("--drop-path", type=float,
                   help="final drop-path rate, raised linearly over the epochs")
    p.add_argument("--cutout", action=argparse.BooleanOptionalAction,
                   help="cutout augmentation (16 px on 32×32 images, half the side below)")
    p.add_argument("--lr", type=float, help="initial learning rate (cosine schedule to 0)")
    p.add_argument("--weight-decay", type=float, help="SGD weight decay (3e-4)")
    p.add_argument("--grad-clip", type=float, help="max gradient norm (5; 0 = off)")
    p.add_argument("--label-smoothing", type=float, help="cross-entropy label smoothing (0)")
    p.add_argument("--val-fraction", type=float,
                   help=f"stratified part of the training split held out to keep the best "
                        f"weights (default {runs.VAL_FRACTION}; 0: the best are the last)")


def train_settings(args: argparse.Namespace, *, prefix: str = "") -> dict[str, Any]:
    """Training settings: the recipe (by --recipe, else by dataset) with the flags given
    put over it. With `prefix` ("retrain_": `search --retrain`) only the prefixed sizes,
    the data flags and --lr apply."""
    own = {} if prefix else {
        "batch_size": args.batch_size, "auxiliary": args.auxiliary,
        "auxiliary_weight": args.auxiliary_weight, "drop_path": args.drop_path,
        "cutout": args.cutout, "weight_decay": args.weight_decay,
        "grad_clip": args.grad_clip, "label_smoothing": args.label_smoothing}
    overrides = {"epochs": getattr(args, f"{prefix}epochs"),
                 "channels": getattr(args, f"{prefix}channels"),
                 "layers": getattr(args, f"{prefix}layers"),
                 "lr": getattr(args, "lr", None), **own}
    recipe = runs.resolve_recipe(args.dataset, getattr(args, "recipe", None), overrides)
    return {"dataset": args.dataset, "data_dir": args.data_dir, "seed": args.seed,
            "device": args.device, **recipe,
            "val_fraction": pick(getattr(args, "val_fraction", None), runs.VAL_FRACTION)}


def handler(args: argparse.Namespace) -> int:
    if args.resume is not None:
        if args.arch is not None:
            raise ConfigError(f"--resume {args.resume} takes the architecture from the run; "
                              f"leave out ARCH ({args.arch})")
        doc = runs.read_run_config(args.resume)
        if doc["command"] == "train":
            check_resume_flags(args, doc["settings"], train_settings(args))
        runs.resume_train(args.resume, progress=not args.quiet)
        return 0
    if args.arch is None:
        raise ConfigError("train needs ARCH (a named cell, an arch.json or a run directory) "
                          "or --resume RUN_DIR")
    arch = runs.resolve_arch(args.arch)
    darts_only = [flag for flag, value in (("--channels", args.channels),
                                           ("--layers", args.layers),
                                           ("--auxiliary", args.auxiliary or None))
                  if value is not None]
    if arch.space != "darts" and darts_only:
        raise ConfigError(f"{darts_only[0]} applies to DARTS cells; a {arch.space!r} "
                          "architecture is built by its own space")
    runs.run_train(arch, train_settings(args), out_dir(args), progress=not args.quiet,
                   overwrite=args.overwrite)
    return 0
