"""The native depthwise weight-gradient kernel equals autograd's gradient (in float64) over
kernel sizes, strides, dilations, paddings, odd channel counts and non-square maps; it
steps aside where it must; and the PyTorch routes still serve without it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archsearch.ops import depthwise, native
from archsearch.ops.depthwise import DepthwiseConv2d, depthwise_pointwise

CL = torch.channels_last
needs_native = pytest.mark.skipif(
    not native.available(),
    reason="archsearch.ops._kernels was not built (no C compiler with OpenMP at install time)")


def _autograd_weight_grad(x: torch.Tensor, g: torch.Tensor, kernel: int, stride: int,
                          padding: int, dilation: int) -> torch.Tensor:
    """The float64 weight gradient by autograd through F.conv2d: the oracle."""
    w = torch.zeros(x.shape[1], 1, kernel, kernel, dtype=torch.float64, requires_grad=True)
    out = F.conv2d(x.double(), w, None, stride, padding, dilation, x.shape[1])
    return torch.autograd.grad(out, w, g.double())[0]


def _case(batch: int, channels: int, height: int, width: int, kernel: int, stride: int,
          padding: int, dilation: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=gen).contiguous(memory_format=CL)
    span = dilation * (kernel - 1)
    rows = (height + 2 * padding - span - 1) // stride + 1
    cols = (width + 2 * padding - span - 1) // stride + 1
    g = torch.randn(batch, channels, rows, cols, generator=gen).contiguous(memory_format=CL)
    return x, g


def _assert_matches_autograd(x: torch.Tensor, g: torch.Tensor, kernel: int, stride: int,
                             padding: int, dilation: int, given: torch.Tensor | None = None
                             ) -> None:
    """The native gradient (from `given`, default `g`, as the output gradient, computed as in
    a backward pass that records nothing) equals float64 autograd's."""
    with torch.no_grad():
        got = native.depthwise_weight_grad(g if given is None else given, x, kernel, stride,
                                           padding, dilation)
    assert got is not None and got.shape == (x.shape[1], 1, kernel, kernel)
    assert got.is_contiguous()
    want = _autograd_weight_grad(x, g, kernel, stride, padding, dilation)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@needs_native
@pytest.mark.parametrize("channels", [16, 32, 5, 21])  # whole 16-blocks, and remainders
@pytest.mark.parametrize("kernel,stride,padding,dilation", [
    (3, 1, 1, 1), (5, 1, 2, 1), (5, 2, 2, 1), (3, 2, 1, 1), (3, 1, 2, 2), (5, 1, 4, 2),
    (1, 1, 0, 1), (7, 1, 3, 1), (5, 1, 0, 1), (3, 1, 3, 1), (9, 1, 4, 1),
])
def test_native_weight_grad_matches_autograd(channels, kernel, stride, padding, dilation):
    x, g = _case(3, channels, 7, 9, kernel, stride, padding, dilation)
    _assert_matches_autograd(x, g, kernel, stride, padding, dilation)


@needs_native
def test_native_weight_grad_of_a_kernel_wider_than_the_map():
    # The dilated 5×5 conv of the supernet's last cells: 9 pixels wide on a 4×4 map.
    _assert_matches_autograd(*_case(2, 16, 4, 4, 5, 1, 4, 2), 5, 1, 4, 2)


@needs_native
def test_native_weight_grad_takes_a_gradient_in_another_layout():
    x, g = _case(2, 16, 8, 8, 3, 1, 1, 1)
    _assert_matches_autograd(x, g, 3, 1, 1, 1, given=g.contiguous())  # an NCHW gradient


@needs_native
def test_native_weight_grad_is_deterministic_and_agrees_across_thread_counts():
    with torch.no_grad():
        x, g = _case(8, 32, 16, 16, 5, 1, 2, 1)
        first = native.depthwise_weight_grad(g, x, 5, 1, 2, 1)
        again = native.depthwise_weight_grad(g, x, 5, 1, 2, 1)
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1 if threads > 1 else 2)
            other = native.depthwise_weight_grad(g, x, 5, 1, 2, 1)
        finally:
            torch.set_num_threads(threads)
    assert torch.equal(first, again)
    # Sums of 2,048 products of magnitude ~1 each, added in another order: float32 rounding.
    torch.testing.assert_close(first, other, rtol=1e-5, atol=1e-3)


@needs_native
def test_native_weight_grad_rejects_a_gradient_of_the_wrong_shape():
    with torch.no_grad():
        x, g = _case(2, 16, 8, 8, 3, 1, 1, 1)
        with pytest.raises(ValueError, match="does not fit input"):
            native.depthwise_weight_grad(g[:, :, :-1], x, 3, 1, 1, 1)


def test_native_weight_grad_steps_aside_where_it_must():
    x, g = _case(2, 16, 8, 8, 3, 1, 1, 1)
    # Recording gradients (double backward needs differentiable ops):
    with torch.enable_grad():
        assert native.depthwise_weight_grad(g, x, 3, 1, 1, 1) is None
    with torch.no_grad():
        # float64, and inputs that are not channels-last:
        assert native.depthwise_weight_grad(g.double(), x.double(), 3, 1, 1, 1) is None
        assert native.depthwise_weight_grad(g, x.contiguous(), 3, 1, 1, 1) is None


@pytest.mark.parametrize("kernel,dilation,stride", [(3, 1, 1), (5, 1, 1), (3, 2, 1), (5, 2, 1),
                                                    (5, 1, 2)])
def test_pytorch_routes_give_the_same_gradients_without_the_native_kernel(
        monkeypatch, matches_plain, kernel, dilation, stride):
    # Machines without a C compiler run these: the phase-stacked, tiled and oneDNN routes.
    monkeypatch.setattr(depthwise, "depthwise_weight_grad", lambda *args: None)
    torch.manual_seed(0)
    dw = DepthwiseConv2d(16, kernel, stride=stride, padding=dilation * (kernel - 1) // 2,
                         dilation=dilation)
    pw = torch.nn.Conv2d(16, 16, 1, bias=False)
    x = torch.randn(2, 16, 16, 16).contiguous(memory_format=CL).requires_grad_()
    plain = pw(F.conv2d(x, dw.weight, None, stride, dw.padding, dilation, 16))
    matches_plain(depthwise_pointwise(dw, pw, x), plain, [x, dw.weight, pw.weight], 1e-4)
