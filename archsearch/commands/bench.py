"""`archsearch bench`: compare search strategies on the NAS-Bench-201 tables (many seeds in
minutes), or report the NASWOT proxy's rank correlation with accuracy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from archsearch.commands._shared import out_dir


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="compare search strategies on the NAS-Bench-201 "
                              "tables (many seeds in minutes)")
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

    p.set_defaults(run=handler)


def handler(args: argparse.Namespace) -> int:
    from archsearch import bench, bench_proxy, bench_report
    from archsearch.benchmarks import NasBench201Table, find_nb201_dir
    from archsearch.spaces.nasbench201 import NasBench201Space
    from archsearch.spaces.nasbench201_subset import TableSubspace

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
        space = TableSubspace(table)
        print(f"archsearch: note: {table.data_dir} holds {len(table)} of 15,625 cells; "
              "searching those", file=sys.stderr)
    queries = args.queries if args.queries is not None or args.seconds is not None else 150
    result = bench.run_bench(
        space, table, dataset=args.dataset, seeds=args.seeds, queries=queries,
        strategies=[name.strip() for name in args.strategies.split(",") if name.strip()],
        seconds=args.seconds, fidelity=args.fidelity, processes=args.processes,
        strategy_args=bench.parse_strategy_args(args.strategy_arg),
        progress=not (args.json or args.quiet))
    out = out_dir(args)
    result.write(out)
    if args.json:
        print(json.dumps(bench_report.jsonable(result.summary())))
    else:
        print(bench_report.format_table(result))
        print(f"runs, curves.csv and curves.png in {out}")
    return 0
