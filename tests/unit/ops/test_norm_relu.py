"""BN → ReLU → depthwise → 1×1 as one step (the middle of a sep conv): the plain layers'
values and gradients (also with frozen weights and twice differentiated), less kept for
backward, and the plain layers wherever the step does not apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archsearch.ops import create_op
from archsearch.ops.depthwise import DepthwiseConv2d
from archsearch.ops.norm_relu import (
    _NormReluDepthwisePointwise,
    fusable_norm,
    norm_relu_depthwise_pointwise,
)

CL = torch.channels_last


def _layers(channels: int, kernel: int, dilation: int, dtype: torch.dtype
            ) -> tuple[nn.BatchNorm2d, DepthwiseConv2d, nn.Conv2d]:
    bn = nn.BatchNorm2d(channels, affine=False, track_running_stats=False)
    dw = DepthwiseConv2d(channels, kernel, padding=dilation * (kernel - 1) // 2,
                         dilation=dilation).to(dtype)
    return bn, dw, nn.Conv2d(channels, channels + 2, 1, bias=False).to(dtype)


def _plain(bn, dw, pw, z):
    return pw(dw(torch.relu(bn(z))))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kernel,dilation", [(3, 1), (5, 1), (3, 2), (5, 2)])
def test_the_step_gives_the_plain_layers_values_and_gradients(matches_plain, dtype, kernel,
                                                              dilation):
    torch.manual_seed(kernel + dilation)
    bn, dw, pw = _layers(4, kernel, dilation, dtype)
    z = torch.randn(3, 4, 16, 16, dtype=dtype).contiguous(memory_format=CL).requires_grad_()
    fused, plain = norm_relu_depthwise_pointwise(bn, dw, pw, z), _plain(bn, dw, pw, z)
    assert "NormReluDepthwisePointwise" in type(fused.grad_fn).__name__
    tol = 1e-4 if dtype == torch.float32 else 1e-11
    g = matches_plain(fused, plain, [z, dw.weight, pw.weight], tol)
    # Frozen weights (DARTS's α-only passes): the input gradient alone, nothing rebuilt.
    frozen = _NormReluDepthwisePointwise.apply(z, dw.weight.detach(), pw.weight.detach(),
                                               bn.eps, 1, dw.padding[0], dilation)
    assert torch.allclose(torch.autograd.grad(frozen, z, g)[0],
                          torch.autograd.grad(_plain(bn, dw, pw, z), z, g)[0], atol=tol,
                          rtol=1e-4)


def test_the_step_is_differentiable_twice(float64):
    torch.manual_seed(1)
    bn, dw, pw = _layers(3, 5, 1, torch.float64)
    z = torch.randn(2, 3, 16, 16, requires_grad=True)
    second = {}
    for name, out in (("fused", norm_relu_depthwise_pointwise(bn, dw, pw, z)),
                      ("plain", _plain(bn, dw, pw, z))):
        g_dw, g_pw = torch.autograd.grad(out.pow(2).sum(), [dw.weight, pw.weight],
                                         create_graph=True)
        second[name] = torch.autograd.grad(g_dw.pow(2).sum() + g_pw.pow(2).sum(), z)[0]
    assert torch.allclose(second["fused"], second["plain"], atol=1e-9)


def test_a_search_sep_conv_keeps_one_activation_less(saved_bytes):
    torch.manual_seed(0)
    op = create_op("sep_conv_3x3", 8, 1, affine=False)
    for m in op.modules():
        if isinstance(m, nn.BatchNorm2d):  # as the supernet makes them: batch statistics
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    x = torch.randn(4, 8, 16, 16).relu().contiguous(memory_format=CL).requires_grad_()
    activation = x.numel() * x.element_size()
    fused, plain = saved_bytes(lambda: op.forward_activated(x)), saved_bytes(lambda: op.body(x))
    # Plain: x, both depthwise outputs, both BN inputs, the ReLU output. Fused: x, BN inputs.
    assert plain - fused >= 3 * activation
    assert torch.allclose(op.forward_activated(x), op.body(x), atol=1e-5)


def test_only_batch_statistics_norms_without_affine_parameters_are_fused():
    assert fusable_norm(nn.BatchNorm2d(4, affine=False, track_running_stats=False))
    assert not fusable_norm(nn.BatchNorm2d(4, affine=False))  # running statistics in eval
    assert not fusable_norm(nn.BatchNorm2d(4, track_running_stats=False))  # affine
    # A discrete network's sep conv (affine BNs) keeps the plain layers.
    op = create_op("sep_conv_3x3", 4, 1)
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    assert torch.allclose(op(x), op.body(torch.relu(x)))


def test_the_plain_layers_run_without_autograd_and_on_small_maps():
    bn, dw, pw = _layers(2, 3, 1, torch.float32)
    z = torch.randn(2, 2, 8, 8, requires_grad=True)
    assert "NormRelu" not in type(norm_relu_depthwise_pointwise(bn, dw, pw, z).grad_fn).__name__
    with torch.no_grad():
        big = torch.randn(2, 2, 16, 16)
        assert norm_relu_depthwise_pointwise(bn, dw, pw, big).grad_fn is None
        assert torch.allclose(norm_relu_depthwise_pointwise(bn, dw, pw, big),
                              _plain(bn, dw, pw, big))
