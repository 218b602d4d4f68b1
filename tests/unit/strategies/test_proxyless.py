"""The ProxylessNAS strategy: single-path steps, the α update, the cost term, the search."""

from __future__ import annotations

import math

import pytest
import torch

from archsearch.data import load_dataset
from archsearch.errors import ConfigError
from archsearch.spaces.darts import CELL_TYPES, DartsCellSpace
from archsearch.strategies import ProxylessNAS
from archsearch.supernet.proxyless import expected_cost

SPACE = DartsCellSpace()
NONE = SPACE.ops.index("none")
SETTINGS = {"epochs": 1, "channels": 4, "layers": 3, "batch_size": 32, "seed": 0}


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits", limit=128)
    return data.x_train, data.y_train


def _strategy(**kwargs) -> ProxylessNAS:
    return ProxylessNAS(SPACE, **{**SETTINGS, **kwargs})


def _search(digits, **kwargs):
    return _strategy(**kwargs).search(*digits, num_classes=10, progress=False)


def _optimizer(**kwargs):
    strategy = _strategy(**kwargs)
    net = strategy.build_supernet(num_classes=10, in_channels=1)
    gen = torch.Generator().manual_seed(5)  # any (edges, ops) table per cell type will do
    tables = {c: torch.rand(SPACE.num_edges, len(SPACE.ops), generator=gen, dtype=torch.float64)
              for c in CELL_TYPES}
    return strategy.build_optimizer(net, tables)


def _peek(opt):
    """A generator in the optimiser's generator's state: it draws the step's paths."""
    return torch.Generator().set_state(opt.generator.get_state())


def _count_op_calls(net) -> dict[tuple[int, int], list[int]]:
    calls: dict[tuple[int, int], list[int]] = {}
    for ci, cell in enumerate(net.cells):
        for e, edge in enumerate(cell.edges):
            for k in range(len(SPACE.ops)):
                if (module := edge.op(k)) is not None:
                    module.register_forward_hook(
                        lambda *_, key=(ci, e), k=k: calls.setdefault(key, []).append(k))
    return calls


def test_weight_step_runs_one_op_per_edge_and_arch_step_two(digits):
    opt = _optimizer()
    net, batch = opt.net, (digits[0][:16], digits[1][:16])
    calls = _count_op_calls(net)
    single = net.sample_paths(_peek(opt))
    opt.weight_step(batch)
    for ci, cell in enumerate(net.cells):
        kind = "reduce" if cell.reduction else "normal"
        for e in range(len(cell.edges)):
            (k,) = single.ops[kind][e]
            assert calls.pop((ci, e), []) == ([] if k == NONE else [k])
    pairs = net.sample_pairs(_peek(opt))
    opt.arch_step(batch)
    ran_two = 0
    for ci, cell in enumerate(net.cells):
        kind = "reduce" if cell.reduction else "normal"
        for e in range(len(cell.edges)):
            expected = [k for k in pairs.ops[kind][e] if k != NONE]
            assert calls.get((ci, e), []) == expected
            ran_two += len(expected) == 2
    assert ran_two > 0


def test_arch_step_moves_only_the_sampled_pair_and_keeps_the_other_probabilities(digits):
    opt = _optimizer(arch_lr=0.1)
    net = opt.net
    before = {c: torch.softmax(net.alpha(c).detach(), -1) for c in CELL_TYPES}
    pairs = net.sample_pairs(_peek(opt))
    opt.arch_step((digits[0][:16], digits[1][:16]))
    for c in CELL_TYPES:
        after = torch.softmax(net.alpha(c).detach(), -1)
        idx = torch.tensor(pairs.ops[c])
        outside = torch.ones_like(after, dtype=torch.bool).scatter_(1, idx, False)
        assert torch.allclose(after[outside], before[c][outside], rtol=1e-5, atol=1e-7)
        pair_mass = after.gather(1, idx).sum(-1)
        assert torch.allclose(pair_mass, before[c].gather(1, idx).sum(-1), atol=1e-6)
        assert (after.gather(1, idx) - before[c].gather(1, idx)).abs().max() > 1e-3


