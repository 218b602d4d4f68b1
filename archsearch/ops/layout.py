"""Gradients in the memory layout of their activations.

PyTorch's CPU batch-norm backward has a fast, parallel kernel only when the incoming
gradient is contiguous in the same memory format as the BN's input; otherwise it falls back
to a serial element-by-element loop. Measured on 2 CPU cores (batch 16, channels-last, the
DARTS supernet's shapes), a gradient that is a channel slice of a wider tensor makes the
backward 5–12× slower: 1.9 ms against 0.16 ms at 16 channels of 32×32.

Two places hand such gradients to the cells' BNs:

* the backward of `torch.cat(states, dim=1)` (a cell's output) gives each node a channel
  slice of the output's gradient: strided, in no memory format at all;
* global average pooling's backward gives the last cell an NCHW gradient although its
  activations are channels-last.

`cat_channels` and `match_grad_layout` put one copy (`.contiguous`) at those places, so
every BN (and conv) behind them gets a gradient in its input's layout. Forward values are
untouched; the copy is differentiable, so double backward works through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def memory_format(t: Tensor) -> torch.memory_format:
    """`torch.channels_last` for a 4-D channels-last tensor, else the contiguous format."""
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def exporting() -> bool:
    """Whether the forward pass is being traced for TorchScript or ONNX export.

    A traced graph cannot hold Python autograd Functions, and shape tests would be baked
    into it; the plain operations compute the same forward values.
    """
    return torch.jit.is_tracing() or _in_onnx_export()


def _onnx_export_flags() -> tuple[Any, Any] | None:
    """The two flags `torch.onnx.is_in_onnx_export()` reads (torch 2.13), or None."""
    try:
        from torch.onnx._internal.exporter import _flags
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
    except ImportError:  # another torch: ask the public function
        return None
    return _flags, GLOBALS


_ONNX_FLAGS = _onnx_export_flags()


def _in_onnx_export() -> bool:
    # `torch.onnx.is_in_onnx_export()` imports its two flag modules on every call: 2.5 µs,
    # and the supernet asks about 13,000 times per second-order search step.
    if _ONNX_FLAGS is None:
        return torch.onnx.is_in_onnx_export()
    flags, globals_ = _ONNX_FLAGS
    return bool(globals_.in_onnx_export or flags._is_onnx_exporting)


class _MatchGradLayout(torch.autograd.Function):
    """Identity forward; backward makes the gradient contiguous in the input's layout."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.layout = memory_format(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.contiguous(memory_format=ctx.layout)


def match_grad_layout(x: Tensor) -> Tensor:
    """`x`, but its gradient reaches what computed `x` contiguous in `x`'s memory layout.

    A no-op unless autograd records and `x` needs a gradient; skipped while tracing for
    export (the traced graph holds no Python autograd Functions)."""
    if not torch.is_grad_enabled() or not x.requires_grad or exporting():
        return x
    return _MatchGradLayout.apply(x)


def cat_channels(states: Sequence[Tensor]) -> Tensor:
    """`torch.cat(states, dim=1)` whose backward gives each state a contiguous gradient in
    its own memory layout instead of a strided channel slice. (B, ΣC, H, W)."""
    return torch.cat([match_grad_layout(s) for s in states], dim=1)



def _channels_last_output(module: torch.nn.Module, inputs: Any, output: Any) -> Any:
    if isinstance(output, Tensor) and output.dim() == 4:
        return output.contiguous(memory_format=torch.channels_last)
    return output


def make_output_channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """Make `module`'s 4-D output channels-last (a forward hook); returns `module`.

    For a network's first conv. A map with one channel (grey images, such as the built-in
    digits) is NCHW- and channels-last-contiguous at once, so converting the input leaves it
    as it is, oneDNN's conv then returns NCHW, and the whole network runs NCHW: measured on
    2 CPU cores, a digits supernet's forward + backward took 2.3× as long, and archsearch's
    native kernels (channels-last only) were never used. A no-op copy-free check wherever
    the output already is channels-last. A hook, so parameters, state_dict and module
    calls (MAC counting, latency tables) stay as they are."""
    module.register_forward_hook(_channels_last_output)
    return module
