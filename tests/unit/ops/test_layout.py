"""Gradients reach the cells' BNs contiguous in their activations' layout, so PyTorch's
parallel BN backward runs instead of its serial fallback for strided gradients."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from archsearch.ops.layout import cat_channels, match_grad_layout
from archsearch.spaces.darts import NAMED_CELLS, DartsCellSpace

CL = torch.channels_last


def test_cat_channels_equals_cat_and_hands_back_contiguous_gradients():
    torch.manual_seed(0)
    states = [torch.randn(2, c, 5, 5).contiguous(memory_format=CL).requires_grad_()
              for c in (3, 4, 2)]
    out, plain = cat_channels(states), torch.cat(states, dim=1)
    assert torch.equal(out, plain)
    g = torch.randn_like(plain)
    grads = torch.autograd.grad(out, states, g)
    for got, want in zip(grads, torch.autograd.grad(plain, states, g), strict=True):
        assert torch.equal(got, want)
        assert got.is_contiguous(memory_format=CL)
    # torch.cat's own gradients are channel slices: in no memory format at all.
    assert not torch.autograd.grad(plain, states, g)[0].is_contiguous(memory_format=CL)


def test_match_grad_layout_is_the_identity_and_twice_differentiable(float64):
    x = torch.randn(2, 3, 4, 4).contiguous(memory_format=CL).requires_grad_()
    y = match_grad_layout(x)
    assert torch.equal(y, x)
    # An NCHW gradient (as global pooling's backward gives) comes back channels-last.
    g = torch.randn(2, 3, 4, 4, requires_grad=True)
    grad_x = torch.autograd.grad(y, x, g, create_graph=True)[0]
    assert grad_x.is_contiguous(memory_format=CL) and torch.equal(grad_x, g)
    assert torch.equal(torch.autograd.grad(grad_x.pow(2).sum(), g)[0], 2 * g)
    with torch.no_grad():
        assert match_grad_layout(x) is x


class _BatchNormGradLayouts(TorchDispatchMode):
    """Records, for every BN backward, whether its gradient has its input's layout."""

    def __init__(self) -> None:
        super().__init__()
        self.matches: list[bool] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if func is torch.ops.aten.native_batch_norm_backward.default:
            grad, x = args[0], args[1]
            fmt = CL if x.is_contiguous(memory_format=CL) else torch.contiguous_format
            self.matches.append(grad.is_contiguous(memory_format=fmt))
        return func(*args, **(kwargs or {}))


def _bn_grad_layouts(net: torch.nn.Module, x: torch.Tensor) -> list[bool]:
    loss = net(x).logsumexp(1).mean()
    with _BatchNormGradLayouts() as mode:
        loss.backward()
    return mode.matches


def test_every_bn_backward_of_the_supernet_and_a_found_network_gets_a_matching_gradient(
        monkeypatch: pytest.MonkeyPatch):
    from archsearch.networks.darts import DartsNetwork
    from archsearch.ops import native
    from archsearch.supernet.darts import DartsSupernet

    # PyTorch's BN backward for every BN (the supernet's run the native kernels where they
    # are built; test_batch_norm checks the layout of the gradients those get).
    monkeypatch.setattr(native, "_kernels", None)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    supernet = DartsSupernet(DartsCellSpace(nodes=2), channels=4, layers=3)
    found = DartsNetwork(NAMED_CELLS["darts_v2"], channels=4, layers=3, auxiliary=True)
    for net in (supernet, found):
        matches = _bn_grad_layouts(net.train(), x)
        assert len(matches) > 10 and all(matches)


def test_exporting_is_true_exactly_while_tracing_for_onnx_or_torchscript():
    import io

    from archsearch.ops.layout import exporting

    seen: list[bool] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(exporting())
            return x * 2

    x = torch.randn(1, 3)
    Probe()(x)
    torch.onnx.export(Probe(), (x,), io.BytesIO(), dynamo=False)
    torch.jit.trace(Probe(), (x,), check_trace=False)
    Probe()(x)
    assert seen[0] is False and seen[-1] is False
    assert all(seen[1:-1]) and len(seen) >= 4


def test_networks_of_one_channel_images_run_channels_last():
    # A one-channel map is NCHW and channels-last at once; the first conv's output is made
    # channels-last so the cells (and the native kernels) get channels-last maps.
    from archsearch.networks.darts import DartsNetwork
    from archsearch.supernet.darts import DartsSupernet

    supernet = DartsSupernet(DartsCellSpace(nodes=2), channels=4, layers=3, in_channels=1)
    found = DartsNetwork(NAMED_CELLS["darts_v2"], channels=4, layers=3, in_channels=1)
    for net in (supernet, found):
        layouts: list[bool] = []

        def record(_: torch.nn.Module, args: tuple, seen: list[bool] = layouts) -> None:
            seen.extend(a.is_contiguous(memory_format=CL) for a in args
                        if isinstance(a, torch.Tensor) and a.dim() == 4)

        for cell in net.cells:
            cell.register_forward_pre_hook(record)
        x = torch.randn(2, 1, 8, 8)
        assert x.is_contiguous() and x.is_contiguous(memory_format=CL)  # both at once
        net(x).sum().backward()
        assert len(layouts) == 2 * len(net.cells) and all(layouts)
