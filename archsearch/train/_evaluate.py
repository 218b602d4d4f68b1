"""Small training helpers shared by the trainer and the one-shot strategies."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def cosine_lr(base: float, floor: float, epoch: int, epochs: int) -> float:
    """Cosine annealing from `base` (epoch 0) towards `floor` (epoch `epochs`)."""
    return floor + 0.5 * (base - floor) * (1 + math.cos(math.pi * epoch / epochs))


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, *, device: torch.device | str = "cpu",
             batch_size: int = 256) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` in eval mode; restores its mode."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        logits = model(xb)
        total_loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += int((logits.argmax(1) == yb).sum())
    model.train(was_training)
    return total_loss / len(x), correct / len(x)


def foreach_supported(params: Sequence[Tensor]) -> bool | None:
    """True where PyTorch's multi-tensor (`foreach`) kernels run on the parameters' device.

    With the default (None) PyTorch uses them on CUDA only; on CPU it loops over the
    tensors in Python, a few operations per tensor (the DARTS supernet has 1,399; a
    retrained CIFAR network hundreds). The
    multi-tensor CPU kernels compute the same values in one call per operation.
    """
    return True if params and all(p.device.type in ("cpu", "cuda") for p in params) else None
