"""The fast depthwise paths: the fused depthwise→1×1 step and the phase-stacked and tiled
weight gradients give the plain convolutions' values and gradients, and the fused step keeps
less for backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archsearch.ops import create_op, depthwise
from archsearch.ops.depthwise import (
    DepthwiseConv2d,
    _DepthwisePointwiseFunction,
    _phase_weight_grad,
    _phase_weight_grad_pays,
    _tiled_weight_grad,
    depthwise_pointwise,
)

CL = torch.channels_last


def _pair(channels: int, kernel: int, stride: int, dilation: int, dtype: torch.dtype
          ) -> tuple[DepthwiseConv2d, nn.Conv2d]:
    dw = DepthwiseConv2d(channels, kernel, stride=stride, padding=dilation * (kernel - 1) // 2,
                         dilation=dilation).to(dtype)
    return dw, nn.Conv2d(channels, channels + 1, 1, bias=False).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kernel,dilation,stride", [(3, 1, 1), (5, 1, 1), (3, 2, 1), (5, 2, 1),
                                                    (5, 1, 2), (3, 2, 2)])
def test_fused_depthwise_pointwise_matches_the_two_convs(matches_plain, dtype, kernel, dilation,
                                                         stride):
    torch.manual_seed(0)
    dw, pw = _pair(4, kernel, stride, dilation, dtype)
    x = torch.randn(3, 4, 16, 16, dtype=dtype).contiguous(memory_format=CL).requires_grad_()
    fused, plain = depthwise_pointwise(dw, pw, x), _plain(dw, pw, x)
    assert "DepthwisePointwise" in type(fused.grad_fn).__name__
    tol = 1e-4 if dtype == torch.float32 else 1e-11
    g = matches_plain(fused, plain, [x, dw.weight, pw.weight], tol)
    # With frozen weights (DARTS's α-only passes) only the input gradient is computed.
    frozen = _DepthwisePointwiseFunction.apply(x, dw.weight.detach(), pw.weight.detach(),
                                               stride, dw.padding[0], dilation)
    assert torch.allclose(torch.autograd.grad(frozen, x, g)[0],
                          torch.autograd.grad(_plain(dw, pw, x), x, g)[0], atol=tol, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [7, 8, 15, 16])
@pytest.mark.parametrize("kernel", [3, 5])
def test_strided_dilated_conv_runs_on_one_pixel_phase_with_the_same_results(
        matches_plain, dtype, size, kernel):
    # The reduction cells' dil convs (stride 2, dilation 2) as undilated convs of x[::2, ::2].
    torch.manual_seed(size + kernel)
    dw, pw = _pair(4, kernel, 2, 2, dtype)
    x = torch.randn(3, 4, size, size, dtype=dtype).contiguous(memory_format=CL).requires_grad_()
    tol = 1e-4 if dtype == torch.float32 else 1e-11
    for out in (pw(dw(x)), depthwise_pointwise(dw, pw, x)):
        assert "_PixelPhases" in _graph_names(out)
        matches_plain(out, _plain(dw, pw, x), [x, dw.weight, pw.weight], tol)
        out = depthwise_pointwise(dw, pw, x)
        # The input gradient comes back in the input's layout (no mixed-layout sums behind).
        grad_x = torch.autograd.grad(out.sum(), x)[0]
        assert grad_x.is_contiguous(memory_format=CL)
    # Second derivatives, as the exact unrolled gradient needs.
    second = []
    for out in (depthwise_pointwise(dw, pw, x), _plain(dw, pw, x)):
        g_w = torch.autograd.grad(out.pow(2).sum(), dw.weight, create_graph=True)[0]
        second.append(torch.autograd.grad(g_w.pow(2).sum(), x)[0])
    assert torch.allclose(second[0], second[1], atol=1e3 * tol, rtol=1e-3)


def _plain(dw: DepthwiseConv2d, pw: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """pw(dw(x)) by PyTorch's own convolutions."""
    return pw(F.conv2d(x, dw.weight, None, dw.stride[0], dw.padding[0], dw.dilation[0],
                       x.shape[1]))


def _graph_names(out: torch.Tensor) -> set[str]:
    """Names of the autograd nodes behind `out`."""
    seen, todo = set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(n for n, _ in node.next_functions)
    return {type(node).__name__.removesuffix("Backward") for node in seen}


def test_fused_step_supports_double_backward(float64):
    torch.manual_seed(1)
    dw, pw = _pair(3, 5, 1, 1, torch.float64)
    x = torch.randn(2, 3, 7, 7, requires_grad=True)
    grads = {}
    for name, out in (("fused", _DepthwisePointwiseFunction.apply(x, dw.weight, pw.weight,
                                                                  1, 2, 1)),
                      ("plain", pw(dw(x)))):
        g_dw, g_pw = torch.autograd.grad(out.pow(2).sum(), [dw.weight, pw.weight],
                                         create_graph=True)
        grads[name] = torch.autograd.grad(g_dw.pow(2).sum() + g_pw.pow(2).sum(), x)[0]
    assert torch.allclose(grads["fused"], grads["plain"], atol=1e-9)


@pytest.mark.parametrize("name", ["sep_conv_5x5", "dil_conv_3x3"])
def test_ops_keep_no_depthwise_output_for_backward(name, saved_bytes):
    torch.manual_seed(0)
    op = create_op(name, 8, 1, affine=False)
    x = torch.randn(4, 8, 16, 16).relu().contiguous(memory_format=CL).requires_grad_()
    activation = x.numel() * x.element_size()
    fused, plain = saved_bytes(lambda: op.forward_activated(x)), saved_bytes(lambda: op.body(x))
    # sep conv: two depthwise outputs fewer, dil conv: one (weights and BN stats are small).
    assert plain - fused >= (2 if name.startswith("sep") else 1) * activation
    assert torch.allclose(op.forward_activated(x), op.body(x), atol=1e-5)


