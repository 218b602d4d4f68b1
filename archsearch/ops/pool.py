"""Pooling operations of the DARTS space (3×3, padding 1; average pooling excludes padding)."""

from __future__ import annotations

from torch import nn


def max_pool_3x3(stride: int) -> nn.Module:
    return nn.MaxPool2d(3, stride=stride, padding=1)


def avg_pool_3x3(stride: int) -> nn.Module:
    # count_include_pad=False: the padded zeros do not count towards the average.
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
