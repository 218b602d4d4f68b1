"""1×1 convolutions as matrix products: the conv's values and gradients, by PyTorch's
products and by the native kernel (against float64, twice differentiable, the same on any
thread count), and PyTorch's route where the kernel does not apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archsearch.ops import native
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


needs_native = pytest.mark.skipif(
    not native.available(),
    reason="archsearch.ops._kernels was not built (no C compiler with OpenMP at install time)")


def _f64_conv_and_grads(x: torch.Tensor, w: torch.Tensor, g: torch.Tensor):  # noqa: ANN202
    x64, w64 = (t.detach().double().requires_grad_() for t in (x, w))
    out = F.conv2d(x64, w64)
    return out.detach(), *torch.autograd.grad(out, [x64, w64], g.double())


@needs_native
@pytest.mark.parametrize("c_in,c_out", [(16, 16), (32, 64), (5, 16), (48, 32), (21, 48)])
@pytest.mark.parametrize("size", [8, 32, 3])
def test_the_native_product_matches_float64_conv(c_in, c_out, size):
    gen = torch.Generator().manual_seed(c_in + size)
    x = torch.randn(3, c_in, size, size, generator=gen).contiguous(memory_format=CL)
    x.requires_grad_()
    w = torch.randn(c_out, c_in, 1, 1, generator=gen, requires_grad=True)
    out = pointwise(x, w)
    assert "NativePointwise" in type(out.grad_fn).__name__
    assert out.is_contiguous(memory_format=CL)
    g = torch.randn(out.shape, generator=gen).contiguous(memory_format=CL)
    want = _f64_conv_and_grads(x, w, g)
    got = (out.detach(), *torch.autograd.grad(out, [x, w], g))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(pointwise(x, w), out.detach(), rtol=0, atol=0)


@needs_native
def test_the_native_product_is_twice_differentiable_and_the_same_on_any_thread_count():
    x = torch.randn(2, 16, 6, 6).contiguous(memory_format=CL).requires_grad_()
    w = torch.randn(32, 16, 1, 1, requires_grad=True)
    second = []
    for conv in (pointwise, F.conv2d):
        (grad_x,) = torch.autograd.grad((conv(x, w) ** 2).sum(), x, create_graph=True)
        second.append(torch.autograd.grad(grad_x.pow(2).sum(), [x, w]))
    for a, b in zip(*second, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)
    big = torch.randn(16, 16, 32, 32).contiguous(memory_format=CL)
    threads = torch.get_num_threads()
    try:
        with torch.no_grad():
            torch.set_num_threads(1)
            one = pointwise(big, w)
            torch.set_num_threads(2)
            two = pointwise(big, w)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)  # every output summed over the input channels in order


def test_other_output_widths_and_the_unbuilt_case_take_pytorch(monkeypatch):
    x = torch.randn(2, 16, 4, 4).contiguous(memory_format=CL).requires_grad_()
    w = torch.randn(8, 16, 1, 1)  # 8 outputs: not a multiple of 16
    assert "NativePointwise" not in type(pointwise(x, w).grad_fn).__name__
    torch.testing.assert_close(pointwise(x, w), F.conv2d(x, w))
    monkeypatch.setattr(native, "_kernels", None)
    w16 = torch.randn(16, 16, 1, 1)
    torch.testing.assert_close(pointwise(x, w16), F.conv2d(x, w16))


@needs_native
def test_the_checked_product_names_a_misfit_matrix():
    x = torch.randn(2, 16, 4, 4).contiguous(memory_format=CL)
    with torch.no_grad(), pytest.raises(ValueError, match="does not fit input"):
        native.pointwise_product(x, torch.zeros(8, 16))
