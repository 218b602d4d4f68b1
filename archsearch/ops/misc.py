"""Parameter-free DARTS operations: `none` (zeros) and `skip_connect` at stride 1."""

from __future__ import annotations

import torch
from torch import nn


class Zero(nn.Module):
    """The `none` op: zeros of the output shape (strided when the edge reduces)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return torch.zeros_like(x)
        return torch.zeros_like(x[:, :, :: self.stride, :: self.stride])

    def extra_repr(self) -> str:
        return f"stride={self.stride}"
