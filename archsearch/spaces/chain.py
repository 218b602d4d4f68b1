"""The "chain" space: a plain stack of layers, each choosing its op and its width.

A small space for quick experiments on small data (8×8 digits), and the example of a space
written define-by-run with a builder (DESIGN "Search spaces"; the choosers follow NNI's
mutators and Optuna's define-by-run trials). The builder below is the whole space: the dry
run at construction records one `layer{i}.width` and one `layer{i}.op` decision per layer.

Every op is a factory `(c_in, c_out) -> nn.Module` at stride 1, so a layer can change the
width whatever its op: convolutions map c_in to c_out directly, and `max_pool` and `skip`
add a 1×1 conv-BN projection only when the width changes (`skip` is the identity otherwise).
With a single width there is no width decision, every decision is an op, and the DARTS
supernet (`build_supernet`) applies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from torch import nn

from archsearch.errors import ConfigError
from archsearch.space import BuilderSpace, Chooser


def conv_bn_relu(c_in: int, c_out: int, *, kernel_size: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(c_out), nn.ReLU())


def sep_conv_3x3(c_in: int, c_out: int) -> nn.Module:
    """Depthwise 3×3 then pointwise 1×1 (MobileNet's separable conv), BN, ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


def project(c_in: int, c_out: int) -> nn.Module:
    """1×1 conv-BN to the new width; nothing when the width stays."""
    if c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


def max_pool(c_in: int, c_out: int) -> nn.Module:
    # Pooling keeps the width; the projection after it (if any) sets the layer's width.
    return nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), project(c_in, c_out))


# name -> factory(c_in, c_out); the order is the order of the op decision's choices.
CHAIN_OPS: dict[str, Callable[[int, int], nn.Module]] = {
    "conv3x3": partial(conv_bn_relu, kernel_size=3),
    "conv5x5": partial(conv_bn_relu, kernel_size=5),
    "sep_conv_3x3": sep_conv_3x3,
    "max_pool": max_pool,
    "skip": project,
}


def chain(c: Chooser, *, layers: int = 4, widths: Sequence[int] = (8, 16, 32),
          num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """`layers` layers of (op, width) decisions, then global pooling and a linear head."""
    _check(layers, widths, num_classes, in_channels)
    body, c_in = [], in_channels
    for i in range(layers):
        width = c.choice(f"layer{i}.width", widths) if len(widths) > 1 else widths[0]
        body.append(c.op(f"layer{i}.op", {
            name: partial(make, c_in, width) for name, make in CHAIN_OPS.items()}))
        c_in = width
    return nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(c_in, num_classes))


def chain_space(*, layers: int = 4, widths: Sequence[int] = (8, 16, 32),
                num_classes: int = 10, in_channels: int = 1) -> BuilderSpace:
    """The chain space: per layer an op and a width, for quick experiments on small data.

    `build(arch, num_classes=..., in_channels=...)` may change the head and the input
    channels, which do not change the decisions.

    Args:
        layers: the number of layers (each one op decision, plus a width decision when
            there is more than one width).
        widths: the candidate output channels of every layer.
        num_classes: outputs of the classifier (a default for `build`).
        in_channels: image channels (a default for `build`).
    """
    return BuilderSpace(chain, name="chain", layers=layers, widths=list(widths),
                        num_classes=num_classes, in_channels=in_channels)


def _check(layers: int, widths: Sequence[int], num_classes: int, in_channels: int) -> None:
    if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
        raise ConfigError(f"layers must be an integer ≥ 1, got {layers!r}")
    if not widths or any(not isinstance(w, int) or isinstance(w, bool) or w < 1
                         for w in widths):
        raise ConfigError(f"widths must be positive integers, got {list(widths)!r}")
    if len(set(widths)) != len(widths):
        raise ConfigError(f"widths must be distinct, got {list(widths)}")
    if num_classes < 2:
        raise ConfigError(f"need at least 2 classes, got {num_classes}")
    if in_channels < 1:
        raise ConfigError(f"need at least 1 input channel, got {in_channels}")
