"""Oracle tests for the architecture gradient (DARTS eq. 6–8), in float64.

`exact` differentiates through the virtual step by double backward; it is checked against
brute-force finite differences of the unrolled validation loss. `finite_difference` (the
paper's ε-HVP, our default) must then agree with `exact` to a tight tolerance — a
misplaced factor of 2 or ε, as in several popular implementations, fails by orders of
magnitude more than the tolerance.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archsearch.spaces.darts import DartsCellSpace
from archsearch.supernet import DartsSupernet, VirtualStep, exact, finite_difference, first_order
from archsearch.supernet._hypergrad import _flat, loss_at, split_parameters


def _ce(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def _tiny_supernet(size: int = 8):
    torch.manual_seed(0)
    net = DartsSupernet(DartsCellSpace(nodes=2), channels=4, layers=3, in_channels=1)
    with torch.no_grad():
        net.alpha_normal.normal_(0, 0.5)
        net.alpha_reduce.normal_(0, 0.5)
    g = torch.Generator().manual_seed(1)
    train = (torch.randn(6, 1, size, size, generator=g), torch.randint(0, 10, (6,), generator=g))
    val = (torch.randn(6, 1, size, size, generator=g), torch.randint(0, 10, (6,), generator=g))
    return net, train, val


def _step(net, xi=0.05):
    weights, _ = split_parameters(net, net.arch_parameter_names())
    g = torch.Generator().manual_seed(2)
    buffers = {n: torch.randn(w.shape, generator=g) * 0.1 for n, w in weights.items()}
    return VirtualStep(xi=xi, momentum=0.9, weight_decay=3e-4, momentum_buffers=buffers)


def _args(net, train, val, step):
    return (net, net.arch_parameter_names(), _ce, _ce, train, val, step)


def test_first_order_equals_exact_when_xi_is_zero(float64):
    net, train, val = _tiny_supernet()
    step = _step(net, xi=0.0)
    fo = first_order(*_args(net, train, val, step))
    ex = exact(*_args(net, train, val, step))
    for name in fo:
        assert torch.allclose(fo[name], ex[name], rtol=0, atol=1e-14)


# 16×16: the first cells also run the steps that recompute activations in backward
# (depthwise outputs, normalised ReLU inputs), which double backward must see through.
@pytest.mark.parametrize("size", [8, 16])
def test_finite_difference_matches_exact_second_order_gradient(float64, size):
    net, train, val = _tiny_supernet(size)
    step = _step(net, xi=0.05)
    # A small radius: the paper's r = 0.01 steps across ReLU/max-pool kinks of this tiny
    # random network, which blurs the difference quotient; the formula is what we test.
    fd = finite_difference(*_args(net, train, val, step), radius=1e-6)
    ex = exact(*_args(net, train, val, step))
    fo = first_order(*_args(net, train, val, step))
    for name in fd:
        scale = ex[name].abs().max()
        assert (fd[name] - ex[name]).abs().max() < 1e-7 * scale
        # and the second-order term is really there (not just the first-order part)
        assert (fo[name] - ex[name]).abs().max() > 1e-3 * scale


def test_architecture_gradients_leave_the_module_bit_identical(float64):
    net, train, val = _tiny_supernet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for fn in (first_order, finite_difference, exact):
        fn(*_args(net, train, val, _step(net)))
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("missing", [0, 5])
def test_the_flat_virtual_step_equals_the_per_tensor_one_bit_for_bit(missing):
    net, _, _ = _tiny_supernet()
    step = _step(net)
    weights, _ = split_parameters(net, net.arch_parameter_names())
    # Some weights without a momentum buffer yet count as a zero buffer.
    step.momentum_buffers = dict(list(step.momentum_buffers.items())[missing:])
    g = torch.Generator().manual_seed(4)
    grads = [torch.randn(w.shape, generator=g) for w in weights.values()]
    per_tensor = step.apply({n: w.detach() for n, w in weights.items()}, grads)
    flat = step.apply_flat(weights, _flat(list(weights.values())), grads)
    assert list(flat) == list(per_tensor)
    assert all(torch.equal(flat[n], per_tensor[n]) for n in flat)
    assert not any(t.requires_grad for t in flat.values())


class _Tied(nn.Module):
    """Tied weights (one Parameter under two names, one module under two names) and a
    buffer: what `loss_at` must substitute under every name, and clone."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(3, 3)
        self.second = nn.Linear(3, 3)
        self.second.weight = self.first.weight
        self.again = self.second
        self.register_buffer("offset", torch.ones(3))

    def forward(self, x):
        return self.again(torch.tanh(self.second(self.first(x)))) + self.offset


