"""The binary-gated ProxylessNAS supernet: single paths, gated pairs and the α-gradient math."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archsearch.spaces.darts import CELL_TYPES, DartsCellSpace
from archsearch.supernet import DartsSupernet
from archsearch.supernet.proxyless import (
    Paths,
    ProxylessSupernet,
    default_cost_tables,
    expected_cost,
    expected_cost_grad,
    pair_alpha_grad,
    rescale_pairs,
)

SPACE = DartsCellSpace()
NONE = SPACE.ops.index("none")


def supernet(seed: int = 0) -> ProxylessSupernet:
    torch.manual_seed(seed)
    return ProxylessSupernet(SPACE, channels=4, layers=3, in_channels=1)


def images(batch: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def record_calls(net: ProxylessSupernet) -> dict[tuple[int, int], list[int]]:
    """Forward hooks on every op module: (cell, edge) -> α columns of the ops that ran."""
    calls: dict[tuple[int, int], list[int]] = {}
    for ci, cell in enumerate(net.cells):
        for e, edge in enumerate(cell.edges):
            for k in range(len(SPACE.ops)):
                module = edge.op(k)
                if module is not None:
                    module.register_forward_hook(
                        lambda *_, key=(ci, e), k=k: calls.setdefault(key, []).append(k))
    return calls


def kind(cell) -> str:
    return "reduce" if cell.reduction else "normal"


def test_same_weights_names_and_initialisation_as_the_darts_supernet():
    torch.manual_seed(0)
    darts = DartsSupernet(SPACE, channels=4, layers=3, in_channels=1).state_dict()
    ours = supernet().state_dict()
    assert set(ours) == set(darts)
    assert all(torch.equal(ours[k], darts[k]) for k in darts)
    # So the MACs table of DARTS (`op_macs_table`) reads it the same way: cell 0 is the only
    # normal cell (C=4, 8×8), where sep_conv_3x3 is twice a dw 3×3 + a pw 1×1.
    tables = default_cost_tables(supernet(), 8)
    assert tables["normal"][0, SPACE.ops.index("sep_conv_3x3")] == 2 * (4 * 9 * 64 + 4 * 4 * 64)
    assert tables["normal"][:, SPACE.ops.index("max_pool_3x3")].abs().sum() == 0
    assert tables["reduce"][0, SPACE.ops.index("skip_connect")] > 0  # strided: a conv


def test_single_path_runs_exactly_the_sampled_op_of_every_edge():
    net = supernet()
    calls = record_calls(net)
    paths = net.sample_paths(torch.Generator().manual_seed(0))
    net(images(), paths)
    sampled_none = 0
    for ci, cell in enumerate(net.cells):
        for e in range(len(cell.edges)):
            (k,) = paths.ops[kind(cell)][e]
            # One op module per edge, the sampled one; `none` runs nothing at all.
            assert calls.get((ci, e), []) == ([] if k == NONE else [k])
            sampled_none += k == NONE
    assert sampled_none > 0  # the test covered `none` too (seed-dependent, fixed here)


def test_gated_pair_runs_both_sampled_ops_and_its_value_is_the_open_path():
    net = supernet()
    calls = record_calls(net)
    pairs = net.sample_pairs(torch.Generator().manual_seed(0))
    x = images()
    logits = net(x, pairs)
    for ci, cell in enumerate(net.cells):
        for e in range(len(cell.edges)):
            pair = pairs.ops[kind(cell)][e]
            assert len(set(pair)) == 2
            assert calls.get((ci, e), []) == [k for k in pair if k != NONE]
    for c in CELL_TYPES:  # one open gate per edge, where `open` says
        assert pairs.gates[c].sum(-1).eq(1).all()
        assert pairs.gates[c].argmax(-1).tolist() == list(pairs.open[c])
    open_paths = Paths({c: tuple((pair[m],) for pair, m in
                            zip(pairs.ops[c], pairs.open[c], strict=True))
                        for c in CELL_TYPES})
    assert torch.allclose(logits, net(x, open_paths), atol=1e-6)
    # Only the open op keeps its graph: the closed one's weights get no gradient.
    logits.sum().backward()
    for cell in net.cells:
        for e, edge in enumerate(cell.edges):
            pair, m = pairs.ops[kind(cell)][e], pairs.open[kind(cell)][e]
            for pos, k in enumerate(pair):
                name = SPACE.ops[k]
                if name in edge.ops:
                    has_grad = all(p.grad is not None for p in edge.ops[name].parameters())
                    assert has_grad == (pos == m)


def test_a_node_whose_paths_are_all_none_is_zero():
    net = supernet()
    every_none = {c: tuple((NONE,) for _ in range(SPACE.num_edges)) for c in CELL_TYPES}
    logits = net(images(), Paths(every_none))
    # Every cell outputs zeros, so the input no longer matters: all rows are the bias.
    assert torch.allclose(logits, net.classifier.bias.expand_as(logits))


def test_gate_gradient_is_the_derivative_of_the_loss_in_the_gate(float64):
    net = supernet().double()
    pairs = net.sample_pairs(torch.Generator().manual_seed(3))
    x, y = images().double(), torch.tensor([0, 1, 2, 3])
    loss = F.cross_entropy(net(x, pairs), y)
    grad = torch.autograd.grad(loss, [pairs.gates["normal"]])[0]

    def loss_at(e: int, m: int, delta: float) -> float:
        gates = {c: g.detach().clone() for c, g in pairs.gates.items()}
        gates["normal"][e, m] += delta
        return F.cross_entropy(net(x, Paths(pairs.ops, gates, pairs.open)), y).item()

    eps = 1e-6
    for e, m in ((0, 0), (0, 1), (5, 0), (5, 1), (13, 1)):
        numeric = (loss_at(e, m, eps) - loss_at(e, m, -eps)) / (2 * eps)
        assert grad[e, m].item() == pytest.approx(numeric, rel=1e-5, abs=1e-9)
        if NONE in pairs.ops["normal"][e] and pairs.ops["normal"][e][m] == NONE:
            assert grad[e, m] == 0  # `none` outputs zeros: its gate has no effect


def test_pair_alpha_gradient_is_the_binaryconnect_formula(float64):
    alpha = torch.tensor([[0.3, -0.2, 0.5, 0.0], [1.0, 0.0, -1.0, 0.5]])
    pairs = ((2, 0), (1, 3))
    gate_grad = torch.tensor([[0.7, -0.4], [-0.1, 0.25]])
    grad = pair_alpha_grad(alpha, pairs, gate_grad)
    # By hand: ∂L/∂α_i = Σ_j ∂L/∂g_j · q_j (δ_ij − q_i), q the pair's 2-way softmax.
    for e, pair in enumerate(pairs):
        q = F.softmax(alpha[e, list(pair)], dim=0)
        for a, i in enumerate(pair):
            expected = sum(gate_grad[e, b] * q[b] * (float(a == b) - q[a]) for b in range(2))
            assert grad[e, i].item() == pytest.approx(expected.item(), abs=1e-15)
        others = [k for k in range(4) if k not in pair]
        assert grad[e, others].abs().max() == 0
    # The same as autograd of the surrogate Σ_j ∂L/∂g_j · q_j.
    a = alpha.clone().requires_grad_(True)
    surrogate = sum((gate_grad[e] * F.softmax(a[e, list(p)], 0)).sum()
                    for e, p in enumerate(pairs))
    assert torch.allclose(torch.autograd.grad(surrogate, a)[0], grad, atol=1e-15)


def test_rescaling_a_pair_keeps_every_other_probability(float64):
    gen = torch.Generator().manual_seed(0)
    before = torch.randn(14, 8, generator=gen)
    pairs = tuple(tuple(torch.randperm(8, generator=gen)[:2].tolist()) for _ in range(14))
    alpha = before.clone()
    idx = torch.tensor(pairs)
    alpha.scatter_(1, idx, alpha.gather(1, idx) + torch.randn(14, 2, generator=gen))
    updated = alpha.clone()
    rescale_pairs(alpha, before, pairs)
    p0, p1 = F.softmax(before, -1), F.softmax(alpha, -1)
    outside = torch.ones_like(p0, dtype=torch.bool).scatter_(1, idx, False)
    assert torch.allclose(p1[outside], p0[outside], rtol=1e-12, atol=0)
    # Inside the pair the update's ratio survives: the shift is the same for both.
    diff = (alpha - updated).gather(1, idx)
    assert torch.allclose(diff[:, 0], diff[:, 1], atol=1e-12)
    assert not torch.allclose(p1.gather(1, idx), p0.gather(1, idx))


def test_expected_cost_gradient_is_autograd_of_the_sum_of_p_times_cost(float64):
    net = supernet().double()
    with torch.no_grad():
        for alpha in net.arch_parameters():
            alpha.normal_()
    tables = default_cost_tables(net, 8)
    value = expected_cost(net, tables)
    by_hand = sum((F.softmax(net.alpha(c), -1) * tables[c]).sum() for c in CELL_TYPES)
    assert value.item() == pytest.approx(by_hand.item())
    autograd = torch.autograd.grad(value, net.arch_parameters())
    for c, g in zip(CELL_TYPES, autograd, strict=True):
        assert torch.allclose(expected_cost_grad(net.alpha(c), tables[c]), g, rtol=1e-12)


def test_sampling_follows_the_probabilities_and_the_generator():
    net = supernet()
    with torch.no_grad():
        net.alpha_normal.zero_()
        net.alpha_normal[0] = torch.log(torch.tensor([0.5, 0.3, 0.1, 0.1, 0, 0, 0, 0]) + 1e-30)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(8)
    for _ in range(1000):
        counts[net.sample_paths(gen).ops["normal"][0][0]] += 1
    assert torch.allclose(counts / 1000, torch.tensor([0.5, 0.3, 0.1, 0.1, 0, 0, 0, 0]),
                          atol=0.05)
    first = net.sample_pairs(torch.Generator().manual_seed(7))
    again = net.sample_pairs(torch.Generator().manual_seed(7))
    assert first.ops == again.ops and all(first.gates[c].equal(again.gates[c])
                                          for c in CELL_TYPES)


def test_a_pair_is_drawn_even_when_one_op_has_all_the_probability():
    net = supernet()
    with torch.no_grad():
        net.alpha_normal.fill_(-1e4)
        net.alpha_normal[:, 4] = 1e4
    pairs = net.sample_pairs(torch.Generator().manual_seed(0))
    assert all(4 in pair and len(set(pair)) == 2 for pair in pairs.ops["normal"])


def test_without_paths_the_most_likely_path_runs_and_derive_follows_alpha():
    net = supernet()
    with torch.no_grad():
        net.alpha_normal.normal_()
        net.alpha_reduce.normal_()
    argmax = Paths({c: tuple((int(k),) for k in net.alpha(c).argmax(-1)) for c in CELL_TYPES})
    x = images()
    assert torch.equal(net(x), net(x, argmax))
    arch = net.derive()
    SPACE.validate(arch)
    assert arch == SPACE.derive(net.alphas())
