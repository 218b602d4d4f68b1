"""`archsearch profile ARCH`: parameters and MACs of a cell's CIFAR or ImageNet network."""

from __future__ import annotations

import argparse
import json
from typing import Any

from archsearch import runs
from archsearch.commands._shared import common_arguments, pick


def register(subparsers: Any) -> None:
    prof = subparsers.add_parser("profile", help="parameters and MACs of a cell's network")
    prof.add_argument("arch", metavar="ARCH", help="darts_v1, darts_v2, an arch.json or a run dir")
    common_arguments(prof, data=False)
    prof.add_argument("--imagenet", action="store_true",
                      help="the ImageNet network (C=48, 14 cells, 224×224) instead of CIFAR's")
    prof.add_argument("--classes", type=int, help="default 10, or 1000 with --imagenet")
    prof.add_argument("--auxiliary", action="store_true", help="include the auxiliary head")
    prof.add_argument("--json", action="store_true", help="print JSON")
    prof.set_defaults(run=handler)


def handler(args: argparse.Namespace) -> int:
    arch = runs.resolve_arch(args.arch)
    channels = pick(args.channels, 48 if args.imagenet else 36)
    layers = pick(args.layers, 14 if args.imagenet else 20)
    classes = pick(args.classes, 1000 if args.imagenet else 10)
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