def test_loss_at_substitutes_tied_weights_under_every_name(float64):
    model = _Tied()
    names = [n for n, _ in model.named_parameters()]
    assert names == ["first.weight", "first.bias", "second.bias"]  # one name per tensor
    params = {n: p.detach() * 2 for n, p in model.named_parameters()}
    x = torch.randn(5, 3)
    doubled = copy.deepcopy(model)
    with torch.no_grad():
        for p in doubled.parameters():
            p.mul_(2)
    loss = loss_at(model, lambda m, b: m(b).sum(), x, params)
    assert torch.equal(loss, doubled(x).sum())
    assert torch.equal(model.first.weight, params["first.weight"] / 2)  # left untouched


class _Mixer(nn.Module):
    """A small model with architecture weights: y = Σ_k softmax(a)_k · tanh(W_k x)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(torch.randn(3, generator=g))
        self.w = nn.Parameter(torch.randn(3, 2, 4, generator=g))

    def forward(self, x):
        h = torch.tanh(torch.einsum("kij,bj->bki", self.w, x))
        return (F.softmax(self.a, 0)[None, :, None] * h).sum(1)


def _mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def test_exact_matches_brute_force_derivative_of_the_unrolled_loss(float64):
    model = _Mixer()
    g = torch.Generator().manual_seed(3)
    train = (torch.randn(8, 4, generator=g), torch.randn(8, 2, generator=g))
    val = (torch.randn(8, 4, generator=g), torch.randn(8, 2, generator=g))
    buf = {"w": torch.randn(3, 2, 4, generator=g)}
    step = VirtualStep(xi=0.3, momentum=0.9, weight_decay=0.01, momentum_buffers=buf)

    def unrolled_val(a: torch.Tensor) -> float:
        w = model.w.detach().clone().requires_grad_()
        probe = _Mixer()
        probe.a.data, probe.w.data = a, w.data
        gw = torch.autograd.grad(_mse(probe, train), probe.w)[0]
        probe.w.data = w.data - 0.3 * (0.9 * buf["w"] + gw + 0.01 * w.data)
        return _mse(probe, val).item()

    a0, h = model.a.detach().clone(), 1e-6
    numeric = torch.tensor([(unrolled_val(a0 + h * e) - unrolled_val(a0 - h * e)) / (2 * h)
                            for e in torch.eye(3)])
    grads = exact(model, ["a"], _mse, _mse, train, val, step)
    assert torch.allclose(grads["a"], numeric, atol=1e-8)
    fd = finite_difference(model, ["a"], _mse, _mse, train, val, step)
    assert torch.allclose(fd["a"], numeric, atol=1e-6)


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))
        self.w = nn.Parameter(torch.tensor(-2.0, dtype=torch.float64))


def _toy_val(m, _):
    return m.alpha * m.w - 2 * m.alpha + 1


def _toy_train(m, _):
    return m.w**2 - 2 * m.alpha * m.w + m.alpha**2


@pytest.mark.parametrize("xi,expected", [(0.0, -4.0), (0.3, -0.4), (0.5, 2.0), (0.7, 4.4)])
@pytest.mark.parametrize("fn", [finite_difference, exact])
def test_paper_toy_problem_gradient_at_the_start(xi, expected, fn):
    # ∇α L_val(w', α) with w' = w − ξ·2(w − α) is w' + 2ξα − 2 (paper, Figure 2).
    grads = fn(_Toy(), ["alpha"], _toy_train, _toy_val, None, None, VirtualStep(xi=xi))
    assert grads["alpha"].item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("fn", [exact, finite_difference], ids=["exact", "finite-difference"])
def test_float32_gradients_through_the_native_kernels_equal_pytorchs(fn, monkeypatch):
    # In float32 the supernet runs archsearch's native kernels (batch norm, pooling,
    # depthwise weight gradients), and `exact` differentiates through them twice; the same
    # second-order terms (what eq. 7 adds to the first-order gradient) with PyTorch's
    # kernels only, to float32 rounding.
    from archsearch.ops import native

    if not native.available():
        pytest.skip("archsearch.ops._kernels was not built")
    net, train, val = _tiny_supernet(size=16)
    step = _step(net, xi=0.5)

    def second_order_terms() -> dict[str, torch.Tensor]:
        fo = first_order(*_args(net, train, val, step))
        return {n: g - fo[n] for n, g in fn(*_args(net, train, val, step)).items()}

    ours = second_order_terms()
    monkeypatch.setattr(native, "_kernels", None)
    theirs = second_order_terms()
    for name in ours:
        scale = theirs[name].abs().max()
        assert scale > 0
        assert (ours[name] - theirs[name]).abs().max() < 2e-3 * scale
