"""Reusable checks that every search space must pass (the space contract).

Each `check_*` function takes a space (and what it needs), raises AssertionError with a
message naming the problem, and returns nothing; `tests/contract/test_spaces.py` runs them
over every registered space, and plug-in authors can run them on their own spaces. The idea
is Optuna's shipped sampler tests and timm's "every parameter gets a gradient" model test.

The checks that need torch (`check_build`, `check_supernet`) import it lazily, so the rest
runs on a space without a model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from archsearch.errors import ArchError
from archsearch.space import Arch, BuilderSpace, SearchSpace, dimension_from_json, hash_dims

BAD_LABEL = "no.such.label"
BAD_VALUE = "__not_a_value__"


def check_dims_json(space: SearchSpace) -> None:
    """Every dimension survives JSON text and `dimension_from_json`; the hash follows."""
    text = json.dumps(space.to_json())
    docs = json.loads(text)
    assert list(docs) == list(space.dims), "dims JSON must keep the label order"
    for label, doc in docs.items():
        restored = dimension_from_json(doc)
        assert restored == space.dims[label], f"{label}: {restored!r} != {space.dims[label]!r}"
    assert hash_dims(docs) == space.space_hash, "space_hash is not the hash of the dims JSON"


def check_hash_stable(factory: Callable[..., SearchSpace], **kwargs: Any) -> None:
    """Two spaces made with the same settings, or from one's `space_args`, are the same."""
    first, second = factory(**kwargs), factory(**kwargs)
    assert first.space_hash == second.space_hash, "space_hash differs between constructions"
    assert first.labels() == second.labels()
    args = json.loads(json.dumps(first.space_args))  # space_args must be plain JSON
    rebuilt = factory(**args)
    assert rebuilt.space_hash == first.space_hash, "space_args do not rebuild the space"


def check_size(space: SearchSpace, *, enumerate_limit: int = 20_000) -> None:
    """`size()` is an exact int (or inf); for a small space it counts `enumerate()`."""
    size = space.size()
    assert size == math.inf or (isinstance(size, int) and size >= 1), f"size() = {size!r}"
    if isinstance(size, int) and size <= enumerate_limit:
        archs = list(space.enumerate(limit=enumerate_limit))
        assert len(archs) == size, f"size() = {size} but enumerate() yields {len(archs)}"
        assert len({a.fingerprint() for a in archs}) == size, "enumerate() repeats an arch"
        assert all(space.contains(a) for a in archs), "enumerate() yields an invalid arch"


def check_sampling(space: SearchSpace, *, seed: int = 0, num: int = 20) -> None:
    """Samples are valid archs with every label, and the same seed gives the same ones."""
    rng, again = np.random.default_rng(seed), np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(num)]
    assert archs == [space.sample(again) for _ in range(num)], "sampling is not seeded"
    for arch in archs:
        space.validate(arch, source="sample")
        assert list(arch) == space.labels(), "a sample's labels are not the space's, in order"
    if space.size() != 1 and num >= 10:
        assert len({a.fingerprint() for a in archs}) > 1, "every sample is the same arch"


def check_mutation(space: SearchSpace, *, seed: int = 0, num: int = 20) -> None:
    """A mutant is valid and differs from its parent in at least one label."""
    rng = np.random.default_rng(seed)
    movable = any(dim.size() != 1 for dim in space.dims.values())
    for _ in range(num):
        parent = space.sample(rng)
        child = space.mutate(parent, rng)
        space.validate(child, source="mutant")
        changed = [lbl for lbl in space.dims if child[lbl] != parent[lbl]]
        assert changed or not movable, "mutate() returned its parent unchanged"


def check_crossover(space: SearchSpace, *, seed: int = 0, num: int = 20) -> None:
    """A child is valid and takes every label's value from one of its parents."""
    rng = np.random.default_rng(seed)
    for _ in range(num):
        first, second = space.sample(rng), space.sample(rng)
        child = space.crossover(first, second, rng)
        space.validate(child, source="crossover child")
        for label in space.dims:
            assert child[label] in (first[label], second[label]), (
                f"crossover invented {label} = {child[label]!r}")


def check_encoding(space: SearchSpace, *, seed: int = 0, num: int = 10) -> None:
    """`encode` gives finite vectors of one fixed length; different archs, different codes."""
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(num)]
    codes = [space.encode(a) for a in archs]
    assert len({c.shape for c in codes}) == 1 and codes[0].ndim == 1, "encode length varies"
    assert all(np.isfinite(c).all() for c in codes)
    for a, b, ca, cb in zip(archs, archs[1:], codes, codes[1:], strict=False):
        assert (a == b) == np.array_equal(ca, cb), "two archs share an encoding"


