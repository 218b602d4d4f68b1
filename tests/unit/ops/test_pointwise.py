"""1×1 convolutions as matrix products: the conv's values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archsearch.ops.pointwise import (
    MM_MAX_PIXELS,
    pointwise,
    pointwise_input_grad,
    pointwise_weight_grad,
)

CL = torch.channels_last


def _native(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return torch.ops.aten.convolution_backward(
        g, x, w, None, (1, 1), (0, 0), (1, 1), False, (0, 0), 1, (True, True, False))[:2]


# 8×8 and 16×16 run the forward pass by mm; 32×32 (over MM_MAX_PIXELS) by the conv; NCHW
# maps always by the conv.
@pytest.mark.parametrize("size", [8, 16, 32])
@pytest.mark.parametrize("layout", [CL, torch.contiguous_format])
def test_pointwise_matches_the_conv_and_its_gradients(float64, size, layout):
    torch.manual_seed(size)
    x = torch.randn(3, 5, size, size).contiguous(memory_format=layout).requires_grad_()
    w = torch.randn(7, 5, 1, 1, requires_grad=True)
    out = pointwise(x, w)
    assert out.shape == (3, 7, size, size)
    assert torch.allclose(out, F.conv2d(x, w), atol=1e-12)
    if layout == CL:
        assert out.is_contiguous(memory_format=CL)
    g = torch.randn_like(out).contiguous(memory_format=layout)
    grad_x, grad_w = _native(g, x.detach(), w.detach())
    auto = torch.autograd.grad(out, [x, w], g)
    assert torch.allclose(auto[0], grad_x, atol=1e-12) and torch.allclose(auto[1], grad_w)
    assert torch.allclose(pointwise_input_grad(g, w.detach()), grad_x, atol=1e-12)
    assert torch.allclose(pointwise_weight_grad(g, x.detach(), w.detach()), grad_w, atol=1e-10)


def test_pointwise_is_twice_differentiable(float64):
    torch.manual_seed(0)
    assert 8 * 8 <= MM_MAX_PIXELS  # so this runs the matrix product
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=CL).requires_grad_()
    w = torch.randn(3, 4, 1, 1, requires_grad=True)
    second = []
    for fn in (pointwise, F.conv2d):
        g_w = torch.autograd.grad(fn(x, w).pow(2).sum(), w, create_graph=True)[0]
        second.append(torch.autograd.grad(g_w.pow(2).sum(), x)[0])
    assert torch.allclose(second[0], second[1], atol=1e-10)
