"""The "compound" space: EfficientNet's compound scaling coefficients (α, β, γ) on a grid.

Tan & Le 2019 ("EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
§3.3) scale depth by d = α^φ, width by w = β^φ and resolution by r = γ^φ, with
α, β, γ ≥ 1 fixed by a small grid search at φ = 1 under the rule α·β²·γ² ≈ 2: a conv
net's FLOPs grow as d·w²·r², so every +1 of φ roughly doubles them. Here the rule is
`|α·β²·γ² − 2| ≤ tolerance` (0.1 by default): on a discrete grid the product is rarely
exactly 2. `compound_scale` applies (α, β, γ, φ) to a base MobileNet configuration;
the space's `build` is the scaled base network at φ = 1, so grid search over the space under
a MAC budget is the paper's step 1.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from torch import nn

from archsearch.errors import ConfigError
from archsearch.space import MAX_ENUMERATE, Arch, Categorical, SearchSpace
from archsearch.spaces.mobilenet import (
    MobileNetConfig,
    StageConfig,
    build_network,
    make_divisible,
)

LABELS = ("alpha", "beta", "gamma")
# The base network scaled by default: MobileNetV2-like stages sized for 8×8 digits.
DEFAULT_BASE = MobileNetConfig(
    stem_channels=16,
    stages=(StageConfig(16, 1, ((3, 4),) * 2), StageConfig(24, 2, ((3, 4),) * 2),
            StageConfig(32, 2, ((3, 4),) * 2)),
    resolution=8)


def compound_scale(base: MobileNetConfig, alpha: float, beta: float, gamma: float,
                   phi: float) -> MobileNetConfig:
    """`base` scaled by d = α^φ (blocks per stage), w = β^φ (channels), r = γ^φ (resolution).

    Block counts round up (`ceil`, as EfficientNet's `round_repeats`) and new blocks repeat
    the stage's last block; channels round to multiples of 8 (`make_divisible`); the
    resolution rounds to the nearest integer.
    """
    if min(alpha, beta, gamma) < 1 or phi < 0:
        raise ConfigError(f"need α, β, γ ≥ 1 and φ ≥ 0, got {alpha}, {beta}, {gamma}, {phi}")
    depth, width, res = alpha ** phi, beta ** phi, gamma ** phi
    stages = []
    for stage in base.stages:
        blocks = math.ceil(round(len(stage.blocks) * depth, 6))
        extra = (stage.blocks[-1],) * (blocks - len(stage.blocks))
        stages.append(replace(stage, channels=make_divisible(stage.channels * width),
                              blocks=stage.blocks + extra))
    return MobileNetConfig(make_divisible(base.stem_channels * width), tuple(stages),
                           round(base.resolution * res))


class CompoundScalingSpace(SearchSpace):
    """(α, β, γ) on a grid, restricted to |α·β²·γ² − target| ≤ tolerance.

    Args:
        alphas, betas, gammas: the grid of each coefficient (all ≥ 1).
        target: the FLOPs factor per unit of φ (2 in the paper).
        tolerance: how far α·β²·γ² may be from `target`.
        num_classes: classifier outputs (a default for `build`).
        in_channels: image channels (a default for `build`).
    """

    def __init__(self, *, alphas: Sequence[float] = (1.0, 1.1, 1.2, 1.3, 1.4, 1.6, 1.8, 2.0),
                 betas: Sequence[float] = (1.0, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4),
                 gammas: Sequence[float] = (1.0, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4),
                 target: float = 2.0, tolerance: float = 0.1, num_classes: int = 10,
                 in_channels: int = 1) -> None:
        grids = {"alpha": alphas, "beta": betas, "gamma": gammas}
        for label, grid in grids.items():
            if not grid or any(not isinstance(v, int | float) or v < 1 for v in grid):
                raise ConfigError(f"{label}s must be numbers ≥ 1, got {list(grid)!r}")
        if tolerance < 0:
            raise ConfigError(f"tolerance must be ≥ 0, got {tolerance}")
        self.target, self.tolerance = float(target), float(tolerance)
        self.num_classes, self.in_channels = num_classes, in_channels
        dims = {label: Categorical([float(v) for v in grid]) for label, grid in grids.items()}
        super().__init__(dims, name="compound", space_args={
            "alphas": list(alphas), "betas": list(betas), "gammas": list(gammas),
            "target": target, "tolerance": tolerance, "num_classes": num_classes,
            "in_channels": in_channels})
        self._valid = [dict(zip(LABELS, values, strict=True)) for values in itertools.product(
            *(dims[label].choices for label in LABELS))
            if self.check(dict(zip(LABELS, values, strict=True))) is None]
        if not self._valid:
            raise ConfigError(f"no grid point has |α·β²·γ² − {target}| ≤ {tolerance}")

    def flops_factor(self, choices: Mapping[str, Any]) -> float:
        """α·β²·γ²: how much one unit of φ multiplies the FLOPs (d·w²·r²)."""
        return choices["alpha"] * choices["beta"] ** 2 * choices["gamma"] ** 2

    def check(self, choices: Mapping[str, Any]) -> str | None:
        factor = self.flops_factor(choices)
        if abs(factor - self.target) > self.tolerance + 1e-9:
            return (f"α·β²·γ² = {factor:.3f} is not within {self.tolerance} of "
                    f"{self.target}")
        return None

    def allowed(self, label: str, partial: Mapping[str, Any]) -> Sequence[Any]:
        """Values of `label` that some valid grid point has, given the earlier decisions."""
        return [v for v in self.dims[label].choices
                if any(p[label] == v and all(p[k] == partial[k] for k in partial if k in p)
                       for p in self._valid)]

    def size(self) -> int:
        return len(self._valid)

    def enumerate(self, *, limit: int = MAX_ENUMERATE) -> Iterator[Arch]:
        if self.size() > limit:
            raise ConfigError(f"space {self.name!r} has {self.size():,} points; enumerating "
                              f"more than {limit:,} is refused")
        return (self._make(point) for point in self._valid)

    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random valid grid point."""
        return self._make(self._valid[int(rng.integers(len(self._valid)))])

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """A random valid point among the nearest others (fewest coefficients changed):
        one coefficient alone can rarely move while the rule holds."""
        others = [p for p in self._valid if p != dict(arch)]
        if not others:
            return arch
        distance = [sum(p[k] != arch[k] for k in LABELS) for p in others]
        nearest = [p for p, d in zip(others, distance, strict=True) if d == min(distance)]
        return self._make(nearest[int(rng.integers(len(nearest)))])

    def groups(self) -> list[list[str]]:
        # The rule ties all three coefficients: crossover takes them from one parent.
        return [list(LABELS)]

    def scaled_config(self, arch: Arch, *, phi: float = 1.0,
                      base: MobileNetConfig = DEFAULT_BASE) -> MobileNetConfig:
        self.validate(arch)
        return compound_scale(base, arch["alpha"], arch["beta"], arch["gamma"], phi)

    def build(self, arch: Arch, *, phi: float = 1.0, base: MobileNetConfig = DEFAULT_BASE,
              num_classes: int | None = None, in_channels: int | None = None) -> nn.Module:
        """The base network scaled by `arch` at `phi` (resize inputs to its `resolution`)."""
        return build_network(self.scaled_config(arch, phi=phi, base=base),
                             num_classes=num_classes or self.num_classes,
                             in_channels=in_channels or self.in_channels)