def _native_weight_grad(g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: int,
                        padding: int, dilation: int) -> torch.Tensor:
    """oneDNN's (or PyTorch's) own ∂/∂weight of a depthwise conv."""
    return torch.ops.aten.convolution_backward(
        g, x, weight, None, (stride, stride), (padding, padding), (dilation, dilation), False,
        (0, 0), x.shape[1], (False, True, False))[1]


@pytest.mark.parametrize("size", [5, 8, 9])
@pytest.mark.parametrize("kernel,dilation,stride,padding", [
    (5, 1, 1, 2), (5, 1, 2, 2), (7, 1, 1, 3), (4, 1, 1, 1), (5, 1, 1, 0),
    (3, 2, 1, 2), (5, 2, 1, 4), (3, 3, 1, 3), (5, 2, 1, 1)])
def test_tiled_weight_gradient_equals_the_native_one(size, kernel, dilation, stride, padding):
    if dilation * (kernel - 1) + 1 > size + 2 * padding:
        pytest.skip("the kernel does not fit")
    torch.manual_seed(size + kernel)
    x = torch.randn(3, 5, size, size).contiguous(memory_format=CL)
    weight = torch.randn(5, 1, kernel, kernel)
    g = torch.randn_like(F.conv2d(x, weight, None, stride, padding, dilation, 5))
    native = _native_weight_grad(g, x, weight, stride, padding, dilation)
    tiled = _tiled_weight_grad(g.contiguous(memory_format=CL), x, kernel, stride, padding,
                               dilation)
    assert tiled.shape == native.shape
    assert torch.allclose(tiled, native, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", [2, 4, 6, 8, 16])
@pytest.mark.parametrize("kernel,dilation", [(3, 2), (5, 2), (3, 3), (5, 3)])
def test_phase_stacked_weight_gradient_equals_the_native_one(size, kernel, dilation):
    padding = dilation * (kernel - 1) // 2
    if size % dilation:
        pytest.skip("the phases need a map size divisible by the dilation")
    torch.manual_seed(size + kernel + dilation)
    x = torch.randn(3, 5, size, size).contiguous(memory_format=CL)
    weight = torch.randn(5, 1, kernel, kernel)
    g = torch.randn_like(F.conv2d(x, weight, None, 1, padding, dilation, 5))
    native = _native_weight_grad(g, x, weight, 1, padding, dilation)
    phased = _phase_weight_grad(g.contiguous(memory_format=CL), x, weight, padding, dilation)
    assert phased.shape == native.shape
    assert torch.allclose(phased, native, atol=1e-4, rtol=1e-4)


def test_phase_stacked_weight_gradient_is_taken_where_it_pays_and_is_twice_differentiable(
        monkeypatch):
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=CL)
    w3, w5 = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 5, 5)
    assert _phase_weight_grad_pays(x, w3, 1, 2, 2)  # dil_conv_3x3
    assert _phase_weight_grad_pays(x, w5, 1, 4, 2)  # dil_conv_5x5 wider than the map
    big = torch.randn(2, 4, 32, 32).contiguous(memory_format=CL)
    # dil_conv_5x5 inside the map: oneDNN's own kernel where it has one (AVX-512).
    assert _phase_weight_grad_pays(big, w5, 1, 4, 2) is not depthwise._AVX512
    monkeypatch.setattr(depthwise, "_AVX512", False)
    assert _phase_weight_grad_pays(big, w5, 1, 4, 2)
    monkeypatch.setattr(depthwise, "_AVX512", True)
    assert not _phase_weight_grad_pays(big, w5, 1, 4, 2)
    assert _phase_weight_grad_pays(big, w3, 1, 2, 2)
    assert not _phase_weight_grad_pays(x, w5, 1, 2, 1)  # undilated
    assert not _phase_weight_grad_pays(x, w3, 2, 2, 2)  # strided
    assert not _phase_weight_grad_pays(x[..., :7, :7], w3, 1, 2, 2)  # odd size
    assert not _phase_weight_grad_pays(x.double(), w3.double(), 1, 2, 2)
    # Through the module (float32, so the phase path runs): the plain conv's second
    # derivatives, as the exact unrolled gradient needs.
    torch.manual_seed(3)
    dw = DepthwiseConv2d(4, 3, padding=2, dilation=2)
    xr = x.relu().requires_grad_()
    grads = []
    for out in (dw(xr), F.conv2d(xr, dw.weight, None, 1, 2, 2, 4)):
        g_w = torch.autograd.grad(out.pow(2).sum(), dw.weight, create_graph=True)[0]
        grads.append(torch.autograd.grad(g_w.pow(2).sum(), xr)[0])
    assert "DepthwiseConv" in type(dw(xr).grad_fn).__name__
    assert torch.allclose(grads[0], grads[1], atol=1e-3, rtol=1e-3)


def test_the_fast_paths_are_bypassed_without_autograd_and_while_tracing():
    dw, pw = _pair(2, 5, 1, 1, torch.float32)
    x = torch.randn(1, 2, 6, 6)
    with torch.no_grad():
        assert depthwise_pointwise(dw, pw, x).grad_fn is None
    # small maps: the plain convs (recomputing would only cost time)
    small = x.requires_grad_()
    assert "DepthwisePointwise" not in type(depthwise_pointwise(dw, pw, small).grad_fn).__name__
    op = create_op("sep_conv_5x5", 2, 1).eval()
    traced = torch.jit.trace(op, (x,), check_trace=False)
    assert "DepthwisePointwise" not in str(traced.graph)
    with torch.no_grad():
        assert torch.allclose(traced(x), op(x), atol=1e-6)
