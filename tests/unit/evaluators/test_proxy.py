"""Zero-cost proxies against hand computations on tiny networks, plus ZeroCostEvaluator."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archsearch.data import load_dataset
from archsearch.errors import ArchsearchError
from archsearch.evaluators import EVALUATORS, PROXIES, TrialFailed, ZeroCostEvaluator
from archsearch.evaluators.proxy import grad_norm, naswot, snip, synflow
from archsearch.space import SearchSpace
from archsearch.spaces.darts import DartsCellSpace


def _mlp(widths: tuple[int, ...], *, seed: int = 0, bn: bool = False) -> nn.Sequential:
    """Linear (no bias) → ReLU → … → Linear, in float64, with seeded weights."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(w_in, w_out, bias=False))
        if i < len(widths) - 2:
            layers += [nn.BatchNorm1d(w_out)] if bn else []
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).double()


def _batch(n: int = 6, d: int = 4, k: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randint(0, k, (n,), generator=g))


def _weights(model: nn.Sequential) -> list[np.ndarray]:
    return [m.weight.detach().numpy().copy() for m in model if isinstance(m, nn.Linear)]


# --- synflow -----------------------------------------------------------------------------
def test_synflow_of_two_linear_layers_is_twice_the_path_sum():
    # f(1) = |W2||W1|1 and R = 1ᵀ f: each layer contributes Σ |W ⊙ ∂R/∂W| = R, so 2R.
    model = _mlp((4, 5, 3))
    w1, w2 = _weights(model)
    expected = 2 * (np.ones(3) @ np.abs(w2) @ np.abs(w1) @ np.ones(4))
    x, y = _batch()
    assert synflow(model, x, y) == pytest.approx(expected, rel=1e-12)


def test_synflow_ignores_bn_signs_and_input_values_and_leaves_the_model_alone():
    model, with_bn = _mlp((4, 5, 3)), _mlp((4, 5, 3), bn=True)
    x, y = _batch()
    score = synflow(model, x, y)
    before = [p.clone() for p in model.parameters()]
    assert synflow(with_bn, x, y) == pytest.approx(score, rel=1e-12)  # BN → identity
    assert synflow(model, 100 * x.neg(), y) == score  # only the input's shape is used
    with torch.no_grad():
        model[0].weight.neg_()
    assert synflow(model, x, y) == pytest.approx(score, rel=1e-12)  # |θ|: signs do not count
    assert torch.equal(model[0].weight, before[0].neg())
    assert torch.equal(model[2].weight, before[1]) and model[2].weight.grad is None


# --- snip and grad_norm ------------------------------------------------------------------
def _hand_gradients(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor):
    """∂L/∂W of mean cross-entropy for x → W1 → ReLU → W2, by the chain rule in numpy."""
    w1, w2 = _weights(model)
    xn, n = x.numpy(), len(y)
    z1 = xn @ w1.T
    h = np.maximum(z1, 0)
    z2 = h @ w2.T
    p = np.exp(z2 - z2.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta2 = (p - np.eye(w2.shape[0])[y.numpy()]) / n  # ∂L/∂z2
    delta1 = (delta2 @ w2) * (z1 > 0)  # ∂L/∂z1
    return (w1, delta1.T @ xn), (w2, delta2.T @ h)


def test_snip_and_grad_norm_match_the_chain_rule():
    model = _mlp((4, 5, 3))
    x, y = _batch()
    pairs = _hand_gradients(model, x, y)
    assert snip(model, x, y) == pytest.approx(sum(np.abs(w * g).sum() for w, g in pairs),
                                              rel=1e-10)
    assert grad_norm(model, x, y) == pytest.approx(sum(np.linalg.norm(g) for _, g in pairs),
                                                   rel=1e-10)
    assert model[0].weight.grad is None  # computed on a copy


# --- naswot ------------------------------------------------------------------------------
class _FunctionalRelu(nn.Module):
    """The same network with `F.relu` instead of an `nn.ReLU` module (as DARTS ops do)."""

    def __init__(self, first: nn.Linear, second: nn.Linear) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x):
        return self.second(F.relu(self.first(x)))


