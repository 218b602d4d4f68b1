"""The DARTS operations: shapes, ordering and the details the paper's code fixes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archsearch.ops import (
    DARTS_OPS,
    OPS,
    DilConv,
    FactorizedReduce,
    SepConv,
    Zero,
    create_op,
    native,
)
from archsearch.ops.depthwise import DepthwiseConv2d, _DepthwiseConvFunction
from archsearch.registry import UnknownNameError


def test_darts_op_order_is_the_alpha_column_order():
    assert DARTS_OPS == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                         "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    assert all(name in OPS for name in DARTS_OPS)


@pytest.mark.parametrize("name", DARTS_OPS)
@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_keeps_channels_and_scales_resolution(name, stride):
    x = torch.randn(2, 8, 8, 8)
    y = create_op(name, 8, stride)(x)
    assert y.shape == (2, 8, 8 // stride, 8 // stride)


def test_none_is_zero_and_skip_reduces_by_factorized_reduction():
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(Zero(1)(x), torch.zeros_like(x))
    assert isinstance(create_op("skip_connect", 4, 1), nn.Identity)
    assert isinstance(create_op("skip_connect", 4, 2), FactorizedReduce)


def test_avg_pool_excludes_padding():
    ones = torch.ones(1, 1, 4, 4)
    # Counting the padded zeros would give 4/9 in the corners; excluding them gives 1.
    assert torch.allclose(create_op("avg_pool_3x3", 1, 1)(ones), ones)


def test_sep_conv_is_applied_twice_in_relu_conv_bn_order():
    op = create_op("sep_conv_3x3", 4, 2, affine=False)
    assert isinstance(op, SepConv)
    kinds = [type(m).__name__ for m in op.body]
    assert kinds == ["DepthwiseConv2d", "Conv2d", "BatchNorm2d", "ReLU",
                     "DepthwiseConv2d", "Conv2d", "BatchNorm2d"]
    assert op.body[0].stride == (2, 2) and op.body[4].stride == (1, 1)
    assert not op.body[2].affine  # search: non-affine BN
    assert all(m.bias is None for m in op.body if isinstance(m, nn.Conv2d))


def test_dil_conv_has_dilation_two_and_keeps_size():
    for name, kernel, padding in (("dil_conv_3x3", 3, 2), ("dil_conv_5x5", 5, 4)):
        op = create_op(name, 4, 1)
        assert isinstance(op, DilConv)
        dw = op.body[0]
        assert dw.dilation == (2, 2) and dw.kernel_size == (kernel, kernel)
        assert dw.padding == (padding, padding)


def test_conv_ops_begin_with_relu():
    op = create_op("dil_conv_3x3", 4, 1).eval()
    x = torch.randn(2, 4, 6, 6)
    assert torch.allclose(op(x), op.forward_activated(torch.relu(x)))
    assert torch.allclose(op(x), op(torch.relu(x)))  # negative inputs do not matter


def test_factorized_reduce_uses_both_pixel_phases():
    fr = FactorizedReduce(2, 4).eval()
    x = torch.zeros(1, 2, 4, 4)
    x[..., 1::2, 1::2] = 1.0  # only the odd phase is non-zero
    out = fr.conv_odd(torch.relu(x)[:, :, 1:, 1:])
    assert out.abs().sum() > 0
    assert fr(torch.randn(1, 2, 7, 7)).shape == (1, 4, 4, 4)  # odd sizes work too


def test_unknown_op_suggests_the_closest_name():
    with pytest.raises(UnknownNameError, match="did you mean 'sep_conv_3x3'"):
        create_op("sep_conv3x3", 4, 1)


@pytest.mark.parametrize("kernel,dilation,stride", [(3, 2, 1), (5, 2, 1), (3, 1, 1), (5, 2, 2),
                                                    (3, 1, 2)])
def test_fast_depthwise_gradients_match_autograd_of_plain_conv(float64, kernel, dilation,
                                                               stride):
    padding = dilation * (kernel - 1) // 2
    plain = nn.Conv2d(3, 3, kernel, stride=stride, padding=padding, dilation=dilation,
                      groups=3, bias=False)
    weight = plain.weight.detach().clone().requires_grad_()
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    g = torch.randn_like(plain(x))
    fast_out = _DepthwiseConvFunction.apply(x, weight, stride, padding, dilation)
    fast_grads = torch.autograd.grad(fast_out, [x, weight], g, create_graph=True)
    plain_grads = torch.autograd.grad(plain(x), [x, plain.weight], g, create_graph=True)
    for a, b in zip(fast_grads, plain_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    # Double backward (the exact unrolled DARTS gradient needs it) matches as well.
    second_fast = torch.autograd.grad(fast_grads[0].pow(2).sum(), weight)[0]
    second_plain = torch.autograd.grad(plain_grads[0].pow(2).sum(), plain.weight)[0]
    assert torch.allclose(second_fast, second_plain, atol=1e-10)


@pytest.mark.parametrize("dilation,stride", [(2, 1), (2, 2), (1, 1)])
def test_depthwise_module_matches_plain_conv_in_float32(monkeypatch, dilation, stride):
    calls = []
    original = _DepthwiseConvFunction.apply
    monkeypatch.setattr(_DepthwiseConvFunction, "apply",
                        lambda *a: calls.append(1) or original(*a))
    fast = DepthwiseConv2d(4, 3, stride=stride, padding=dilation, dilation=dilation)
    plain = nn.Conv2d(4, 4, 3, stride=stride, padding=dilation, dilation=dilation, groups=4,
                      bias=False)
    plain.weight.data.copy_(fast.weight.data)
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    out_fast, out_plain = fast(x), plain(x)
    assert torch.allclose(out_fast, out_plain, atol=1e-5)
    assert out_fast.is_contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(out_plain)
    for a, b in zip(torch.autograd.grad(out_fast, [x, fast.weight], g),
                    torch.autograd.grad(out_plain, [x, plain.weight], g), strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    # The custom backward is used for dilated stride-1 kernels, and for every channels-last
    # input where the native weight-gradient kernel is built.
    assert bool(calls) == ((dilation > 1 and stride == 1) or native.available())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("per_channel", [False, True])
def test_scaled_op_equals_op_times_scale_with_gradients(dtype, channels_last, per_channel):
    torch.manual_seed(0)
    op = create_op("sep_conv_3x3", 4, 1, affine=False).to(dtype)
    for m in op.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    x = torch.relu(torch.randn(3, 4, 6, 6, dtype=dtype))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    scale = torch.tensor(0.7, dtype=dtype, requires_grad=True)
    # The scale as a scalar, or repeated per channel (as the supernet cell hands it over).
    fast = op.forward_scaled(x, scale.expand(4).contiguous() if per_channel else scale)
    slow = op.forward_activated(x) * scale
    g = torch.randn_like(slow)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert torch.allclose(fast, slow, atol=tol)
    for a, b in zip(torch.autograd.grad(fast, [x, scale], g),
                    torch.autograd.grad(slow, [x, scale], g), strict=True):
        assert torch.allclose(a, b, atol=tol, rtol=1e-4)
