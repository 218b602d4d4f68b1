"""Max pooling that recomputes its argmax in backward: autograd's values and gradients
(also differentiated twice), and no int64 indices kept for backward; and the native 3×3
pooling kernels: PyTorch's results bit for bit (ties, NaN, odd sizes, channel remainders),
twice differentiable, and PyTorch's route where they do not apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archsearch.ops import native
from archsearch.ops.pool import max_pool_3x3_lean, pool_3x3

CL = torch.channels_last
needs_native = pytest.mark.skipif(
    not native.available(),
    reason="archsearch.ops._kernels was not built (no C compiler with OpenMP at install time)")


def _pytorch(x: torch.Tensor, stride: int, kind: str) -> torch.Tensor:
    if kind == "max":
        return F.max_pool2d(x, 3, stride, 1)
    return F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)


@needs_native
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape", [(3, 16, 8, 8), (2, 21, 7, 9), (1, 5, 1, 4), (2, 37, 6, 5)])
def test_native_pooling_equals_pytorch_bit_for_bit(kind, stride, shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen)
    x = x.round(decimals=1)  # many ties: the first maximum in row-major order must win
    x = x.contiguous(memory_format=CL).requires_grad_()
    ours, theirs = pool_3x3(x, stride, kind), _pytorch(x, stride, kind)
    assert "NativePool3x3" in type(ours.grad_fn).__name__
    assert torch.equal(ours, theirs) and ours.is_contiguous(memory_format=CL)
    g = torch.randn(theirs.shape, generator=gen).contiguous(memory_format=CL)
    assert torch.equal(torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(theirs, x, g)[0])
    with torch.no_grad():
        assert torch.equal(pool_3x3(x, stride, kind), theirs)


@needs_native
@pytest.mark.parametrize("stride", [1, 2])
def test_native_max_pooling_finds_pytorchs_winners_with_nan_and_infinities(stride):
    x = torch.randn(2, 16, 6, 6)
    x[0, 3, 2, 2] = float("nan")
    x[1, 5] = float("-inf")  # a window of -inf only: its first position wins
    x[1, 7, 0, 0] = float("inf")
    x = x.contiguous(memory_format=CL)
    with torch.no_grad():
        values, indices = torch.ops.aten.max_pool2d_with_indices(x, [3, 3], [stride] * 2,
                                                                 [1, 1])
        assert torch.equal(native.max_pool_3x3_indices(x, stride), indices)
        torch.testing.assert_close(native.pool_3x3(x, stride, "max"), values, rtol=0, atol=0,
                                   equal_nan=True)


@needs_native
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_native_pooling_is_differentiable_twice(kind):
    x = torch.randn(2, 16, 6, 6).contiguous(memory_format=CL).requires_grad_()
    w = torch.randn(2, 16, 6, 6).contiguous(memory_format=CL).requires_grad_()
    second = []
    for pool in (pool_3x3, _pytorch):
        (grad_x,) = torch.autograd.grad((pool(x, 1, kind) ** 2 * w).sum(), x,
                                        create_graph=True)
        second.append(torch.autograd.grad(grad_x.pow(2).sum(), [x, w]))
    for a, b in zip(*second, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_falls_back_to_pytorch_where_the_kernels_do_not_apply(kind, monkeypatch):
    x = torch.randn(2, 3, 5, 5, requires_grad=True)  # NCHW
    torch.testing.assert_close(pool_3x3(x, 2, kind), _pytorch(x, 2, kind))
    monkeypatch.setattr(native, "_kernels", None)
    y = x.detach().contiguous(memory_format=CL).requires_grad_()
    torch.testing.assert_close(pool_3x3(y, 1, kind), _pytorch(y, 1, kind))
    with pytest.raises(ValueError, match="kind must be"):
        pool_3x3(y, 1, "min")


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_lean_max_pooling_matches_autograds(stride, layout):
    torch.manual_seed(stride)
    x = torch.randn(2, 3, 9, 9).contiguous(memory_format=layout).requires_grad_()
    lean, plain = max_pool_3x3_lean(x, stride), F.max_pool2d(x, 3, stride, 1)
    assert "MaxPoolKeepingInput" in type(lean.grad_fn).__name__
    assert torch.equal(lean, plain)
    g = torch.randn_like(plain)
    assert torch.equal(torch.autograd.grad(lean, x, g)[0], torch.autograd.grad(plain, x, g)[0])


def test_lean_max_pooling_is_differentiable_twice(float64):
    torch.manual_seed(0)
    x = torch.randn(2, 2, 6, 6, requires_grad=True)
    w = torch.randn(2, 2, 6, 6, requires_grad=True)
    second = []
    for pool in (max_pool_3x3_lean, lambda t, s: F.max_pool2d(t, 3, s, 1)):
        (gx,) = torch.autograd.grad((pool(x * w, 1) ** 2).sum(), x, create_graph=True)
        second.append(torch.autograd.grad(gx.pow(2).sum(), w)[0])
    assert torch.allclose(*second, atol=1e-12)


def test_lean_max_pooling_keeps_no_indices():
    dtypes = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        dtypes.append(t.dtype)
        return t

    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        max_pool_3x3_lean(x, 1)
    assert dtypes == [torch.float32]
    with torch.no_grad():
        assert max_pool_3x3_lean(x, 2).grad_fn is None


@needs_native
def test_the_kernels_refuse_inconsistent_arguments():
    x = torch.zeros(1, 16, 4, 4).contiguous(memory_format=CL)
    with pytest.raises(ValueError, match="pool_forward: inconsistent arguments"):
        native._kernels.pool_forward(x.data_ptr(), x.data_ptr(), 1, 4, 4, 16, 3, True)
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        native.pool_3x3(x, 3, "max")
    with torch.no_grad(), pytest.raises(ValueError, match="does not fit"):
        native.avg_pool_3x3_backward(torch.zeros(1, 16, 3, 3), x, 1)
