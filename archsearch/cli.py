"""The `archsearch` command line: a thin layer over `archsearch.runs`.

    archsearch search  [--dataset digits] [--order first|second] [--retrain] ...
    archsearch train   ARCH [--recipe quick|paper] [--auxiliary] [--drop-path P] [--cutout] ...
    archsearch train   --resume RUN_DIR
    archsearch profile ARCH [--imagenet] [--classes K] [--auxiliary] [--json]
    archsearch search  --strategy {grid,random,evolution,rl,bo} --space {darts,nasnet,chain}
                       [--trials N] [--time-limit S] [--evaluator train|proxy] [--resume DIR]
    archsearch list    {spaces,strategies} [--json]
    archsearch bench   --benchmark nb201 --dataset {cifar10,cifar100,imagenet16}
                       --strategies random,evolution,rl,bo --seeds R --queries Q
                       [--seconds S] [--fidelity {200,12}] [--json] [--proxy-correlation]

ARCH is a named cell (darts_v1, darts_v2), an architecture JSON file, or a search run
directory. Bad input ends with a one-line error on stderr and exit code 2; a run stopped
by a diverging loss ends with one line and exit code 1, Ctrl-C with exit code 130.
`--resume RUN_DIR` continues an interrupted search (DARTS, ProxylessNAS or multi-trial) or
training run from its last checkpoint with the settings of its config.json; resuming a
finished run says so and exits 0.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from archsearch import multitrial, runs
from archsearch.data import DATASET_NAMES
from archsearch.errors import ArchsearchError, ConfigError
from archsearch.ops import DARTS_OPS
from archsearch.supernet import HVPS, ORDERS
from archsearch.train.recipes import RECIPE_NAMES

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _common(p: argparse.ArgumentParser, *, data: bool = True) -> None:
    if data:
        p.add_argument("--dataset", choices=DATASET_NAMES, default="digits",
                       help="digits is built in; the others read --data-dir (default: digits)")
        p.add_argument("--data-dir", default=None,
                       help="cifar10: the python-pickle batch folder; npz: the .npz file; "
                            "folder: a tree of class folders of images")
        p.add_argument("--epochs", type=int, help="default: 8 search / 30 train on digits, "
                                                  "else the paper's 50 / 600")
        p.add_argument("--batch-size", type=int)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps ...")
        p.add_argument("--out", type=Path, help="run directory (default: runs/<command>-<time>)")
        p.add_argument("--overwrite", action="store_true",
                       help="replace the files of an existing run directory")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--channels", type=int, help="C of the first cells")
    p.add_argument("--layers", type=int, help="number of cells")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="archsearch", description="Neural architecture search: DARTS on "
                     "your data, retraining, profiling.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    search = sub.add_parser("search", help="search an architecture on a dataset (DARTS by "
                            "default; --strategy for multi-trial search)")
    _common(search)
    search.add_argument("--strategy", default="darts",
                        help="darts (default) or proxyless (one-shot), or a multi-trial "
                             "strategy: grid, random, "
                             "evolution, nsga2, rl, bo (see `archsearch list strategies`)")
    search.add_argument("--space", default="darts",
                        help="search space for multi-trial strategies: darts (default), nasnet, "
                             "chain (see `archsearch list spaces`)")
    search.add_argument("--space-arg", action="append", metavar="KEY=VALUE",
                        help="space setting, e.g. --space-arg layers=3 (JSON values; repeatable)")
    search.add_argument("--strategy-arg", action="append", metavar="KEY=VALUE",
                        help="strategy setting, e.g. --strategy-arg population=10 (repeatable)")
    search.add_argument("--build-arg", action="append", metavar="KEY=VALUE",
                        help="setting of each trial's network, e.g. --build-arg channels=16")
    search.add_argument("--evaluator", choices=("train", "proxy"), default="train",
                        help="multi-trial: train each arch for --epochs (default) or score it "
                             "with a zero-cost proxy")
    search.add_argument("--proxy", default="synflow",
                        help="with --evaluator proxy: synflow, naswot, grad_norm, snip or all")
    search.add_argument("--trials", type=int, help="multi-trial budget: evaluations "
                        "(default 20 unless --time-limit is given)")
    search.add_argument("--time-limit", type=float, metavar="SECONDS",
                        help="multi-trial budget: wall-clock seconds")
    search.add_argument("--objective", default=None,
                        help="metric to optimise (default val_acc; the proxy's name with "
                             "--evaluator proxy)")
    search.add_argument("--minimize", action="store_true", help="minimise --objective")
    search.add_argument("--objectives", metavar="METRIC:DIR,...",
                        help="multi-trial, several objectives, e.g. val_acc:max,macs:min: "
                             "search the Pareto front (pareto.json, pareto.png) with nsga2 "
                             "(or random/grid); cost metrics come from the cost model")
    search.add_argument("--max-params", type=float, metavar="N",
                        help="multi-trial: reject (before training) archs with more parameters")
    search.add_argument("--max-macs", type=float, metavar="N",
                        help="multi-trial: reject archs with more MACs (one input)")
    search.add_argument("--max-latency-ms", type=float, metavar="MS",
                        help="multi-trial: reject archs slower than this (median measured "
                             "latency at batch 1 on --device)")
    search.add_argument("--reward-cost", choices=("num_params", "macs", "latency_ms"),
                        help="multi-trial: MnasNet reward ACC × (COST / target)^w instead of "
                             "the plain objective")
    search.add_argument("--reward-target", type=float, metavar="T",
                        help="with --reward-cost: the target cost T")
    search.add_argument("--reward-weight", type=float, default=-0.07, metavar="W",
                        help="with --reward-cost: the exponent w (default -0.07, MnasNet)")
    search.add_argument("--lr", type=float, help="multi-trial: learning rate of each trial")
    search.add_argument("--workers", type=int, default=1, metavar="N",
                        help="multi-trial: evaluate up to N trials at once, on a local Ray "
                             "cluster (pip install 'archsearch[ray]'), else on local processes "
                             "(default 1: in this process)")
    search.add_argument("--ray-address", metavar="ADDR",
                        help="with --workers: run the trials on this existing Ray cluster "
                             "(auto, ray://HOST:10001, ...)")
    search.add_argument("--cpus-per-trial", type=float, default=1.0, metavar="C",
                        help="with --workers: CPUs each trial reserves (and its torch threads)")
    search.add_argument("--gpus-per-trial", type=float, default=0.0, metavar="G",
                        help="with Ray workers: GPUs each trial reserves (0.5 shares one; "
                             "needs --device cuda)")
    search.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue an interrupted search, DARTS or multi-trial (settings "
                             "come from its config.json; for multi-trial, --trials/--time-limit "
                             "may extend the budget)")
    search.add_argument("--nodes", type=int, default=4, help="intermediate nodes per cell")
    search.add_argument("--ops", default=",".join(DARTS_OPS),
                        help="comma-separated candidate ops, in α-column order")
    search.add_argument("--order", choices=ORDERS, default="first")
    search.add_argument("--hvp", choices=HVPS, default="finite-difference",
                        help="second order: Hessian-vector product by finite differences "
                             "(the paper) or exactly by double backward")
    search.add_argument("--cost-weight", type=float, default=0.0, metavar="LAMBDA",
                        help="DARTS, proxyless: add LAMBDA · expected MACs (or latency with "
                             "--latency-table; relative to uniform α) to the architecture "
                             "loss, pulling the search to cheaper ops (default 0)")
    search.add_argument("--latency-table", metavar="TABLE.json",
                        help="a table from `archsearch latency-table`: multi-trial searches "
                             "predict latency_ms from it instead of timing each network; "
                             "DARTS/proxyless penalise expected latency with --cost-weight")
    search.add_argument("--retrain", action="store_true",
                        help="then retrain the found cell from scratch and report test accuracy")
    search.add_argument("--retrain-epochs", type=int)
    search.add_argument("--retrain-channels", type=int)
    search.add_argument("--retrain-layers", type=int)

    train = sub.add_parser("train", help="retrain a found or named cell from scratch")
    train.add_argument("arch", metavar="ARCH", nargs="?",
                       help="darts_v1, darts_v2, an arch.json or a run dir")
    _common(train)
    _train_arguments(train)

    prof = sub.add_parser("profile", help="parameters and MACs of a cell's network")
    prof.add_argument("arch", metavar="ARCH", help="darts_v1, darts_v2, an arch.json or a run dir")
    _common(prof, data=False)
    prof.add_argument("--imagenet", action="store_true",
                      help="the ImageNet network (C=48, 14 cells, 224×224) instead of CIFAR's")
    prof.add_argument("--classes", type=int, help="default 10, or 1000 with --imagenet")
    prof.add_argument("--auxiliary", action="store_true", help="include the auxiliary head")
    prof.add_argument("--json", action="store_true", help="print JSON")
    lst = sub.add_parser("list", help="the registered search spaces or strategies")
    lst.add_argument("kind", choices=("spaces", "strategies"))
    lst.add_argument("--json", action="store_true", help="print JSON (defaults, exact sizes)")
    _bench_arguments(sub.add_parser("bench", help="compare search strategies on the "
                                    "NAS-Bench-201 tables (many seeds in minutes)"))
    for module in command_modules():
        module.register(sub)
    return parser


def _train_arguments(p: argparse.ArgumentParser) -> None:
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


def command_modules() -> list[ModuleType]:
    """The subcommands that live in `archsearch/commands/<name>.py`, in name order.

    Each module has `register(subparsers)`, which adds its parser and sets `run=handler`
    as a parser default; the handler takes the parsed arguments and returns an exit code.
    Modules import their heavy dependencies inside the handler, so `--help` stays fast.
    """
    package = importlib.import_module("archsearch.commands")
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                   if not m.name.startswith("_"))
    return [importlib.import_module(f"archsearch.commands.{name}") for name in names]


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", choices=("nb201",), default="nb201")
    p.add_argument("--dataset", choices=("cifar10", "cifar100", "imagenet16"),
                   default="cifar10")
    p.add_argument("--strategies", default="random,evolution,rl,bo",
                   help="comma-separated: random, evolution, rl, bo, grid, proxy-evolution, "
                        "and with --seconds sh, hyperband (default random,evolution,rl,bo)")
    p.add_argument("--seeds", type=int, default=20, help="runs per strategy (default 20)")
    p.add_argument("--queries", type=int,
                   help="budget: distinct cells evaluated per run (default 150 without --seconds)")
    p.add_argument("--seconds", type=float,
                   help="budget: simulated training seconds per run (the table's cost model)")
    p.add_argument("--fidelity", type=int, choices=(200, 12), default=200,
                   help="training epochs of the accuracies the search sees (default 200)")
    p.add_argument("--strategy-arg", action="append", metavar="STRATEGY.KEY=VALUE",
                   help="strategy setting, e.g. evolution.population=50 (repeatable)")
    p.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--data-dir", help="folder of the NAS-Bench-201 CSV files (default: "
                                      "$ARCHSEARCH_NB201_DIR, else ../shared/data/nb201)")
    p.add_argument("--out", type=Path, help="where bench.json, curves.csv and curves.png go "
                                            "(default runs/bench-<time>)")
    p.add_argument("--proxy-correlation", action="store_true",
                   help="only report the Spearman correlation of the NASWOT proxy with "
                        "validation and test accuracy")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# One-shot methods own their loop and search the DARTS cell space; any other --strategy is
# a multi-trial strategy.
ONE_SHOT = ("darts", "proxyless")


def _path_or_none(path: str | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def _out_dir(args: argparse.Namespace) -> Path:
    return args.out or Path("runs") / f"{args.command}-{time.strftime('%Y%m%d-%H%M%S')}"


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _search(args: argparse.Namespace) -> int:
    if args.resume is not None:
        doc = runs.read_run_config(args.resume)
        if doc["command"] != "search":
            raise ConfigError(f"--resume {args.resume} is a {doc['command']} run; continue it "
                              f"with `archsearch {doc['command']} --resume {args.resume}`")
        if "strategy" in doc["settings"]:
            return _multitrial(args)
        _check_resume_flags(args, doc["settings"], _search_settings(args))
        runs.resume_search(args.resume, progress=not args.quiet)
        return 0
    if args.strategy not in ONE_SHOT:
        return _multitrial(args)
    settings = _search_settings(args)
    if settings["retrain"] is not None:  # fail before a long search, not after it
        runs.check_train_settings(settings["retrain"])
    out = _out_dir(args)
    arch = runs.run_search(settings, out, progress=not args.quiet, overwrite=args.overwrite)
    if settings["retrain"] is not None:
        runs.run_train(arch, settings["retrain"], out / "retrain", progress=not args.quiet,
                       overwrite=args.overwrite)
    return 0


def _search_settings(args: argparse.Namespace) -> dict[str, Any]:
    method = args.strategy if args.strategy in ONE_SHOT else "darts"
    if args.space != "darts":
        raise ConfigError(f"--strategy {method} searches the darts space, not {args.space!r}")
    if method == "proxyless" and (args.order != "first" or args.hvp != "finite-difference"):
        raise ConfigError("--order and --hvp apply to DARTS; ProxylessNAS estimates the "
                          "architecture gradient through binary gates")
    d = runs.defaults_for(args.dataset, runs.SEARCH_DEFAULTS)
    return {"method": method, "latency_table": _path_or_none(args.latency_table),
            "dataset": args.dataset, "data_dir": args.data_dir, "seed": args.seed,
            "device": args.device, "nodes": args.nodes,
            "ops": [op.strip() for op in args.ops.split(",") if op.strip()],
            "order": args.order, "hvp": args.hvp, "cost_weight": args.cost_weight,
            "epochs": _pick(args.epochs, d["epochs"]),
            "channels": _pick(args.channels, d["channels"]),
            "layers": _pick(args.layers, d["layers"]),
            "batch_size": _pick(args.batch_size, d["batch_size"]),
            # kept so that --resume can continue (or start) the retraining as well
            "retrain": _train_settings(args, prefix="retrain_") if args.retrain else None}


_NOT_SETTINGS = {"command", "run", "resume", "out", "overwrite", "quiet", "arch"}


def _check_resume_flags(args: argparse.Namespace, stored: dict[str, Any],
                        given: dict[str, Any]) -> None:
    """Settings of a resumed run come from its config.json; a flag that asks for another
    value, or that a resumed run cannot use, is an error. A flag counts as given when its
    value differs from the parser's default (so repeating a run's own value is accepted)."""
    if args.overwrite:
        raise ConfigError("--resume continues a run; --overwrite would replace it")
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        raise ConfigError(f"--resume {args.resume} continues in its own directory; "
                          f"leave out --out {args.out}")
    defaults = vars(_parser().parse_args([args.command]))
    for dest, value in vars(args).items():
        if dest in _NOT_SETTINGS or value == defaults.get(dest):
            continue
        flag = "--" + dest.replace("_", "-")
        key = "retrain" if dest.startswith("retrain") or (
            dest == "lr" and args.command == "search") else dest
        if key not in given:
            raise ConfigError(f"{flag} does not apply when resuming {args.resume}; leave it out")
        if key in stored and given[key] != stored[key]:
            raise ConfigError(f"{flag} {_show(value)} conflicts with the run's {key}="
                              f"{_show(stored[key])} (a resumed run keeps the settings of its "
                              "config.json; leave the flag out)")


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _multitrial_settings(args: argparse.Namespace) -> dict[str, Any]:
    d = multitrial.EVALUATOR_DEFAULTS
    build = multitrial.parse_assignments(args.build_arg, flag="--build-arg")
    if args.space == "darts":
        build.update({k: v for k, v in (("channels", args.channels), ("layers", args.layers))
                      if v is not None})
    time_limit = args.time_limit
    objectives = multitrial.parse_objectives(args.objectives)
    if objectives is not None and (args.objective is not None or args.minimize):
        raise ConfigError("give --objectives or --objective/--minimize, not both")
    metric, direction = objectives[0] if objectives else (args.objective,
                                                          "min" if args.minimize else "max")
    return {"dataset": args.dataset, "data_dir": args.data_dir, "seed": args.seed,
            "device": args.device, "space": args.space,
            "space_args": multitrial.parse_assignments(args.space_arg, flag="--space-arg"),
            "strategy": args.strategy, "latency_table": _path_or_none(args.latency_table),
            "strategy_args": multitrial.parse_assignments(args.strategy_arg,
                                                          flag="--strategy-arg"),
            "evaluator": args.evaluator, "proxy": args.proxy, "build_args": build,
            "epochs": _pick(args.epochs, d["epochs"]),
            "batch_size": _pick(args.batch_size, d["batch_size"]),
            "lr": _pick(args.lr, d["lr"]),
            "trials": _pick(args.trials, None if time_limit is not None else 20),
            "time_limit": time_limit,
            "objective": _pick(metric, "val_acc" if args.evaluator == "train"
                               else "synflow" if args.proxy == "all" else args.proxy),
            "direction": direction, "objectives": objectives,
            "max_params": args.max_params, "max_macs": args.max_macs,
            "max_latency_ms": args.max_latency_ms, "reward_cost": args.reward_cost,
            "reward_target": args.reward_target, "reward_weight": args.reward_weight,
            **_parallel_settings(args)}


def _parallel_settings(args: argparse.Namespace) -> dict[str, Any]:
    """--workers and friends: run-time settings, taken anew by a resumed run."""
    return {"workers": args.workers, "ray_address": args.ray_address,
            "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial}


def _multitrial(args: argparse.Namespace) -> int:
    if args.retrain:
        raise ConfigError("--retrain follows DARTS searches; retrain a multi-trial result "
                          "with `archsearch train RUN_DIR/best_arch.json`")
    if args.resume is not None:
        settings = multitrial.load_settings(args.resume)
        settings["trials"] = _pick(args.trials, settings["trials"])
        settings["time_limit"] = _pick(args.time_limit, settings["time_limit"])
        settings.update(_parallel_settings(args))
        multitrial.run_multitrial(settings, args.resume, resume=True, progress=not args.quiet)
        return 0
    multitrial.run_multitrial(_multitrial_settings(args), _out_dir(args),
                              overwrite=args.overwrite, progress=not args.quiet)
    return 0


def _list(args: argparse.Namespace) -> int:
    entries = multitrial.catalogue(args.kind)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for name, info in entries.items():
        size = info.get("size")
        extra = (f"size {size:,}" if isinstance(size, int) else f"size {size}") if size else \
            info["kind"]
        print(f"{name:<10} {extra}: {info['description']}")
        defaults = ", ".join(f"{k}={v}" for k, v in info["defaults"].items())
        if defaults:
            print(f"{'':<10} defaults: {defaults}")
    return 0


def _train_settings(args: argparse.Namespace, *, prefix: str = "") -> dict[str, Any]:
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
            "val_fraction": _pick(getattr(args, "val_fraction", None), runs.VAL_FRACTION)}


def _train(args: argparse.Namespace) -> int:
    if args.resume is not None:
        if args.arch is not None:
            raise ConfigError(f"--resume {args.resume} takes the architecture from the run; "
                              f"leave out ARCH ({args.arch})")
        doc = runs.read_run_config(args.resume)
        if doc["command"] == "train":
            _check_resume_flags(args, doc["settings"], _train_settings(args))
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
    runs.run_train(arch, _train_settings(args), _out_dir(args), progress=not args.quiet,
                   overwrite=args.overwrite)
    return 0


def _profile(args: argparse.Namespace) -> int:
    arch = runs.resolve_arch(args.arch)
    channels = _pick(args.channels, 48 if args.imagenet else 36)
    layers = _pick(args.layers, 14 if args.imagenet else 20)
    classes = _pick(args.classes, 1000 if args.imagenet else 10)
    stats = runs.profile(arch, channels=channels, layers=layers, num_classes=classes,
                         imagenet=args.imagenet, auxiliary=args.auxiliary)
    if args.json:
        print(json.dumps({k: stats[k] for k in ("num_params", "num_params_no_aux", "macs")}))
    else:
        kind = "ImageNet" if args.imagenet else "CIFAR"
        print(f"{kind} network, C={channels}, {layers} cells, {classes} classes, input "
              f"{'x'.join(map(str, stats['input_shape']))}\n"
              f"  parameters:              {stats['num_params']:,}\n"
              f"  without auxiliary head:  {stats['num_params_no_aux']:,}\n"
              f"  MACs (conv + linear):    {stats['macs']:,}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from archsearch import bench, bench_proxy, bench_report
    from archsearch.benchmarks import NasBench201Table, find_nb201_dir
    from archsearch.spaces.nasbench201 import NasBench201Space

    table = NasBench201Table.load(find_nb201_dir(args.data_dir), expect_rows=None)
    if args.proxy_correlation:
        corr = bench_proxy.proxy_correlation(table, args.dataset, fidelity=args.fidelity)
        print(json.dumps(corr) if args.json else
              f"NASWOT vs {args.dataset} accuracy ({args.fidelity} epochs), Spearman rho over "
              f"{corr['scored']:,} cells ({corr['excluded']} without a score left out): "
              f"validation {corr['spearman_val']:.3f}, test {corr['spearman_test']:.3f}")
        return 0
    space = NasBench201Space()
    if not table.is_complete:  # a fixture or a subset: search only the cells it holds
        space = bench.TableSubspace(table)
        print(f"archsearch: note: {table.data_dir} holds {len(table)} of 15,625 cells; "
              "searching those", file=sys.stderr)
    queries = args.queries if args.queries is not None or args.seconds is not None else 150
    result = bench.run_bench(
        space, table, dataset=args.dataset, seeds=args.seeds, queries=queries,
        strategies=[name.strip() for name in args.strategies.split(",") if name.strip()],
        seconds=args.seconds, fidelity=args.fidelity, processes=args.processes,
        strategy_args=bench.parse_strategy_args(args.strategy_arg),
        progress=not (args.json or args.quiet))
    out = _out_dir(args)
    result.write(out)
    if args.json:
        print(json.dumps(bench_report.jsonable(result.summary())))
    else:
        print(bench_report.format_table(result))
        print(f"runs, curves.csv and curves.png in {out}")
    return 0


COMMANDS = {"search": _search, "train": _train, "profile": _profile, "list": _list,
            "bench": _bench}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        handler = getattr(args, "run", None) or COMMANDS[args.command]
        return handler(args)
    except ArchsearchError as exc:
        print(f"archsearch: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FloatingPointError as exc:
        print(f"archsearch: stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        run_dir = getattr(args, "resume", None) or getattr(args, "out", None) or "RUN_DIR"
        resume = (f"; what was done is saved: continue with --resume {run_dir}"
                  if args.command in ("search", "train") else "")
        print(f"archsearch: interrupted{resume}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
