"""`archsearch search`: a one-shot search (DARTS, ProxylessNAS) of the DARTS cell space, then
optionally the retraining of its cell; or a journaled multi-trial search
(`archsearch.multitrial`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from archsearch import multitrial, runs
from archsearch.commands._shared import (
    check_resume_flags,
    common_arguments,
    out_dir,
    path_or_none,
    pick,
)
from archsearch.commands.train import train_settings
from archsearch.errors import ConfigError
from archsearch.ops import DARTS_OPS
from archsearch.supernet import HVPS, ORDERS

# One-shot methods own their loop and search the DARTS cell space; any other --strategy is
# a multi-trial strategy.
ONE_SHOT = ("darts", "proxyless")


def register(subparsers: Any) -> None:
    search = subparsers.add_parser("search", help="search an architecture on a dataset (DARTS by "
                            "default; --strategy for multi-trial search)")
    common_arguments(search)
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
                        help="continue an interrupted search, one-shot or multi-trial (settings "
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
    search.set_defaults(run=handler)


def handler(args: argparse.Namespace) -> int:
    if args.resume is not None:
        doc = runs.read_run_config(args.resume)
        if doc["command"] != "search":
            raise ConfigError(f"--resume {args.resume} is a {doc['command']} run; continue it "
                              f"with `archsearch {doc['command']} --resume {args.resume}`")
        if "strategy" in doc["settings"]:
            return _multitrial(args)
        check_resume_flags(args, doc["settings"], search_settings(args))
        runs.resume_search(args.resume, progress=not args.quiet)
        return 0
    if args.strategy not in ONE_SHOT:
        return _multitrial(args)
    settings = search_settings(args)
    if settings["retrain"] is not None:  # fail before a long search, not after it
        runs.check_train_settings(settings["retrain"])
    out = out_dir(args)
    arch = runs.run_search(settings, out, progress=not args.quiet, overwrite=args.overwrite)
    if settings["retrain"] is not None:
        runs.run_train(arch, settings["retrain"], out / "retrain", progress=not args.quiet,
                       overwrite=args.overwrite)
    return 0


def search_settings(args: argparse.Namespace) -> dict[str, Any]:
    method = args.strategy if args.strategy in ONE_SHOT else "darts"
    if args.space != "darts":
        raise ConfigError(f"--strategy {method} searches the darts space, not {args.space!r}")
    if method == "proxyless" and (args.order != "first" or args.hvp != "finite-difference"):
        raise ConfigError("--order and --hvp apply to DARTS; ProxylessNAS estimates the "
                          "architecture gradient through binary gates")
    d = runs.defaults_for(args.dataset, runs.SEARCH_DEFAULTS)
    return {"method": method, "latency_table": path_or_none(args.latency_table),
            "dataset": args.dataset, "data_dir": args.data_dir, "seed": args.seed,
            "device": args.device, "nodes": args.nodes,
            "ops": [op.strip() for op in args.ops.split(",") if op.strip()],
            "order": args.order, "hvp": args.hvp, "cost_weight": args.cost_weight,
            "epochs": pick(args.epochs, d["epochs"]),
            "channels": pick(args.channels, d["channels"]),
            "layers": pick(args.layers, d["layers"]),
            "batch_size": pick(args.batch_size, d["batch_size"]),
            # kept so that --resume can continue (or start) the retraining as well
            "retrain": train_settings(args, prefix="retrain_") if args.retrain else None}


def multitrial_settings(args: argparse.Namespace) -> dict[str, Any]:
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
            "strategy": args.strategy, "latency_table": path_or_none(args.latency_table),
            "strategy_args": multitrial.parse_assignments(args.strategy_arg,
                                                          flag="--strategy-arg"),
            "evaluator": args.evaluator, "proxy": args.proxy, "build_args": build,
            "epochs": pick(args.epochs, d["epochs"]),
            "batch_size": pick(args.batch_size, d["batch_size"]),
            "lr": pick(args.lr, d["lr"]),
            "trials": pick(args.trials, None if time_limit is not None else 20),
            "time_limit": time_limit,
            "objective": pick(metric, "val_acc" if args.evaluator == "train"
                               else "synflow" if args.proxy == "all" else args.proxy),
            "direction": direction, "objectives": objectives,
            "max_params": args.max_params, "max_macs": args.max_macs,
            "max_latency_ms": args.max_latency_ms, "reward_cost": args.reward_cost,
            "reward_target": args.reward_target, "reward_weight": args.reward_weight,
            **parallel_settings(args)}


def parallel_settings(args: argparse.Namespace) -> dict[str, Any]:
    """--workers and friends: run-time settings, taken anew by a resumed run."""
    return {"workers": args.workers, "ray_address": args.ray_address,
            "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial}


def _multitrial(args: argparse.Namespace) -> int:
    if args.retrain:
        raise ConfigError("--retrain follows DARTS searches; retrain a multi-trial result "
                          "with `archsearch train RUN_DIR/best_arch.json`")
    if args.resume is not None:
        settings = multitrial.load_settings(args.resume)
        settings["trials"] = pick(args.trials, settings["trials"])
        settings["time_limit"] = pick(args.time_limit, settings["time_limit"])
        settings.update(parallel_settings(args))
        multitrial.run_multitrial(settings, args.resume, resume=True, progress=not args.quiet)
        return 0
    multitrial.run_multitrial(multitrial_settings(args), out_dir(args),
                              overwrite=args.overwrite, progress=not args.quiet)
    return 0
