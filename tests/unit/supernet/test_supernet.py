"""The DARTS supernet: size, α as module state, and equivalence with the per-edge formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archsearch.hardware import count_macs
from archsearch.ops import POOLING_OPS, native
from archsearch.spaces.darts import DartsCellSpace
from archsearch.supernet import DartsSupernet

SPACE = DartsCellSpace()


def test_search_network_has_the_published_number_of_weights():
    net = DartsSupernet(SPACE, channels=16, layers=8, num_classes=10)
    assert sum(p.numel() for p in net.weight_parameters()) == 1_930_618
    assert net.alpha_normal.shape == net.alpha_reduce.shape == (14, 8)


def test_alphas_live_in_the_state_dict_and_restore():
    torch.manual_seed(0)
    net = DartsSupernet(SPACE, channels=4, layers=3)
    state = net.state_dict()
    assert {"alpha_normal", "alpha_reduce"} <= set(state)
    other = DartsSupernet(SPACE, channels=4, layers=3)
    other.load_state_dict(state)
    assert torch.equal(other.alpha_normal, net.alpha_normal)
    assert other.derive() == net.derive()


def test_alpha_initialisation_is_small_gaussian():
    torch.manual_seed(0)
    net = DartsSupernet(SPACE, channels=4, layers=3)
    assert 1e-4 < net.alpha_normal.std().item() < 1e-2


def _per_edge_cell(cell, s0, s1, weights):
    """Eq. 2 literally: every edge applies every op to its input and sums w·o(x)."""
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    row = 0
    for i in range(2, cell.nodes + 2):
        node = 0
        for j in range(i):
            edge, x = cell.edges[row + j], states[j]
            for k, name in enumerate(edge.op_names):
                if name == "none":
                    y = torch.zeros_like(x[:, :, ::edge.stride, ::edge.stride])
                elif name in POOLING_OPS:
                    pool = F.max_pool2d if name == "max_pool_3x3" else (
                        lambda t, *a, **kw: F.avg_pool2d(t, *a, count_include_pad=False, **kw))
                    y = cell.pool_bn[j][name](pool(x, 3, stride=edge.stride, padding=1))
                elif name == "skip_connect" and edge.stride == 1:
                    y = x
                else:
                    y = edge.ops[name](x)  # the op's full forward, with its own ReLU
                node = node + weights[row + j, k] * y
        row += i
        states.append(node)
    return torch.cat(states[2:], dim=1)


# The default op set has `none` first; the second puts it between weighted ops, so the
# cell's op weights come from α's columns by index rather than by a slice.
@pytest.mark.parametrize("space", [SPACE, DartsCellSpace(
    nodes=3, ops=("max_pool_3x3", "none", "skip_connect", "sep_conv_3x3", "avg_pool_3x3"))],
    ids=["darts-ops", "none-in-the-middle"])
# 16×16 inputs take the recomputing (fused) steps and the shared pixel phases on the reduction
# cells' 16×16 inputs; 8×8 ones the plain layers.
@pytest.mark.parametrize("size", [8, 16])
def test_shared_computation_equals_the_per_edge_formula(float64, space, size):
    _assert_cells_match_the_per_edge_formula(space, size, atol=1e-12, rtol=1e-11)


@pytest.mark.skipif(not native.available(), reason="archsearch.ops._kernels was not built")
@pytest.mark.parametrize("size", [8, 16])
def test_float32_with_the_native_kernels_equals_the_per_edge_formula(size):
    # In float32 the native kernels (batch norm, sums into the node, depthwise weight
    # gradients) run; the per-edge formula runs PyTorch's modules.
    _assert_cells_match_the_per_edge_formula(SPACE, size, atol=2e-4, rtol=1e-3)


def _assert_cells_match_the_per_edge_formula(space: DartsCellSpace, size: int, *, atol: float,
                                              rtol: float) -> None:
    torch.manual_seed(1)
    net = DartsSupernet(space, channels=4, layers=3, in_channels=1)
    with torch.no_grad():
        net.alpha_normal.normal_()
        net.alpha_reduce.normal_()
    x = torch.randn(3, 1, size, size)
    # channels-last, as the supernet's forward feeds its cells (a layout-specific BN
    # backward bug once corrupted the α gradients here while NCHW was fine)
    s0 = s1 = net.stem(x).contiguous(memory_format=torch.channels_last)
    alphas = [net.alpha_normal, net.alpha_reduce]
    for cell in net.cells:  # a normal cell, then two reduction cells
        w = F.softmax(net.alpha_reduce if cell.reduction else net.alpha_normal, dim=-1)
        fast = cell(s0, s1, w)
        slow = _per_edge_cell(cell, s0, s1, w)
        assert torch.allclose(fast, slow, atol=atol, rtol=rtol)
        # ... and so are the gradients w.r.t. α (the fast path folds α into BN weights), the
        # cell's weights and its inputs (shared ReLUs, pooled maps and pixel phases add up
        # the gradients of every edge that reads them).
        probe = torch.randn_like(fast)
        inputs = [*alphas, *cell.parameters(), s0, s1]
        grads = [torch.autograd.grad((out * probe).sum(), inputs,
                                     retain_graph=True, allow_unused=True)
                 for out in (fast, slow)]
        for g_fast, g_slow in zip(*grads, strict=True):
            assert (g_fast is None) == (g_slow is None)
            assert g_fast is None or torch.allclose(g_fast, g_slow, atol=atol, rtol=rtol)
        s0, s1 = s1, fast


def test_none_gets_a_gradient_through_the_softmax():
    net = DartsSupernet(SPACE, channels=4, layers=3, in_channels=1)
    loss = F.cross_entropy(net(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert net.alpha_normal.grad[:, 0].abs().sum() > 0


def test_eval_uses_batch_statistics_and_no_buffers():
    net = DartsSupernet(SPACE, channels=4, layers=3, in_channels=1)
    assert list(net.buffers()) == []
    x = torch.randn(8, 1, 8, 8)
    net.train()
    train_out = net(x)
    net.eval()
    assert torch.allclose(train_out, net(x), atol=1e-5)


def test_mac_count_sees_every_conv_of_the_shared_phase_paths():
    # Reduction cells share their inputs' pixel phases between strided ops; counting hooks
    # the conv modules, so every op must still call them when no gradient is recorded.
    torch.manual_seed(0)
    net = DartsSupernet(SPACE, channels=4, layers=3, in_channels=1)
    shared = count_macs(net, (1, 16, 16))
    for cell in net.cells:
        cell.phase_offsets = ()  # each op takes its own phases
    assert shared == count_macs(net, (1, 16, 16)) > 0
