"""The differentiable expected MACs of the DARTS supernet and cost-aware DARTS."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archsearch.data import load_dataset
from archsearch.errors import ConfigError
from archsearch.hardware import count_macs
from archsearch.spaces import DartsCellSpace
from archsearch.strategies import DARTS
from archsearch.supernet import DartsSupernet
from archsearch.supernet.cost import expected_macs, op_macs_table

SPACE = DartsCellSpace()


def supernet() -> DartsSupernet:
    torch.manual_seed(0)
    return DartsSupernet(SPACE, channels=4, layers=3, in_channels=1)


def test_table_holds_each_ops_macs_where_it_sits():
    net = supernet()
    tables = op_macs_table(net, 8)
    sep3 = SPACE.ops.index("sep_conv_3x3")
    # Cell 0 is the only normal cell (C=4, 8×8): sep_conv_3x3 is two (dw 3×3 + pw 1×1).
    assert tables["normal"][0, sep3] == 2 * (4 * 9 * 64 + 4 * 4 * 64)
    edge = net.cells[0].edges[0].ops["sep_conv_3x3"]
    assert tables["normal"][0, sep3] == count_macs(edge, (4, 8, 8))
    for name in ("none", "max_pool_3x3", "avg_pool_3x3"):
        assert tables["normal"][:, SPACE.ops.index(name)].abs().sum() == 0
    skip = SPACE.ops.index("skip_connect")  # identity in normal cells, a conv when strided
    assert tables["normal"][:, skip].sum() == 0 and tables["reduce"][0, skip] > 0


def test_expected_macs_is_the_softmax_weighted_sum_and_its_gradient():
    net = supernet()
    tables = op_macs_table(net, 8)
    with torch.no_grad():
        net.alpha_normal.normal_()
        net.alpha_reduce.normal_()
    value = expected_macs(net, tables)
    by_hand = sum((F.softmax(a.double(), -1) * tables[k]).sum()
                  for k, a in (("normal", net.alpha_normal), ("reduce", net.alpha_reduce)))
    assert float(value.detach()) == pytest.approx(float(by_hand.detach()))
    value.backward()
    # d/dα_o Σ_o' p_o' c_o' = p_o (c_o − Σ_o' p_o' c_o')   (softmax Jacobian), per edge.
    p = F.softmax(net.alpha_normal.detach().double(), -1)
    c = tables["normal"]
    grad = p * (c - (p * c).sum(-1, keepdim=True))
    assert torch.allclose(net.alpha_normal.grad.double(), grad, rtol=1e-5, atol=1e-3)


def test_one_hot_alpha_gives_the_cost_of_the_chosen_ops():
    net = supernet()
    tables = op_macs_table(net, 8)
    dil5 = SPACE.ops.index("dil_conv_5x5")
    with torch.no_grad():
        net.alpha_normal.fill_(-1e4)
        net.alpha_normal[:, dil5] = 0.0
        net.alpha_reduce.fill_(-1e4)
        net.alpha_reduce[:, dil5] = 0.0
    expected = float(tables["normal"][:, dil5].sum() + tables["reduce"][:, dil5].sum())
    assert float(expected_macs(net, tables).detach()) == pytest.approx(expected)


@pytest.mark.slow
def test_cost_weight_pulls_darts_to_cheaper_cells():
    data = load_dataset("digits", seed=0)
    x, y = data.x_train[:256], data.y_train[:256]

    def run(weight: float) -> list[float]:
        darts = DARTS(SPACE, epochs=3, channels=4, layers=3, batch_size=32, arch_lr=0.05,
                      seed=0, cost_weight=weight)
        result = darts.search(x, y, num_classes=10, progress=False)
        return [r["expected_macs"] for r in result.history]

    plain, cheap = run(0.0), run(5.0)
    assert cheap[-1] < cheap[0] and cheap[-1] < 0.8 * plain[-1]
    with pytest.raises(ConfigError, match="cost-weight"):
        DARTS(SPACE, cost_weight=-1.0)
