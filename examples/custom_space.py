"""A search space written by a user in a few lines, searched by regularized evolution.

The builder below is the whole space: `c.op` and `c.choice` declare decisions, and the same
function builds the fixed network of any architecture. Each trial trains for one epoch on the
built-in digits; the run directory holds the journal and the best architecture.

    python examples/custom_space.py --trials 8 --out runs/custom
"""

from __future__ import annotations

import argparse
from functools import partial

from torch import nn

import archsearch as asr


def conv(c_in: int, c_out: int, k: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.BatchNorm2d(c_out),
                         nn.ReLU())


def tiny_net(c: asr.Chooser, *, num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    width = c.choice("width", [8, 16, 32])
    layers, c_in = [], in_channels
    for i in range(2):
        layers.append(c.op(f"block{i}", {"conv3": partial(conv, c_in, width, 3),
                                         "conv5": partial(conv, c_in, width, 5)}))
        c_in = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, num_classes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run directory (default: none)")
    args = parser.parse_args()

    space = asr.SearchSpace.from_builder(tiny_net, name="tiny_net")
    print(f"{space!r}: {', '.join(f'{k} {d.describe()}' for k, d in space.dims.items())}")
    data = asr.data.load_dataset("digits", seed=args.seed)
    (x_train, y_train), (x_val, y_val) = asr.data.split_in_half(data.x_train, data.y_train)
    evaluator = asr.evaluators.TrainEvaluator(
        space, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, num_classes=10,
        epochs=2, seed=args.seed)
    strategy = asr.strategies.RegularizedEvolution(space, population=4, sample_size=2,
                                                   seed=args.seed)
    result = asr.search(strategy, evaluator, budget=asr.Budget(trials=args.trials),
                        run_dir=args.out, progress=False)
    best = result.best
    print(f"best of {result.evaluations} trials: {space.describe(best.arch)} "
          f"val_acc={best.metrics['val_acc']:.3f}")
    model = space.build(best.arch)  # a plain nn.Module, ready to retrain or export
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters")


if __name__ == "__main__":
    main()
