"""What the core subcommands share: the common flags, the run directory, and the rule that
a resumed run keeps the settings of its config.json."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from archsearch.data import DATASET_NAMES
from archsearch.errors import ConfigError

# Parsed values that are not settings of a run (a resumed run may be given them anew).
_NOT_SETTINGS = {"command", "run", "resume", "out", "overwrite", "quiet", "arch"}


def common_arguments(p: argparse.ArgumentParser, *, data: bool = True) -> None:
    """The flags every core command takes (`data=False`: only the network's size)."""
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


def path_or_none(path: str | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def out_dir(args: argparse.Namespace) -> Path:
    return args.out or Path("runs") / f"{args.command}-{time.strftime('%Y%m%d-%H%M%S')}"


def pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def check_resume_flags(args: argparse.Namespace, stored: dict[str, Any],
                        given: dict[str, Any]) -> None:
    """Settings of a resumed run come from its config.json; a flag that asks for another
    value, or that a resumed run cannot use, is an error. A flag counts as given when its
    value differs from the parser's default (so repeating a run's own value is accepted)."""
    if args.overwrite:
        raise ConfigError("--resume continues a run; --overwrite would replace it")
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        raise ConfigError(f"--resume {args.resume} continues in its own directory; "
                          f"leave out --out {args.out}")
    from archsearch.cli import build_parser  # the whole CLI: its defaults for this command

    defaults = vars(build_parser().parse_args([args.command]))
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
