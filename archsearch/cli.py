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
import pkgutil
import sys
from types import ModuleType
from typing import NoReturn

from archsearch.errors import ArchsearchError

EXIT_BAD_INPUT = 2

# The core commands come first in `archsearch --help`, in this order; the others by name.
FIRST_COMMANDS = ("search", "train", "profile", "catalogue", "bench")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one subparser per module of `archsearch.commands`."""
    parser = _Parser(prog="archsearch", description="Neural architecture search on your "
                     "data: one-shot and multi-trial search, retraining, profiling, export.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in command_modules():
        module.register(sub)
    return parser


def command_modules() -> list[ModuleType]:
    """The subcommands, one per module of `archsearch/commands/` (FIRST_COMMANDS first).

    Each module has `register(subparsers)`, which adds its parser and sets `run=handler`
    as a parser default; the handler takes the parsed arguments and returns an exit code.
    Modules import their heavy dependencies inside the handler, so `--help` stays fast.
    """
    package = importlib.import_module("archsearch.commands")
    names = [m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]
    order = {name: i for i, name in enumerate(FIRST_COMMANDS)}
    names.sort(key=lambda name: (order.get(name, len(order)), name))
    return [importlib.import_module(f"archsearch.commands.{name}") for name in names]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
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