def test_naswot_of_known_codes_and_functional_relus():
    first = nn.Linear(2, 3, bias=False).double()
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    model = nn.Sequential(first, nn.ReLU(), nn.Linear(3, 2).double())
    # Pre-activations (1,-2,-1), (-2,1,-1), (1,2,3): codes 100, 010, 111; N_A = 3 and all
    # Hamming distances are 2, so K_H = [[3,1,1],[1,3,1],[1,1,3]] with det 20.
    x = torch.tensor([[1.0, -2.0], [-2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    y = torch.zeros(3, dtype=torch.long)
    assert naswot(model, x, y) == pytest.approx(math.log(20.0), rel=1e-12)
    assert naswot(_FunctionalRelu(first, model[2]), x, y) == pytest.approx(math.log(20.0))


def test_naswot_grows_with_width_and_is_minus_inf_for_repeated_codes():
    narrow = _mlp((4, 12, 3), seed=0)
    wide = _mlp((4, 20, 3), seed=1)
    with torch.no_grad():  # the wide net holds the narrow one's units plus eight more
        wide[0].weight[:12] = narrow[0].weight
    x, y = _batch(n=5)
    # K_wide = K_narrow + K_extra with K_extra ⪰ 0 and non-zero, so det grows strictly.
    assert naswot(wide, x, y) > naswot(narrow, x, y) > 0
    assert naswot(narrow, torch.cat([x[:2], x[:2]]), y[:4]) == -math.inf


# --- all proxies -------------------------------------------------------------------------
def test_every_proxy_is_deterministic_and_leaves_bn_statistics_alone():
    assert PROXIES.names() == ["synflow", "grad_norm", "snip", "naswot"]
    model = _mlp((4, 5, 3), bn=True)
    x, y = _batch()
    stats = model[1].running_mean.clone()
    for name in PROXIES:
        proxy = PROXIES.get(name)
        assert proxy(model, x, y) == proxy(model, x, y), name
    assert torch.equal(model[1].running_mean, stats)


def chain(c, *, width: int = 8, depth: int = 2, num_classes: int = 10,
          in_channels: int = 1) -> nn.Module:
    """A stem and `depth` blocks of conv-BN-ReLU, skip or "zero" (the DARTS `none` op)."""
    blocks = [c.op(f"block{i}", {
        "conv": partial(_conv_bn_relu, width),
        "skip": nn.Identity,
        "zero": _Zero,
    }) for i in range(depth)]
    return nn.Sequential(_conv_bn_relu(width, in_channels), *blocks, nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(width, num_classes))


def _conv_bn_relu(width: int, c_in: int | None = None) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in or width, width, 3, padding=1, bias=False),
                         nn.BatchNorm2d(width), nn.ReLU())


class _Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits", seed=0)
    return data.x_train[:200], data.y_train[:200]


def test_evaluator_ranks_a_conv_chain_above_a_chain_that_passes_nothing(digits):
    space = SearchSpace.from_builder(chain, name="chain")
    x, y = digits
    evaluator = ZeroCostEvaluator(space, x=x, y=y, num_classes=10, proxy="all", batch_size=16)
    good = evaluator(space.arch({"block0": "conv", "block1": "conv"}))
    dead = evaluator(space.arch({"block0": "zero", "block1": "zero"}))
    assert set(good) == {*PROXIES.names(), "num_params", "macs"}
    # The output of the dead chain does not depend on any weight: no gradient, no flow.
    for name in ("synflow", "grad_norm", "snip"):
        assert dead[name] == 0.0 < good[name], name
    assert good["num_params"] > dead["num_params"] and good["macs"] > dead["macs"]


def test_evaluator_is_deterministic_per_arch_and_restores_the_global_rng(digits, device):
    space = SearchSpace.from_builder(chain, name="chain")
    a, b = space.arch({"block0": "conv", "block1": "skip"}), space.arch(
        {"block0": "skip", "block1": "conv"})
    x, y = digits
    state = torch.random.get_rng_state()
    make = partial(EVALUATORS.get("proxy"), space, x=x, y=y, num_classes=10, proxy="all",
                   batch_size=16, device=device)
    one, two = make(), make()
    a1, b1 = one(a), one(b)
    b2, a2 = two(b), two(a)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a1 == a2 and b1 == b2 and a1["synflow"] != b1["synflow"]
    assert make(proxy="snip")(a)["snip"] == a1["snip"]  # independent of the other proxies
    assert make(seed=1)(a)["snip"] != a1["snip"]


def test_evaluator_failures(digits):
    space = SearchSpace.from_builder(chain, name="chain")
    x, y = digits
    with pytest.raises(ArchsearchError, match="did you mean 'synflow'"):
        ZeroCostEvaluator(space, x=x, y=y, num_classes=10, proxy="synflw")
    evaluator = ZeroCostEvaluator(space, x=x[:1].expand(4, -1, -1, -1), y=y[:4], num_classes=10,
                                  proxy="naswot")
    with pytest.raises(TrialFailed, match="proxy naswot is -inf"):
        evaluator(space.arch({"block0": "conv", "block1": "conv"}))  # identical inputs


def test_all_proxies_run_on_a_darts_network(digits):
    space = DartsCellSpace()
    x, y = digits
    evaluator = ZeroCostEvaluator(space, x=x, y=y, num_classes=10, proxy="all", batch_size=16,
                                  build_kwargs={"channels": 4, "layers": 3})
    scores = evaluator(space.named("darts_v2"))
    assert all(math.isfinite(v) and v > 0 for v in scores.values())
