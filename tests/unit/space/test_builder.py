"""Define-by-run spaces: one builder gives the decisions, the fixed model and the supernet."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from archsearch.errors import ArchError, ConfigError
from archsearch.space import Arch, Categorical, Int, SearchSpace
from archsearch.supernet import BilevelOptimizer

BUILT: list[str] = []


class Tagged(nn.Linear):
    def __init__(self, tag: str, size: int) -> None:
        BUILT.append(tag)
        super().__init__(size, size)


def net(c, *, size=4, depth=2):
    layers = [c.op(f"l{i}", {"a": partial(Tagged, f"a{i}", size),
                             "b": partial(Tagged, f"b{i}", size)}) for i in range(depth)]
    return nn.Sequential(*layers)


def valued(c):
    hidden = c.int("hidden", 2, 6, step=2)
    act = c.choice("act", ["relu", "tanh"])
    return nn.Sequential(nn.Linear(3, hidden), nn.ReLU() if act == "relu" else nn.Tanh())


def test_dry_run_records_decisions_in_order():
    space = SearchSpace.from_builder(net, name="net", depth=3)
    assert list(space.dims) == ["l0", "l1", "l2"]
    assert space.dims["l0"] == Categorical(("a", "b")) and space.size() == 8
    values = SearchSpace.from_builder(valued)
    assert values.dims == {"hidden": Int(2, 6, step=2), "act": Categorical(("relu", "tanh"))}
    assert values.name == "valued" and values.size() == 6


def test_fixed_build_constructs_only_the_chosen_candidates():
    space = SearchSpace.from_builder(net, name="net")
    BUILT.clear()
    model = space.build(space.arch({"l0": "b", "l1": "a"}))
    assert BUILT == ["b0", "a1"] and len(model) == 2
    assert model(torch.randn(5, 4)).shape == (5, 4)
    model = SearchSpace.from_builder(valued).build(
        SearchSpace.from_builder(valued).arch({"hidden": 6, "act": "tanh"}))
    assert model[0].out_features == 6 and isinstance(model[1], nn.Tanh)


def test_build_overrides_may_change_sizes_but_not_decisions():
    space = SearchSpace.from_builder(net, name="net", depth=2)
    arch = space.arch({"l0": "a", "l1": "b"})
    assert space.build(arch, size=7)[0].in_features == 7
    with pytest.raises(ArchError, match="lacks"):
        space.build(arch, depth=3)
    with pytest.raises(ArchError, match="never asked"):
        space.build(arch, depth=1)


def test_duplicate_labels_and_bad_candidates_are_config_errors():
    def twice(c):
        c.choice("x", [1, 2])
        c.choice("x", [1, 2])

    with pytest.raises(ConfigError, match="twice"):
        SearchSpace.from_builder(twice)
    with pytest.raises(ConfigError, match="at least one candidate"):
        SearchSpace.from_builder(lambda c: c.op("x", {}), name="empty")
    with pytest.raises(ConfigError, match="unexpected"):
        SearchSpace.from_builder(net, name="net", width=3)


def test_wrong_label_or_value_is_named():
    space = SearchSpace.from_builder(net, name="net")
    with pytest.raises(ArchError, match="l1 = 'c' is not one of a, b"):
        space.arch({"l0": "a", "l1": "c"})
    with pytest.raises(ArchError, match="unknown label 'l9'"):
        space.arch({"l0": "a", "l1": "a", "l9": "a"})
    with pytest.raises(ArchError, match="missing label 'l1'"):
        space.arch({"l0": "a"})
    other = Arch({"l0": "a", "l1": "a"}, space="net", space_hash="sha256:0")
    with pytest.raises(ArchError, match="space_hash"):
        space.validate(other)


def test_supernet_is_the_softmax_mixture_and_trains_with_the_bilevel_optimizer():
    torch.manual_seed(0)
    space = SearchSpace.from_builder(net, name="net")
    supernet = space.build_supernet()
    names = supernet.arch_parameter_names()
    assert names == ["model.0.alpha", "model.1.alpha"]
    assert set(names) <= set(supernet.state_dict())
    x = torch.randn(8, 4)
    with torch.no_grad():
        supernet.model[0].alpha.copy_(torch.tensor([0.3, -0.2]))
        w = torch.softmax(torch.tensor([0.3, -0.2]), 0)
        mixed = supernet.model[0]
        expected = w[0] * mixed.candidates[0](x) + w[1] * mixed.candidates[1](x)
        assert torch.allclose(mixed(x), expected)
    # Make candidate "b" of layer 0 the useful one: the target is b's own output.
    target = supernet.model[1](supernet.model[0].candidates[1](x)).detach()
    params = dict(supernet.named_parameters())
    weights = [p for n, p in params.items() if n not in names]
    alphas = [params[n] for n in names]

    def loss(model, batch):
        return ((model(batch[0]) - batch[1]) ** 2).mean()

    opt = BilevelOptimizer(supernet, names, train_loss=loss, val_loss=loss,
                           weight_optimizer=torch.optim.SGD(weights, lr=0.0),
                           arch_optimizer=torch.optim.Adam(alphas, lr=0.05))
    for _ in range(40):
        opt.step((x, target), (x, target))
    assert space.derive(supernet.alphas())["l0"] == "b"


def test_value_decisions_cannot_be_relaxed():
    with pytest.raises(NotImplementedError, match="cannot be relaxed"):
        SearchSpace.from_builder(valued).build_supernet()
    with pytest.raises(ArchError, match="value decisions"):
        SearchSpace.from_builder(valued).derive({})


def test_enumerate_sample_mutate_crossover_encode():
    space = SearchSpace.from_builder(valued)
    archs = list(space.enumerate())
    assert len(archs) == 6 and len({a.fingerprint() for a in archs}) == 6
    rng = np.random.default_rng(0)
    a, b = space.sample(rng), space.sample(rng)
    child = space.crossover(a, b, rng)
    assert all(child[k] in (a[k], b[k]) for k in space.dims)
    mutant = space.mutate(a, rng)
    assert sum(mutant[k] != a[k] for k in space.dims) == 1
    assert space.encode(a).shape == (3,)
    with pytest.raises(ConfigError, match="refused"):
        list(space.enumerate(limit=5))


def test_a_declared_space_has_no_model_to_build():
    space = SearchSpace.from_dims({"depth": Int(1, 3)})
    with pytest.raises(ConfigError, match="without a network"):
        space.build(space.arch({"depth": 2}))
