"""`archsearch latency-table`: build a per-op latency lookup table on this machine.

    archsearch latency-table --space NAME --out table.json [--space-arg K=V ...]
                             [--build-arg K=V ...] [--input-size N] [--in-channels C]
                             [--classes K] [--device cpu] [--threads T] [--clock wall|cpu]
                             [--warmup W] [--repeats R] [--calibrate N] [--samples N]
                             [--seed S] [--overwrite] [--json] [--quiet]

Times every op of the space at every shape it takes in the networks of `--build-arg`
settings (`archsearch.hardware.LatencyTable`, ProxylessNAS-style), saves the table, then
reports how well the sum of an arch's entries predicts its measured end-to-end latency on
`--samples` randomly drawn archs (median and mean absolute relative error). With
`--calibrate N` a latency ratio is first fitted on N other archs and saved in the table.
Bad input ends with one line and exit code 2, before anything is timed or written.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `latency-table` subcommand."""
    p = subparsers.add_parser(
        "latency-table", help="time every op of a space on this device into a latency lookup "
                              "table, and report how well it predicts measured latency")
    p.add_argument("--space", required=True, help="a registered space: darts, nb201, "
                   "mobilenet, chain, ... (see `archsearch list spaces`)")
    p.add_argument("--space-arg", action="append", metavar="KEY=VALUE",
                   help="space setting, e.g. --space-arg layers=3 (JSON values; repeatable)")
    p.add_argument("--build-arg", action="append", metavar="KEY=VALUE",
                   help="network setting, e.g. --build-arg channels=16 (default: the search's "
                        "defaults for the space)")
    p.add_argument("--input-size", type=int, default=32, metavar="N",
                   help="side of the square input (default 32; 8 for the built-in digits)")
    p.add_argument("--in-channels", type=int, metavar="C",
                   help="image channels (default: the space's, else 3)")
    p.add_argument("--classes", type=int, metavar="K",
                   help="classifier outputs (default: the space's, else 10)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps ...")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads while timing (default 1), recorded in the table")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time (default); cpu: the thread's CPU time, steadier "
                        "on a busy machine (one thread on the CPU only)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds (default 3)")
    p.add_argument("--repeats", type=int, default=20, help="timed rounds (default 20)")
    p.add_argument("--calibrate", type=int, default=0, metavar="N",
                   help="fit a latency ratio on N measured archs (default 0: none)")
    p.add_argument("--samples", type=int, default=20, metavar="N",
                   help="archs to check the predictor against (default 20; 0: no check)")
    p.add_argument("--seed", type=int, default=0, help="draws the checked archs")
    p.add_argument("--out", type=Path, required=True, help="the table's JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build, save and check the table; print a summary."""
    from archsearch.hardware import LatencyTable, evaluate_predictor
    from archsearch.runs import resolve_device

    space, build_kwargs = _settings(args)
    device = resolve_device(args.device)
    start = time.perf_counter()
    table = LatencyTable.build(
        space, build_kwargs=build_kwargs, input_size=args.input_size,
        in_channels=build_kwargs["in_channels"], device=device, threads=args.threads,
        warmup=args.warmup, repeats=args.repeats, clock=args.clock, seed=args.seed,
        progress=not (args.quiet or args.json))
    build_s = time.perf_counter() - start
    calibration, held_out = _archs(space, args)
    if calibration:
        table.calibrate(calibration)
    table.save(args.out)
    report = evaluate_predictor(table, held_out) if held_out else None
    summary = {"table": str(args.out), "space": space.name, "entries": len(table.entries),
               "covering_archs": table.covering, "exact_coverage": table.exact_coverage,
               "device": table.device, "device_name": table.device_name,
               "threads": table.threads, "clock": table.clock, "build_seconds": build_s,
               "calibration": None if table.calibration is None
               else table.calibration.to_json(),
               "predictor": None if report is None else report.to_json()}
    print(json.dumps(summary) if args.json else _text(summary))
    return 0


def _settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The space and build settings; every check that can fail happens here."""
    from archsearch.errors import ConfigError
    from archsearch.multitrial import BUILD_DEFAULTS, create_space, parse_assignments

    for flag, value, low in (("--input-size", args.input_size, 1), ("--threads", args.threads, 1),
                             ("--repeats", args.repeats, 1), ("--warmup", args.warmup, 0),
                             ("--samples", args.samples, 0), ("--calibrate", args.calibrate, 0)):
        if value < low:
            raise ConfigError(f"{flag} must be at least {low}, got {value}")
    if args.clock == "cpu" and (args.threads != 1 or args.device != "cpu"):
        raise ConfigError("--clock cpu measures one thread's CPU time: use it with "
                          "--threads 1 on --device cpu")
    if args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a folder; give the table's file name")
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"--out {args.out} exists (pass --overwrite to replace it)")
    space = create_space(args.space, parse_assignments(args.space_arg, flag="--space-arg"))
    build = {**BUILD_DEFAULTS.get(args.space, {}),
             **parse_assignments(args.build_arg, flag="--build-arg")}
    for key, flag, value, default in (
            ("in_channels", "--in-channels", args.in_channels, 3),
            ("num_classes", "--classes", args.classes, 10)):
        if value is not None and build.get(key, value) != value:
            raise ConfigError(f"{flag} {value} contradicts --build-arg {key}={build[key]}")
        chosen = value if value is not None else build.get(
            key, space.space_args.get(key, default))
        if not isinstance(chosen, int) or isinstance(chosen, bool) or chosen < 1:
            raise ConfigError(f"{flag} must be a positive integer, got {chosen!r}")
        build[key] = chosen
    _check_build(space, build)
    return space, build


def _check_build(space: Any, build: dict[str, Any]) -> None:
    """Build one network now, so wrong build settings fail before any timing."""
    import numpy as np
    import torch

    from archsearch.errors import ArchsearchError, ConfigError

    try:
        with torch.random.fork_rng(devices=[]):
            space.build(space.sample(np.random.default_rng(0)), **build)
    except ArchsearchError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"space {space.name!r} cannot build networks with "
                          f"{json.dumps(build)}: {exc}") from None


def _archs(space: Any, args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """(calibration archs, held-out archs to check): distinct, drawn with --seed."""
    import numpy as np

    rng = np.random.default_rng(args.seed)
    wanted, seen, archs = args.calibrate + args.samples, set(), []
    for _ in range(100 * max(wanted, 1)):
        if len(archs) == wanted:
            break
        arch = space.sample(rng)
        if arch.fingerprint() not in seen:
            seen.add(arch.fingerprint())
            archs.append(arch)
    return archs[:args.calibrate], archs[args.calibrate:]


def _text(s: dict[str, Any]) -> str:
    lines = [f"latency table: {s['entries']} entries from {s['covering_archs']} archs of "
             f"{s['space']} on {s['device']} ({s['device_name']}, {s['threads']} thread(s), "
             f"{s['clock']} clock), {s['build_seconds']:.1f} s -> {s['table']}"]
    if not s["exact_coverage"]:
        lines.append(f"note: no covering set is known for space {s['space']!r}; archs whose "
                     "ops the table lacks cannot be predicted")
    if s["calibration"] is not None:
        c = s["calibration"]
        lines.append(f"calibrated on {len(c['archs'])} archs: measured ≈ {c['slope']:.3f} × "
                     "sum of entries")
    p = s["predictor"]
    if p is not None:
        lines.append(f"predicted vs measured end-to-end latency on {len(p['archs'])} other "
                     f"archs: median |error| {100 * p['median_abs_error']:.1f} %, mean "
                     f"{100 * p['mean_abs_error']:.1f} %, max {100 * p['max_abs_error']:.1f} %")
    return "\n".join(lines)
