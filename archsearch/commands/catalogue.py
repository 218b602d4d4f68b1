"""`archsearch list {spaces,strategies}`: the registered search spaces or strategies, with
their defaults (and the spaces' exact sizes)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from archsearch import multitrial


def register(subparsers: Any) -> None:
    lst = subparsers.add_parser("list", help="the registered search spaces or strategies")
    lst.add_argument("kind", choices=("spaces", "strategies"))
    lst.add_argument("--json", action="store_true", help="print JSON (defaults, exact sizes)")
    lst.set_defaults(run=handler)


def handler(args: argparse.Namespace) -> int:
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