def check_arch_json(space: SearchSpace, *, seed: int = 0) -> None:
    """`Arch.to_json` -> JSON text -> `Arch.from_json` gives back an equal, valid arch."""
    arch = space.sample(np.random.default_rng(seed))
    doc = json.loads(json.dumps(arch.to_json()))
    restored = Arch.from_json(doc)
    assert restored == arch and restored.fingerprint() == arch.fingerprint()
    assert dict(restored) == dict(arch)
    space.validate(restored, source="restored")


def check_bad_archs_raise(space: SearchSpace, *, seed: int = 0) -> None:
    """An unknown label, a missing label or an invalid value raises ArchError naming it."""
    choices = dict(space.sample(np.random.default_rng(seed)))
    label = space.labels()[0]
    cases = {
        BAD_LABEL: {**choices, BAD_LABEL: 1},
        label: {**choices, label: BAD_VALUE},
    }
    cases[space.labels()[-1]] = {k: v for k, v in choices.items()
                                 if k != space.labels()[-1]}
    for name, bad in cases.items():
        try:
            space.arch(bad)
        except ArchError as exc:
            assert name in str(exc), f"ArchError does not name {name!r}: {exc}"
        else:
            raise AssertionError(f"an arch with a bad {name!r} was accepted")


def check_build(space: SearchSpace, *, seed: int = 0, num: int = 2,
                input_size: int = 8, **build_kwargs: Any) -> None:
    """`build(sample)` runs forward and backward on a (2, C, H, W) batch, the logits have
    shape (2, num_classes), and every parameter gets a gradient.

    `build_kwargs` go to `space.build`; `in_channels` and `num_classes` (default 3 and 10)
    shape the input and the expected output.
    """
    import torch

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    channels = build_kwargs.get("in_channels", 3)
    classes = build_kwargs.get("num_classes", 10)
    for _ in range(num):
        arch = space.sample(rng)
        model = space.build(arch, **build_kwargs)
        x = torch.randn(2, channels, input_size, input_size, generator=gen)
        logits = model(x)
        assert tuple(logits.shape) == (2, classes), f"logits of shape {tuple(logits.shape)}"
        logits.square().mean().backward()
        _assert_all_grads(model, space.describe(arch))


def check_supernet(space: BuilderSpace, *, seed: int = 0, input_size: int = 8,
                   **build_kwargs: Any) -> None:
    """The supernet of an op-only builder space runs, its α are in `state_dict()` and get
    gradients, and `derive(random α)` is an arch of the space. A space with value decisions
    must refuse with NotImplementedError instead."""
    import torch

    if set(space.op_labels) != set(space.dims):
        try:
            space.build_supernet(**build_kwargs)
        except NotImplementedError:
            return
        raise AssertionError("build_supernet() accepted a space with value decisions")
    net = space.build_supernet(**build_kwargs)
    names = net.arch_parameter_names()
    assert len(names) == len(space.op_labels), "not one α per op decision"
    state = net.state_dict()
    assert all(name in state for name in names), "α missing from state_dict()"
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, build_kwargs.get("in_channels", 3), input_size, input_size,
                    generator=gen)
    net(x).square().mean().backward()
    _assert_all_grads(net, "supernet")
    rng = np.random.default_rng(seed)
    alphas = {label: rng.normal(size=len(row)).tolist() for label, row in net.alphas().items()}
    space.validate(space.derive(alphas), source="derived arch")


def run_space_checks(space: SearchSpace, *, factory: Callable[..., SearchSpace] | None = None,
                     space_kwargs: Mapping[str, Any] | None = None) -> None:
    """Every check that needs no model (for a quick check of a new space)."""
    check_dims_json(space)
    if factory is not None:
        check_hash_stable(factory, **dict(space_kwargs or {}))
    check_size(space)
    check_sampling(space)
    check_mutation(space)
    check_crossover(space)
    check_encoding(space)
    check_arch_json(space)
    check_bad_archs_raise(space)


def _assert_all_grads(model: Any, what: str) -> None:
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{what}: no gradient for {missing[:3]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None
           and not bool(p.grad.isfinite().all())]
    assert not bad, f"{what}: non-finite gradient for {bad[:3]}"
