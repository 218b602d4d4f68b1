"""Pixel phases: the same values and gradients as slicing, in the input's layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archsearch.ops import FactorizedReduce
from archsearch.ops.phase import pixel_phases, stride_phase

CL = torch.channels_last


@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("layout", [CL, torch.contiguous_format])
def test_phases_are_the_strided_slices_and_their_gradients_scatter_back(float64, size, layout):
    torch.manual_seed(size)
    x = torch.randn(2, 3, size, size).contiguous(memory_format=layout).requires_grad_()
    even, odd = pixel_phases(x, 2, (0, 1))
    assert torch.equal(even, x[:, :, ::2, ::2]) and torch.equal(odd, x[:, :, 1::2, 1::2])
    assert even.is_contiguous(memory_format=layout) and odd.is_contiguous(memory_format=layout)
    g_even, g_odd = torch.randn_like(even), torch.randn_like(odd)
    grad = torch.autograd.grad((even * g_even).sum() + (odd * g_odd).sum(), x)[0]
    expected = torch.zeros_like(x)
    expected[:, :, ::2, ::2] = g_even
    expected[:, :, 1::2, 1::2] = g_odd
    assert torch.equal(grad, expected)
    assert grad.is_contiguous(memory_format=layout)


def test_an_unused_phase_gets_no_gradient_and_double_backward_works(float64):
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    even, _ = pixel_phases(x, 2, (0, 1))
    # Only the even phase is used: the odd pixels' gradient is exactly zero.
    grad = torch.autograd.grad(even.pow(3).sum(), x, create_graph=True)[0]
    assert torch.equal(grad[:, :, 1::2, 1::2], torch.zeros(2, 3, 3, 3))
    second = torch.autograd.grad(grad.sum(), x)[0]
    assert torch.allclose(second[:, :, ::2, ::2], 6 * x[:, :, ::2, ::2].detach())
    assert torch.equal(stride_phase(x, 2), x[:, :, ::2, ::2])


def test_bad_offsets_are_refused():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="distinct"):
        pixel_phases(x, 2, (0, 0))
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        pixel_phases(x, 2, (2,))


@pytest.mark.parametrize("size", [7, 8])
def test_factorized_reduce_on_phases_equals_its_padded_stride_two_formula(float64, size):
    torch.manual_seed(0)
    fr = FactorizedReduce(3, 4)
    x = torch.randn(2, 3, size, size).contiguous(memory_format=CL).requires_grad_()
    out = fr(x)  # recording gradients: the convs run on the pixel phases

    def padded(x: torch.Tensor) -> torch.Tensor:  # DARTS's own formula
        r = F.relu(x)
        shifted = F.pad(r[:, :, 1:, 1:], (0, 1, 0, 1))
        z = torch.cat([F.conv2d(r, fr.conv_even.weight, stride=2),
                       F.conv2d(shifted, fr.conv_odd.weight, stride=2)], dim=1)
        return fr.bn(z)

    expected = padded(x)
    assert torch.allclose(out, expected, atol=1e-12)
    probe = torch.randn_like(out)
    params = [x, fr.conv_even.weight, fr.conv_odd.weight, fr.bn.weight]
    for a, b in zip(torch.autograd.grad((out * probe).sum(), params),
                    torch.autograd.grad((expected * probe).sum(), params), strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    with torch.no_grad():  # the module calls (as MAC counting hooks them): the same values
        assert torch.allclose(fr(x), expected, atol=1e-12)