def test_cost_term_adds_the_exact_gradient_of_the_expected_cost(digits):
    batch = (digits[0][:16], digits[1][:16])
    plain, costly = _optimizer(), _optimizer(cost_weight=2.0)
    grads0, pairs0, loss0 = plain.arch_gradients(batch)
    grads1, pairs1, loss1 = costly.arch_gradients(batch)
    assert pairs0.ops == pairs1.ops  # same seed, same paths: only the cost term differs
    net = costly.net
    value = expected_cost(net, costly.cost_tables)
    autograd = torch.autograd.grad(value, net.arch_parameters())
    scale = 2.0 / costly.uniform_cost
    for c, g in zip(CELL_TYPES, autograd, strict=True):
        assert torch.allclose(grads1[c] - grads0[c], scale * g.float(), rtol=1e-4, atol=1e-9)
    assert loss1.item() == pytest.approx(loss0.item() + scale * value.item(), rel=1e-5)


def test_a_large_cost_weight_makes_the_cheapest_op_win(digits):
    cheap = SPACE.ops.index("avg_pool_3x3")
    table = torch.ones(SPACE.num_edges, len(SPACE.ops), dtype=torch.float64)
    table[:, cheap] = 0.0
    result = _search(digits, epochs=3, arch_lr=0.3, cost_weight=50.0,
                     cost_tables={"normal": table, "reduce": table.clone()})
    assert {op for op in result.arch.values() if op != "none"} == {"avg_pool_3x3"}
    costs = [r["expected_cost"] for r in result.history]
    assert costs[-1] < costs[0] < 2 * SPACE.num_edges


def test_search_logs_every_epoch_and_derives_a_cell(digits):
    records = []
    result = _strategy(epochs=2, warmup_epochs=1, arch_every=2).search(
        *digits, num_classes=10, progress=False, on_epoch=records.append)
    assert [r["epoch"] for r in records] == [1, 2] and result.history == records
    steps = 64 // 32  # one half of the data in batches
    assert [r["arch_steps"] for r in records] == [0, math.ceil(steps / 2)]
    assert records[0]["arch_loss"] is None and records[1]["arch_loss"] > 0
    first, last = records[0], records[-1]
    assert first["alphas"] == records[0]["alphas"] and last["alphas"] == result.alphas
    assert first["expected_macs"] == first["expected_cost"] > 0
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "genotype"} <= set(last)
    SPACE.validate(result.arch)
    assert result.arch == SPACE.derive(result.alphas)


def test_same_seed_same_search(digits):
    a, b = _search(digits), _search(digits)
    assert a.alphas == b.alphas and a.arch == b.arch
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]
    assert _search(digits, seed=1).alphas != a.alphas


def test_a_nan_loss_names_the_epoch_and_the_step(digits):
    x, y = digits[0].clone(), digits[1]
    x[:] = float("nan")
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 1"):
        _strategy().search(x, y, num_classes=10, progress=False)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch-size"), ({"lr": 0.0}, "--lr"),
    ({"arch_lr": -1.0}, "arch-lr"), ({"arch_betas": (1.0, 0.999)}, "arch-betas"),
    ({"arch_every": 0}, "arch-every"), ({"warmup_epochs": 1}, "warmup-epochs"),
    ({"cost_weight": -1.0}, "cost-weight"), ({"cost_weight": float("nan")}, "cost-weight"),
    ({"grad_clip": 0.0}, "grad-clip"), ({"channels": 3}, "channels"), ({"layers": 2}, "layers"),
    ({"cost_tables": {"normal": torch.ones(14, 8)}}, "keys"),
    ({"cost_tables": {"normal": torch.ones(14, 7), "reduce": torch.ones(14, 8)}}, "shape"),
    ({"cost_tables": {"normal": -torch.ones(14, 8), "reduce": torch.ones(14, 8)}}, "≥ 0"),
])
def test_bad_settings_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _strategy(**kwargs)


def test_one_op_and_too_large_batches_are_refused(digits):
    with pytest.raises(ConfigError, match="two"):
        ProxylessNAS(DartsCellSpace(ops=("sep_conv_3x3",)))
    with pytest.raises(ConfigError, match="batch-size"):
        _search(digits, batch_size=100)


@pytest.mark.slow
def test_search_learns_and_prefers_a_conv_to_no_edge():
    data = load_dataset("digits", limit=512)
    space = DartsCellSpace(ops=("none", "sep_conv_3x3"))
    result = ProxylessNAS(space, epochs=8, channels=4, layers=3, batch_size=32, arch_lr=0.05,
                          seed=0).search(data.x_train, data.y_train, num_classes=10,
                                         progress=False)
    assert result.history[-1]["val_accuracy"] > 0.5  # chance is 0.1
    reduce = torch.softmax(torch.tensor(result.alphas["reduce"]), -1)
    assert reduce[:, 1].mean() > 0.6  # sep_conv_3x3 over `none`
