"""The native batch-statistics batch norm equals PyTorch's (values and gradients, checked
against float64 autograd) over channel counts, with and without weight and ReLU, as a sum
into a map, and twice differentiated; it keeps less for backward; it steps aside where it
must; and its checks name what is wrong."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archsearch.ops import native
from archsearch.ops.batch_norm import batch_norm, batch_norm_add_

CL = torch.channels_last
EPS = 1e-5
needs_native = pytest.mark.skipif(
    not native.available(),
    reason="archsearch.ops._kernels was not built (no C compiler with OpenMP at install time)")


def _map(*shape: int, seed: int = 0, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen) * scale + shift).contiguous(memory_format=CL)


def _reference(x: torch.Tensor, weight: torch.Tensor | None, relu: bool) -> torch.Tensor:
    y = F.batch_norm(x, None, None, weight, None, True, 0.0, EPS)
    return F.relu(y) if relu else y


def _leaf(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone().requires_grad_()


def _values_and_grads(fn, inputs: list[torch.Tensor], g: torch.Tensor):  # noqa: ANN001, ANN202
    out = fn(*inputs)
    return out.detach(), torch.autograd.grad(out, [t for t in inputs if t is not None], g)


@needs_native
@pytest.mark.parametrize("channels", [16, 64, 3, 21])  # whole 16-blocks, and remainders
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm_matches_float64_autograd(channels, weighted, relu):
    x = _map(4, channels, 6, 5, scale=2.0, shift=0.5)
    weight = torch.rand(channels) + 0.5 if weighted else None
    g = _map(4, channels, 6, 5, seed=1)
    got, got_grads = _values_and_grads(lambda a, w: batch_norm(a, w, EPS, relu),
                                       [_leaf(x), _leaf(weight)], g)
    want, want_grads = _values_and_grads(lambda a, w: _reference(a, w, relu),
                                         [_leaf(x.double()), _leaf(None if weight is None
                                                                   else weight.double())],
                                         g.double())
    assert got.is_contiguous(memory_format=CL)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    assert len(got_grads) == len(want_grads) == (2 if weighted else 1)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)
    assert got_grads[0].is_contiguous(memory_format=CL)


@needs_native
@pytest.mark.parametrize("channels", [16, 5])
def test_batch_norm_add_sums_into_the_map_and_passes_its_gradient_through(channels):
    x, base = _map(3, channels, 4, 4), _map(3, channels, 4, 4, seed=2)
    weight = torch.rand(channels)
    g = _map(3, channels, 4, 4, seed=3)

    def fused(a, w, b):  # noqa: ANN001, ANN202
        acc = b * 1.0  # a fresh sum, as the supernet's node sums are
        out = batch_norm_add_(acc, a, w, EPS)
        assert out is acc
        return out

    got, got_grads = _values_and_grads(fused, [_leaf(x), _leaf(weight), _leaf(base)], g)
    want, want_grads = _values_and_grads(
        lambda a, w, b: b * 1.0 + _reference(a, w, False),
        [_leaf(x.double()), _leaf(weight.double()), _leaf(base.double())], g.double())
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)


@needs_native
def test_statistics_stay_accurate_far_from_zero():
    # A two-pass variance: a mean 10⁴ standard deviations away costs no accuracy beyond
    # float32's own (a one-pass Σx² − (Σx)²/M would lose every digit here).
    x = _map(8, 16, 8, 8, scale=1.0, shift=1e4)
    with torch.no_grad():
        result = native.batch_norm_forward(x, None, EPS)
    assert result is not None
    y, stats = result
    x64 = x.double()
    mean = x64.mean(dim=(0, 2, 3))
    invstd = 1 / torch.sqrt(x64.var(dim=(0, 2, 3), unbiased=False) + EPS)
    torch.testing.assert_close(stats[0].double(), mean, rtol=2e-7, atol=0.0)  # 2 ulps
    torch.testing.assert_close(stats[1].double(), invstd, rtol=1e-4, atol=0.0)
    assert y.abs().max() < 6


@needs_native
def test_double_backward_matches_pytorch():
    x, weight = _map(4, 16, 5, 5), torch.rand(16) + 0.5
    g = _map(4, 16, 5, 5, seed=4)

    def second(fn):  # noqa: ANN001, ANN202
        a, w = _leaf(x.double()) if fn is _reference else _leaf(x), _leaf(weight)
        if fn is _reference:
            w = _leaf(weight.double())
        grad_x = torch.autograd.grad(fn(a, w, True), a, g.to(a.dtype), create_graph=True)[0]
        return torch.autograd.grad(grad_x.pow(2).sum(), [a, w])

    ours = second(lambda a, w, relu: batch_norm(a, w, EPS, relu))
    for a, b in zip(ours, second(_reference), strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-4)


@needs_native
def test_relu_keeps_only_the_input_for_backward(saved_bytes):
    x = _map(4, 16, 8, 8).requires_grad_()
    fused = saved_bytes(lambda: batch_norm(x, None, EPS, relu=True))
    plain = saved_bytes(lambda: _reference(x, None, True))
    # The input (and the statistics); PyTorch keeps the ReLU's output as well.
    assert fused < 1.1 * x.numel() * 4 < plain


@needs_native
def test_results_are_deterministic():
    x, weight = _map(16, 32, 8, 8), torch.rand(32)
    g = _map(16, 32, 8, 8, seed=5)
    runs = [_values_and_grads(lambda a, w: batch_norm(a, w, EPS), [_leaf(x), _leaf(weight)], g)
            for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0])
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", ["nchw", "float64", "one value per channel"])
def test_other_inputs_take_pytorch_and_get_its_result(case):
    x = {"nchw": torch.randn(2, 4, 3, 3), "float64": _map(2, 4, 3, 3).double(),
         "one value per channel": _map(1, 4, 1, 1)}[case]
    with torch.no_grad():
        assert native.batch_norm_forward(x, None, EPS) is None
    if case == "one value per channel":
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            batch_norm(x, None, EPS)
        return
    torch.testing.assert_close(batch_norm(x, None, EPS, relu=True), _reference(x, None, True))


def test_without_the_kernels_the_pytorch_route_serves(monkeypatch):
    monkeypatch.setattr(native, "_kernels", None)
    x, base, weight = _map(2, 4, 3, 3), _map(2, 4, 3, 3, seed=1), torch.rand(4)
    torch.testing.assert_close(batch_norm(x, weight, EPS), _reference(x, weight, False))
    torch.testing.assert_close(batch_norm_add_(base.clone(), x, weight, EPS),
                               base + _reference(x, weight, False))


@needs_native
def test_the_checked_entry_points_name_what_is_wrong():
    x = _map(2, 4, 3, 3)
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"statistics must be .* \(2, 4\)"):
            native.batch_norm_forward(x, None, EPS, stats=torch.zeros(4))
        with pytest.raises(ValueError, match="ReLU cannot follow a sum"):
            native.batch_norm_forward(x, None, EPS, relu=True, out=torch.zeros_like(x))
        _, stats = native.batch_norm_forward(x, None, EPS)
        with pytest.raises(ValueError, match="does not fit input"):
            native.batch_norm_backward(torch.zeros(2, 4, 3, 2), x, stats, None, True, False)
        # A weight of the wrong length is not the kernel's: PyTorch's own error then.
        assert not native.batch_norm_applies(x, torch.ones(3))
    with pytest.raises(RuntimeError):
        batch_norm(x, torch.ones(3), EPS)
