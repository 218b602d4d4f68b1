"""The "mobilenet" space: stages of inverted-residual (MBConv) blocks, Once-for-All style.

The blocks are MobileNetV2's (Sandler et al. 2018): 1×1 expansion, depthwise k×k, 1×1
linear projection, each with BN, ReLU6 after the first two, and a residual connection when
the block keeps the shape. The decisions are Once-for-All's (Cai et al. 2020, "Once for
All: Train One Network and Specialize it for Efficient Deployment"): per stage its depth,
per block its kernel size and expand ratio, plus a global width multiplier and the input
resolution.

Spaces are static, so every stage declares the decisions of its *largest* depth
(`stage{s}.block{b}.kernel` / `.expand`); blocks past the chosen `stage{s}.depth` are not
built and their decisions are ignored. So many archs are one network: `canonical(arch)`
resets the ignored decisions to their first choice (the search loop deduplicates with it),
`size()` counts distinct networks exactly, `enumerate()` yields only canonical archs (one
per network, so grid search never trains a network twice), and `mutate` changes only a
decision that changes the network. Sampling stays uniform over all decision values.

The network accepts any input size and applies the `resolution` decision itself: its forward
first resizes the input to resolution × resolution (bilinear; 8×8 digits upsampled to 12 or
16), so MACs counted at the dataset's native size (`count_macs`, `ArchCost`, the train
evaluator) depend on the resolution as they should, and the weights do not. As in
MobileNetV2 (Sandler et al. 2018, Table 2), the last stage is followed by a 1×1 conv to
`last_channels` (1280 in the paper) before pooling and the classifier; the width multiplier
scales it only when > 1 (the paper's models keep 1280 for multipliers < 1, as does
torchvision's MobileNetV2). `last_channels` is a build argument, so small data can use a
small head (`--build-arg last_channels=128`); 0 drops the conv. Channels are multiplied by
`width_mult` and rounded to multiples of 8 (MobileNet's `make_divisible`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from archsearch.errors import ConfigError
from archsearch.space import MAX_ENUMERATE, Arch, Categorical, SearchSpace

# MobileNetV2's final 1×1 conv width (Sandler et al. 2018, Table 2).
LAST_CHANNELS = 1280


def make_divisible(value: float, divisor: int = 8) -> int:
    """`value` rounded to the nearest multiple of `divisor`, never below 90 % of it
    (MobileNetV2's rounding of scaled channel counts)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand, depthwise k×k (stride), 1×1 linear project.

    The expansion is skipped when the ratio is 1 (as in MobileNetV2's first block); the
    residual is added when stride is 1 and the width stays (MobileNetV2 §3.3).
    """

    def __init__(self, c_in: int, c_out: int, *, kernel_size: int, expand: int,
                 stride: int = 1) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                       nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, kernel_size, stride=stride,
                             padding=kernel_size // 2, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
                   # linear bottleneck: no activation after the projection (§3.2)
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return x + out if self.residual else out


@dataclass(frozen=True)
class StageConfig:
    """One stage: output channels, the stride of its first block, (kernel, expand) per block."""

    channels: int
    stride: int
    blocks: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class MobileNetConfig:
    """A concrete network: stem width, stages, and the input resolution it is meant for."""

    stem_channels: int
    stages: tuple[StageConfig, ...]
    resolution: int


class Resize(nn.Module):
    """Bilinear resize of (N, C, H, W) inputs to side × side; identity at that size.

    Shrinking is antialiased (so a smaller resolution sees a blurred, not aliased, image);
    enlarging is plain bilinear interpolation.
    """

    def __init__(self, side: int) -> None:
        super().__init__()
        self.side = int(side)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) == (self.side, self.side):
            return x
        shrink = min(x.shape[-2:]) > self.side
        return F.interpolate(x, size=(self.side, self.side), mode="bilinear",
                             align_corners=False, antialias=shrink)

    def extra_repr(self) -> str:
        return f"side={self.side}"


class MobileNetwork(nn.Module):
    """[Resize] → stem conv-BN-ReLU6 → MBConv stages → [1×1 conv-BN-ReLU6] → pool → linear."""

    def __init__(self, resize: nn.Module, stem: nn.Module, blocks: nn.Module, head: nn.Module,
                 classifier: nn.Linear) -> None:
        super().__init__()
        self.resize, self.stem, self.blocks, self.head = resize, stem, blocks, head
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.blocks(self.stem(self.resize(x))))
        return self.classifier(self.pool(x).flatten(1))


def build_network(config: MobileNetConfig, *, num_classes: int = 10, in_channels: int = 1,
                  last_channels: int = 0, resize: bool = False) -> nn.Module:
    """The network of `config`: stem conv-BN-ReLU6, the MBConv stages, pooling, linear.

    Args:
        config: the stem, stages and resolution.
        num_classes: classifier outputs.
        in_channels: image channels.
        last_channels: channels of MobileNetV2's final 1×1 conv-BN-ReLU6 before pooling
            (used as given: callers apply any width multiplier); 0 leaves it out.
        resize: resize every input to `config.resolution` first, so the resolution is a
            property of the network rather than of the data pipeline.
    """
    if last_channels < 0:
        raise ConfigError(f"last_channels must be ≥ 0 (0: no final 1×1 conv), got "
                          f"{last_channels}")
    stem = nn.Sequential(
        nn.Conv2d(in_channels, config.stem_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(config.stem_channels), nn.ReLU6(inplace=True))
    blocks: list[nn.Module] = []
    c_in = config.stem_channels
    for stage in config.stages:
        for b, (kernel, expand) in enumerate(stage.blocks):
            blocks.append(MBConv(c_in, stage.channels, kernel_size=kernel, expand=expand,
                                 stride=stage.stride if b == 0 else 1))
            c_in = stage.channels
    head: nn.Module = nn.Identity()
    if last_channels:
        head = nn.Sequential(nn.Conv2d(c_in, last_channels, 1, bias=False),
                             nn.BatchNorm2d(last_channels), nn.ReLU6(inplace=True))
        c_in = last_channels
    return MobileNetwork(Resize(config.resolution) if resize else nn.Identity(), stem,
                         nn.Sequential(*blocks), head, nn.Linear(c_in, num_classes))


def _positive_ints(name: str, values: Sequence[Any]) -> list[int]:
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1
                         for v in values):
        raise ConfigError(f"{name} must be a non-empty list of positive integers, got "
                          f"{list(values)!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} must be distinct, got {list(values)!r}")
    return list(values)


class MobileNetSpace(SearchSpace):
    """Per stage a depth, per block a kernel and an expand ratio; global width and resolution.

    Args:
        channels: base output channels of each stage (before `width_mult`).
        strides: stride of each stage's first block (same length as `channels`).
        depths: candidate block counts of every stage.
        kernels: candidate depthwise kernel sizes (odd).
        expands: candidate expand ratios.
        width_mults: candidate channel multipliers.
        resolutions: candidate input side lengths (what a trainer resizes to).
        stem_channels: base channels of the stem conv.
        num_classes: classifier outputs (a default for `build`).
        in_channels: image channels (a default for `build`).
    """

    def __init__(self, *, channels: Sequence[int] = (16, 24, 32),
                 strides: Sequence[int] = (1, 2, 2), depths: Sequence[int] = (2, 3, 4),
                 kernels: Sequence[int] = (3, 5, 7), expands: Sequence[int] = (3, 4, 6),
                 width_mults: Sequence[float] = (0.75, 1.0, 1.25),
                 resolutions: Sequence[int] = (8, 12, 16), stem_channels: int = 16,
                 num_classes: int = 10, in_channels: int = 1) -> None:
        self.channels = _positive_ints("channels", channels)
        self.strides = list(strides)
        if len(self.strides) != len(self.channels) or any(s not in (1, 2) for s in strides):
            raise ConfigError(f"strides must be 1 or 2, one per stage, got {list(strides)!r}")
        self.depths = sorted(_positive_ints("depths", depths))
        self.kernels = _positive_ints("kernels", kernels)
        if any(k % 2 == 0 for k in self.kernels):
            raise ConfigError(f"kernels must be odd, got {self.kernels!r}")
        self.expands = _positive_ints("expands", expands)
        self.resolutions = _positive_ints("resolutions", resolutions)
        if not width_mults or any(not isinstance(w, int | float) or w <= 0
                                  for w in width_mults):
            raise ConfigError(f"width_mults must be positive numbers, got {list(width_mults)!r}")
        self.width_mults = [float(w) for w in width_mults]
        self.stem_channels = _positive_ints("stem_channels", [stem_channels])[0]
        self.num_classes, self.in_channels = num_classes, in_channels
        if num_classes < 2 or in_channels < 1:
            raise ConfigError(f"need ≥ 2 classes and ≥ 1 input channel, got {num_classes}, "
                              f"{in_channels}")
        dims: dict[str, Any] = {"width_mult": Categorical(self.width_mults),
                                "resolution": Categorical(self.resolutions)}
        for s in range(len(self.channels)):
            dims[f"stage{s}.depth"] = Categorical(self.depths)
            for b in range(max(self.depths)):
                dims[f"stage{s}.block{b}.kernel"] = Categorical(self.kernels)
                dims[f"stage{s}.block{b}.expand"] = Categorical(self.expands)
        args = {"channels": self.channels, "strides": self.strides, "depths": list(depths),
                "kernels": self.kernels, "expands": self.expands,
                "width_mults": list(width_mults), "resolutions": self.resolutions,
                "stem_channels": stem_channels, "num_classes": num_classes,
                "in_channels": in_channels}
        super().__init__(dims, name="mobilenet", space_args=args)

    # --- unused decisions ----------------------------------------------------------------
    def active_labels(self, arch: Mapping[str, Any]) -> list[str]:
        """The labels that shape the network of `arch` (blocks within each stage's depth)."""
        labels = ["width_mult", "resolution"]
        for s in range(len(self.channels)):
            labels.append(f"stage{s}.depth")
            for b in range(arch[f"stage{s}.depth"]):
                labels += [f"stage{s}.block{b}.kernel", f"stage{s}.block{b}.expand"]
        return labels

    def canonical(self, arch: Arch) -> Arch:
        """`arch` with every ignored decision at its first choice: one arch per network."""
        active = set(self.active_labels(arch))
        return self._make({label: arch[label] if label in active else dim.choices[0]
                           for label, dim in self.dims.items()})

    def size(self) -> int:
        """Distinct networks: |W|·|R|·Π_stages Σ_{d ∈ depths} (|K|·|E|)^d."""
        per_block = len(self.kernels) * len(self.expands)
        per_stage = sum(per_block ** d for d in self.depths)
        return len(self.width_mults) * len(self.resolutions) * per_stage ** len(self.channels)

    def enumerate(self, *, limit: int = MAX_ENUMERATE) -> Iterator[Arch]:
        """Every distinct network once, as its canonical arch, in a stable order."""
        if self.size() > limit:
            raise ConfigError(f"space {self.name!r} has {self.size():,} architectures; "
                              f"enumerating more than {limit:,} is refused")
        blocks = list(itertools.product(self.kernels, self.expands))
        stage_options = [list(self._stage_options(s, blocks)) for s in range(len(self.channels))]
        for width, res in itertools.product(self.width_mults, self.resolutions):
            for stages in itertools.product(*stage_options):
                choices: dict[str, Any] = {"width_mult": width, "resolution": res}
                for stage in stages:
                    choices.update(stage)
                yield self._make({label: choices[label] for label in self.dims})

    def _stage_options(self, s: int, blocks: list[tuple[int, int]]) -> Iterator[dict[str, Any]]:
        for depth in self.depths:
            for used in itertools.product(blocks, repeat=depth):
                option: dict[str, Any] = {f"stage{s}.depth": depth}
                for b in range(max(self.depths)):
                    kernel, expand = used[b] if b < depth else (self.kernels[0],
                                                                 self.expands[0])
                    option[f"stage{s}.block{b}.kernel"] = kernel
                    option[f"stage{s}.block{b}.expand"] = expand
                yield option

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """`arch` with one decision that shapes the network changed (never an ignored one)."""
        movable = [lbl for lbl in self.active_labels(arch) if self.dims[lbl].size() > 1]
        if not movable:
            return arch
        label = movable[int(rng.integers(len(movable)))]
        choices = dict(arch)
        choices[label] = self.dims[label].mutate(arch[label], rng)
        return self._make(choices)

    # --- the network -------------------------------------------------------------------
    def config(self, arch: Arch) -> MobileNetConfig:
        """The concrete network of `arch` (ignored decisions dropped)."""
        self.validate(arch)
        width = arch["width_mult"]
        stages = tuple(
            StageConfig(make_divisible(c * width), stride, tuple(
                (arch[f"stage{s}.block{b}.kernel"], arch[f"stage{s}.block{b}.expand"])
                for b in range(arch[f"stage{s}.depth"])))
            for s, (c, stride) in enumerate(zip(self.channels, self.strides, strict=True)))
        return MobileNetConfig(make_divisible(self.stem_channels * width), stages,
                               arch["resolution"])

    def input_shape(self, arch: Arch, *, in_channels: int | None = None) -> tuple[int, int, int]:
        """(C, H, W) that the network of `arch` computes on: it resizes any input to this."""
        side = arch["resolution"]
        return (in_channels or self.in_channels, side, side)

    def head_channels(self, arch: Arch, last_channels: int = LAST_CHANNELS) -> int:
        """Channels of the final 1×1 conv: `last_channels` × width_mult when the multiplier
        is > 1, else `last_channels` (MobileNetV2 keeps the head for multipliers < 1)."""
        if last_channels <= 0:
            return 0
        return make_divisible(last_channels * max(1.0, arch["width_mult"]))

    def build(self, arch: Arch, *, num_classes: int | None = None,
              in_channels: int | None = None, last_channels: int = LAST_CHANNELS) -> nn.Module:
        """The MBConv network of `arch`; it resizes any input to the arch's resolution.

        Args:
            arch: an architecture of this space.
            num_classes: classifier outputs (default: the space's).
            in_channels: image channels (default: the space's).
            last_channels: base channels of the final 1×1 conv (1280 as in MobileNetV2;
                about 4× the last stage's width suits small data); 0 leaves it out.
        """
        if isinstance(last_channels, bool) or not isinstance(last_channels, int) \
                or last_channels < 0:
            raise ConfigError(f"last_channels must be an integer ≥ 0, got {last_channels!r}")
        return build_network(self.config(arch), num_classes=num_classes or self.num_classes,
                             in_channels=in_channels or self.in_channels,
                             last_channels=self.head_channels(arch, last_channels),
                             resize=True)


def stage_depths(config: MobileNetConfig) -> list[int]:
    """Blocks per stage of a concrete network."""
    return [len(stage.blocks) for stage in config.stages]
