"""Max pooling that recomputes its argmax in backward: autograd's values and gradients
(also differentiated twice), and no int64 indices kept for backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archsearch.ops.pool import max_pool_3x3_lean


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
