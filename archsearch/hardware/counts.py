"""Parameter and multiply-accumulate (MAC) counts, without training.

MAC convention (documented for `archsearch profile`): multiply-accumulates of
convolutions and linear layers at inference, for one input, counted with forward hooks on
a forward pass in eval mode: a convolution costs
`out_elements · (in_channels / groups) · kernel_h · kernel_w`, a linear layer
`in_features · out_features`. Biases, BN, activations, pooling, additions and
concatenations are not counted. Heads that run only in training (the auxiliary head) do not
run in eval mode and so are not counted.

`include_bias=True` also counts one multiply-add per output element of a conv or linear
layer that has a bias: the convention of NAS-Bench-201's `flops` columns (conv + linear,
bias included; BN, pooling and additions not counted), whose reference network has a bias
only in its classifier. `archsearch/networks/nasbench201.py` reproduces those columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def num_params(model: nn.Module, *, exclude_prefixes: Sequence[str] = ()) -> int:
    """Number of parameters, skipping those whose name starts with one of `exclude_prefixes`."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not any(name.startswith(prefix) for prefix in exclude_prefixes))


def count_macs(model: nn.Module, input_shape: Sequence[int], *,
               device: str | torch.device = "cpu", include_bias: bool = False) -> int:
    """MACs of conv and linear layers for one forward pass of a (1, C, H, W) input.

    `input_shape` is (C, H, W) or (1, C, H, W). The model is run in eval mode under
    `torch.no_grad()` and put back in the mode it was in. `include_bias` adds one MAC per
    output element of layers with a bias (NAS-Bench-201's convention). A model on the
    `meta` device (with `device="meta"`) is counted without computing anything.
    """
    shape = tuple(input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or shape[0] != 1:
        raise ValueError(f"input_shape must be (C, H, W) or (1, C, H, W), got {input_shape}")
    total = 0

    def conv_hook(module: nn.Conv2d, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw
        if include_bias and module.bias is not None:
            total += output.numel()

    def linear_hook(module: nn.Linear, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        nonlocal total
        total += (output.numel() // module.out_features) * module.in_features * module.out_features
        if include_bias and module.bias is not None:
            total += output.numel()

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(shape, device=device, dtype=_float_dtype(model)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def _float_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (float32 if none): a
    float64 model is counted with a float64 input."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32
