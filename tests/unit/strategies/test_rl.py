"""The REINFORCE controller (Zoph & Le, arXiv:1611.01578): its gradient, masking, baseline,
entropy bonus, state and sampling."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from archsearch.errors import ConfigError
from archsearch.space import Categorical, Float, Int, SearchSpace
from archsearch.spaces.darts import DartsCellSpace
from archsearch.strategies import STRATEGIES
from archsearch.strategies.rl import ReinforceController, _NumpyPolicy


def tiny_space() -> SearchSpace:
    """12 architectures; an int and a bool dimension check value lookup by type."""
    return SearchSpace.from_dims({"op": Categorical(("conv", "pool", "skip")),
                                  "wide": Categorical((True, False)), "depth": Int(1, 2)},
                                 name="tiny")


def small_darts() -> DartsCellSpace:
    """One node per cell, two real ops: 2 edges per cell, 4 valid archs per cell, 16 in all,
    but 3^4 = 81 value combinations, so masking must remove 65 of them."""
    return DartsCellSpace(nodes=1, ops=("none", "skip_connect", "max_pool_3x3"))


def all_choices(space: SearchSpace) -> list[dict]:
    labels = list(space.dims)
    values = [space.dims[label].discretize() for label in labels]
    return [dict(zip(labels, combo, strict=True)) for combo in itertools.product(*values)]


def numpy_log_prob(net: _NumpyPolicy, indices: list[int]) -> float:
    """log P(a_1..a_T) by an independent float64 forward pass (no masks)."""
    x, h, c = net.start, np.zeros_like(net.start), np.zeros_like(net.start)
    total = 0.0
    for t, k in enumerate(indices):
        logits, h, c = net.step(t, x, h, c)
        total += logits[k] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        if t + 1 < len(indices):
            x = net.embeds[t][k]
    return float(total)


def entropy(controller: ReinforceController, space: SearchSpace) -> float:
    probs = [controller.probability(space.arch(c)) for c in all_choices(space)]
    return -sum(p * math.log(p) for p in probs if p > 0)


def test_registered_as_rl():
    assert STRATEGIES.get("rl") is ReinforceController


def test_log_prob_gradient_matches_finite_differences():
    """∇θ log P(a) from autograd (the term REINFORCE sums) equals central differences of an
    independent float64 forward pass."""
    controller = ReinforceController(tiny_space(), seed=0, hidden_size=3)
    indices = [2, 0, 1]
    log_prob, _ = controller._log_prob(torch.tensor([indices]))
    log_prob.sum().backward()
    net = _NumpyPolicy(controller.policy)
    assert numpy_log_prob(net, indices) == pytest.approx(log_prob.item(), rel=1e-5)
    policy = controller.policy
    pairs = [(policy.start.grad, net.start), (policy.cell.weight_ih.grad, net.w_ih),
             (policy.cell.weight_hh.grad, net.w_hh), (policy.cell.bias_ih.grad, net.bias),
             (policy.cell.bias_hh.grad, net.bias)]
    pairs += [(e.weight.grad, a) for e, a in zip(policy.embeds, net.embeds, strict=True)]
    for head, (weight, bias) in zip(policy.heads, net.heads, strict=True):
        pairs += [(head.weight.grad, weight), (head.bias.grad, bias)]
    eps = 1e-6
    for grad, array in pairs:
        numeric = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            old = array[i]
            array[i] = old + eps
            up = numpy_log_prob(net, indices)
            array[i] = old - eps
            down = numpy_log_prob(net, indices)
            array[i] = old
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad.numpy(), numeric, rtol=1e-3, atol=1e-6)


def test_update_is_the_reinforce_estimate():
    """One update moves θ by lr · mean_k (R_k − b_k) ∇ log P(a_k) (plain SGD, no entropy)."""
    space = tiny_space()
    controller = ReinforceController(space, seed=1, batch_size=2, entropy_weight=0.0,
                                     normalize_advantage=False)
    controller.optimizer = torch.optim.SGD(controller.policy.parameters(), lr=1.0)
    archs = [controller.ask(), controller.ask()]
    rewards = [0.3, 0.8]
    advantages = [0.0, 0.5]  # b starts at the first reward; b = 0.3 when the second comes
    expected = [torch.zeros_like(p) for p in controller.policy.parameters()]
    for arch, advantage in zip(archs, advantages, strict=True):
        controller.policy.zero_grad()
        log_prob, _ = controller._log_prob(torch.tensor([controller._indices(arch)]))
        log_prob.sum().backward()
        for e, p in zip(expected, controller.policy.parameters(), strict=True):
            e += advantage * p.grad / len(archs)
    before = [p.detach().clone() for p in controller.policy.parameters()]
    for arch, reward in zip(archs, rewards, strict=True):
        controller.tell(arch, reward)
    moved = [p.detach() - b for p, b in zip(controller.policy.parameters(), before, strict=True)]
    assert any(m.abs().max() > 0 for m in moved)
    for m, e in zip(moved, expected, strict=True):
        torch.testing.assert_close(m, e, rtol=1e-5, atol=1e-7)


def test_baseline_is_an_exponential_moving_average():
    controller = ReinforceController(tiny_space(), seed=0, baseline_decay=0.8, batch_size=100)
    rewards = [1.0, 3.0, None, -2.0, 0.5]
    baseline = None
    for reward in rewards:
        controller.tell(controller.ask(), reward)
        if reward is not None:
            baseline = reward if baseline is None else 0.8 * baseline + 0.2 * reward
        assert controller.baseline == pytest.approx(baseline)
    assert len(controller._batch) == 4  # the failed trial is not in the batch


def test_normalized_advantage_does_not_depend_on_the_reward_scale():
    runs = []
    for scale in (1.0, 1000.0):
        controller = ReinforceController(tiny_space(), seed=0, batch_size=100)
        for reward in (0.1, 0.5, -0.3, 0.9):
            controller.tell(controller.ask(), scale * reward)
        runs.append([item["advantage"] for item in controller._batch])
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-9)
    assert runs[0][0] == 0.0 and runs[0][1] > 0 > runs[0][2]


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_entropy_bonus_pushes_towards_uniform(weight):
    """With zero advantages the only force is the entropy bonus: it raises the entropy."""
    space = tiny_space()
    controller = ReinforceController(space, seed=0, batch_size=1, entropy_weight=0.0)
    for _ in range(10):  # first make the controller somewhat confident
        arch = controller.ask()
        controller.tell(arch, float(arch["op"] == "pool") + float(arch["wide"]))
    # Plain SGD: Adam's momentum would keep moving θ the way the rewards pushed it.
    controller.optimizer = torch.optim.SGD(controller.policy.parameters(), lr=0.1)
    controller.entropy_weight = weight
    start = entropy(controller, space)
    assert 0.5 < start < math.log(12) - 0.5
    for _ in range(5):
        controller.baseline = 1.0
        controller.tell(controller.ask(), 1.0)  # R = b: advantage 0
    change = entropy(controller, space) - start
    assert change > 0.01 if weight else change == 0.0


def test_masking_yields_only_valid_darts_cells():
    space = DartsCellSpace()
    controller = ReinforceController(space, seed=0, batch_size=2)
    for k in range(30):
        arch = controller.ask()
        assert space.contains(arch)
        controller.tell(arch, float(k % 3))


def test_probabilities_of_a_masked_space_sum_to_one():
    """No probability mass on value combinations that break the two-inputs rule."""
    space = small_darts()
    controller = ReinforceController(space, seed=0)
    valid = [c for c in all_choices(space) if space.check(c) is None]
    assert len(valid) == 16
    total = sum(controller.probability(space.arch(c)) for c in valid)
    assert total == pytest.approx(1.0, abs=1e-5)


def test_sampling_frequencies_match_probability():
    """`ask` (a numpy forward) samples from the distribution `probability` (torch) reports."""
    space = tiny_space()
    controller = ReinforceController(space, seed=0, lr=0.2, batch_size=1)
    for _ in range(8):  # move away from the near-uniform start
        arch = controller.ask()
        controller.tell(arch, float(arch["op"] == "skip"))
    n = 4000
    counts: dict[str, int] = {}
    for _ in range(n):
        key = controller.ask().fingerprint()
        counts[key] = counts.get(key, 0) + 1
    for choices in all_choices(space):
        arch = space.arch(choices)
        p = controller.probability(arch)
        tolerance = 4 * math.sqrt(p * (1 - p) / n) + 2 / n  # 4 σ, and room for rare archs
        assert abs(counts.get(arch.fingerprint(), 0) / n - p) < tolerance


def test_state_round_trip_continues_exactly():
    space = small_darts()
    original = ReinforceController(space, seed=3, batch_size=4)
    for k in range(10):  # 2 updates, and 2 rewards left in the pending batch
        original.tell(original.ask(), k / 10)
    pending = original.ask()  # asked before the save, told after
    state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
    assert len(state["batch"]) == 2
    restored = ReinforceController(space, seed=99, batch_size=4)  # the seed is in the state
    restored.load_state_dict(state)
    runs = []
    for controller in (original, restored):
        controller.tell(pending, 0.5)
        archs = []
        for k in range(12):
            archs.append(controller.ask())
            controller.tell(archs[-1], (k % 4) / 4)
        runs.append(([a.fingerprint() for a in archs],
                     [controller.probability(a) for a in archs]))
    assert runs[0] == runs[1]  # exact: same proposals, bit-identical probabilities
    assert original.state_dict() == restored.state_dict()


def test_failed_and_nonfinite_trials_are_skipped():
    controller = ReinforceController(tiny_space(), seed=0, batch_size=1)
    before = json.dumps(controller.state_dict())
    arch = controller.ask()
    rng_state = controller.rng.bit_generator.state
    for score in (None, math.nan, math.inf):
        controller.tell(arch, score)
    after = controller.state_dict()
    assert after["baseline"] is None and after["batch"] == []
    assert after["policy"] == json.loads(before)["policy"]
    assert controller.rng.bit_generator.state == rng_state


def test_float_dimensions_use_the_bins():
    space = SearchSpace.from_dims({"lr": Float(1e-3, 1e-1, log=True), "p": Float(0.0, 1.0)})
    controller = ReinforceController(space, seed=0, num_float_bins=5)
    grid = set(np.linspace(0.0, 1.0, 5).tolist())
    for _ in range(20):
        arch = controller.ask()
        assert arch["p"] in grid and space.contains(arch)
        controller.tell(arch, arch["p"])
    off_grid = space.arch({"lr": 0.0123, "p": 0.3})
    assert controller.probability(off_grid) == 0.0
    controller.tell(off_grid, 1.0)  # it cannot have proposed this: ignored


def test_global_torch_rng_untouched_and_seeded():
    state = torch.random.get_rng_state()
    runs = []
    for _ in range(2):
        controller = ReinforceController(tiny_space(), seed=7, batch_size=2)
        archs = []
        for k in range(6):
            archs.append(controller.ask())
            controller.tell(archs[-1], float(k))
        runs.append([a.fingerprint() for a in archs])
    assert runs[0] == runs[1]
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"lr": 0.0}, {"baseline_decay": 1.0},
                                    {"entropy_weight": -1.0}, {"num_float_bins": 1},
                                    {"hidden_size": 0}])
def test_bad_settings_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        ReinforceController(tiny_space(), **kwargs)


def test_too_many_values_raise_config_error():
    with pytest.raises(ConfigError, match="at most"):
        ReinforceController(SearchSpace.from_dims({"n": Int(0, 100_000)}))
