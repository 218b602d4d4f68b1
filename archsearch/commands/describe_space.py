"""`archsearch describe-space`: compare search spaces by sampling them, before searching.

    archsearch describe-space --space mobilenet --space small=mobilenet
        --space-arg small.width_mults=[0.5] [--build-arg last_channels=64] [--samples 200]
        [--train 20 --epochs 1] [--dataset digits] [--seed 0] [--out DIR] [--quiet]

Writes DIR/costs.csv and DIR/costs.png (the MAC and parameter distributions of `--samples`
uniformly sampled architectures per space, as MCUNet's TinyNAS compares spaces), and with
`--train N` DIR/errors.csv and DIR/edf.png (the error EDF of N sampled architectures trained
for `--epochs`, as in Radosavovic et al. 2019). See `archsearch.space_stats`.

`--space LABEL=NAME` names a space so that one registered space can appear twice with
different settings; `--space-arg LABEL.KEY=VALUE` and `--build-arg LABEL.KEY=VALUE` set one
space's options (the `LABEL.` may be left out when there is one space). Build settings start
from those `archsearch search` uses (`multitrial.BUILD_DEFAULTS`).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

from archsearch.errors import ConfigError

LABEL = re.compile(r"^[A-Za-z0-9_\-]+$")
ERROR_LEVELS = (0.05, 0.1, 0.2, 0.5)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("describe-space", help="MAC/parameter distributions and error "
                              "EDFs of sampled architectures, to compare spaces")
    p.add_argument("--space", action="append", required=True, metavar="[LABEL=]NAME",
                   help="a registered space (repeatable; see `archsearch list spaces`)")
    p.add_argument("--space-arg", action="append", metavar="[LABEL.]KEY=VALUE",
                   help="space setting, e.g. small.width_mults=[0.5] (JSON values)")
    p.add_argument("--build-arg", action="append", metavar="[LABEL.]KEY=VALUE",
                   help="network setting, e.g. last_channels=64")
    p.add_argument("--samples", type=int, default=200,
                   help="architectures sampled per space for the costs (default 200)")
    p.add_argument("--train", type=int, default=0, metavar="N",
                   help="architectures trained per space for the error EDF (default 0: "
                        "costs only)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per trained arch (default 3)")
    p.add_argument("--dataset", default="digits", help="default: digits (built in)")
    p.add_argument("--data-dir", default=None, help="where the dataset lives (not digits)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="where to train (default cpu)")
    p.add_argument("--out", type=Path, help="default: runs/describe-space-<time>")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier output")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def parse_spaces(items: list[str]) -> dict[str, str]:
    """`["mobilenet", "small=mobilenet"]` -> {"mobilenet": "mobilenet", "small": "mobilenet"}."""
    spaces: dict[str, str] = {}
    for item in items:
        label, sep, name = item.partition("=")
        label, name = label.strip(), name.strip() if sep else label.strip()
        if not LABEL.match(label) or not name:
            raise ConfigError(f"--space expects NAME or LABEL=NAME (letters, digits, _ or -), "
                              f"got {item!r}")
        if label in spaces:
            raise ConfigError(f"--space {label!r} is given twice; name them LABEL=NAME")
        spaces[label] = name
    return spaces


def split_assignments(items: list[str] | None, labels: list[str], *,
                      flag: str) -> dict[str, dict[str, Any]]:
    """`LABEL.KEY=VALUE` items -> {label: {key: value}} (JSON values, else strings)."""
    from archsearch.multitrial import parse_assignments

    out: dict[str, dict[str, Any]] = {label: {} for label in labels}
    for item in items or []:
        key, sep, value = item.partition("=")
        label, dot, name = key.partition(".")
        if not dot:
            if len(labels) != 1:
                raise ConfigError(f"{flag} {item!r}: say which space, as LABEL.KEY=VALUE "
                                  f"(spaces: {', '.join(labels)})")
            label, name = labels[0], key
        if label not in out:
            raise ConfigError(f"{flag} {item!r}: no space labelled {label!r} "
                              f"(spaces: {', '.join(labels)})")
        out[label].update(parse_assignments([f"{name}{sep}{value}"], flag=flag))
    return out


def _check_counts(args: argparse.Namespace) -> None:
    for flag, value, low in (("--samples", args.samples, 1), ("--train", args.train, 0),
                             ("--epochs", args.epochs, 1)):
        if value < low:
            raise ConfigError(f"{flag} must be at least {low}, got {value}")


def _out_dir(args: argparse.Namespace) -> Path:
    out = args.out or Path("runs") / f"describe-space-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.overwrite)):
        raise ConfigError(f"--out {out} already exists and is not empty; choose another "
                          "directory or pass --overwrite")
    return out


def run(args: argparse.Namespace) -> int:
    """Check everything, count costs, write them; then train and write the EDFs."""
    from archsearch import multitrial, space_stats
    from archsearch.data import load_dataset
    from archsearch.storage import prepare_run_dir

    _check_counts(args)
    device = _device(args.device)
    names = parse_spaces(args.space)
    labels = list(names)
    space_args = split_assignments(args.space_arg, labels, flag="--space-arg")
    build_args = split_assignments(args.build_arg, labels, flag="--build-arg")
    spaces = {label: multitrial.create_space(name, space_args[label])
              for label, name in names.items()}
    out = _out_dir(args)
    data = load_dataset(args.dataset, args.data_dir, seed=args.seed)
    builds = {label: {**multitrial.BUILD_DEFAULTS.get(names[label], {}), **build_args[label]}
              for label in labels}
    progress = not args.quiet
    costs = {label: space_stats.cost_distribution(
        space, args.samples, seed=args.seed, input_shape=tuple(data.x_train.shape[1:]),
        build_kwargs={**builds[label], "num_classes": data.num_classes,
                      "in_channels": data.in_channels}, progress=progress)
        for label, space in spaces.items()}
    out = prepare_run_dir(out, overwrite=args.overwrite)
    space_stats.write_csv(out / "costs.csv", costs)
    space_stats.write_png(out / "costs.png", space_stats.plot_costs_png(costs))
    errors = {}
    if args.train:
        errors = {label: space_stats.error_edf(
            space, args.train, data, seed=args.seed, epochs=args.epochs,
            build_kwargs=builds[label], device=device, progress=progress)
            for label, space in spaces.items()}
        edfs = {label: space_stats.edf([r.error for r in rows]) for label, rows in errors.items()}
        space_stats.write_csv(out / "errors.csv", errors)
        title = (f"error EDF: {args.train} sampled archs per space, {args.epochs} epoch(s) "
                 f"on {data.name}")
        space_stats.write_png(out / "edf.png", space_stats.plot_edf_png(edfs, title=title))
    for label in labels:
        print(summary(label, names[label], costs[label], errors.get(label)))
    files = "costs.csv, costs.png" + (", errors.csv, edf.png" if args.train else "")
    print(f"{files} in {out}")
    return 0


def _device(name: str) -> Any:
    from archsearch.runs import resolve_device

    return resolve_device(name)


def summary(label: str, name: str, costs: list[Any], errors: list[Any] | None) -> str:
    """A few lines per space: cost quantiles, and the error EDF's median and F at levels."""
    import numpy as np

    from archsearch.space_stats import _si, edf

    title = label if label == name else f"{label} ({name})"
    lines = [f"{title}: {len(costs)} sampled archs"]
    for field, what in (("macs", "MACs"), ("num_params", "params")):
        v = np.asarray([getattr(r, field) for r in costs], dtype=float)
        q10, q50, q90 = np.quantile(v, [0.1, 0.5, 0.9])
        lines.append(f"  {what:<7} median {_si(q50):>7}  10-90%: {_si(q10)}-{_si(q90)}  "
                     f"(min {_si(v.min())}, max {_si(v.max())})")
    if errors:
        e = edf([r.error for r in errors])
        under = ", ".join(f"{100 * level:g}%: {e(level):.2f}" for level in ERROR_LEVELS)
        failed = f", {e.failed} failed" if e.failed else ""
        lines.append(f"  error   median {100 * e.quantile(0.5):.1f}% over {e.n} trained"
                     f"{failed}; fraction under {under}")
    return "\n".join(lines)
