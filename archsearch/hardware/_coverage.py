"""Architectures whose networks together hold every (op, shape) an arch of a space can have.

A latency table must answer for any arch of its space, so it is built from a *covering* set
of archs: for the spaces known here, a small set constructed so that every unit an arch can
contain (a candidate op on every edge or block position, at every input shape the space's
other decisions can give it) appears in at least one of their networks.

- darts: per real op and per rotation r, every node reads inputs r and r+1 (mod its inputs)
  through that op in both cells: every op on every edge, (ops)·(nodes+1) archs.
- nb201: one arch per op, on all six edges.
- mobilenet: every (width, resolution, kernel, expand) with every stage at its deepest,
  which holds each block position's first and later blocks (depth only drops blocks).
- chain: per op and ordered width pair (a, b), layers alternating a, b: every op between
  every pair of widths and from the input.

Any other space: all archs if there are at most `ENUMERATE_LIMIT` (exact), else each value
of each decision in turn on a random base arch, plus random archs. That covers the common
cases (it covered every sampled nasnet arch in our checks) but is not guaranteed;
`LatencyTable.predict_ms` names any unit the table lacks, and `extend` adds it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from archsearch.errors import ArchsearchError
from archsearch.space import Arch, SearchSpace

ENUMERATE_LIMIT = 256
GENERIC_SAMPLES = 32


def _darts(space: Any) -> Iterable[Arch]:
    real = [op for op in space.edge_values if op != "none"]
    for op in real:
        for r in range(space.nodes + 1):
            choices = {label: "none" for label in space.dims}
            for cell in ("normal", "reduce"):
                for i in range(2, space.nodes + 2):
                    for j in {r % i, (r + 1) % i}:
                        choices[f"{cell}.n{i}.e{j}"] = op
            yield space.arch(choices)


def _nb201(space: Any) -> Iterable[Arch]:
    for op in space.ops:
        yield space.arch({label: op for label in space.dims})


def _mobilenet(space: Any) -> Iterable[Arch]:
    deepest = max(space.depths)
    for width, res, kernel, expand in itertools.product(
            space.width_mults, space.resolutions, space.kernels, space.expands):
        choices: dict[str, Any] = {"width_mult": width, "resolution": res}
        for s in range(len(space.channels)):
            choices[f"stage{s}.depth"] = deepest
            for b in range(deepest):
                choices[f"stage{s}.block{b}.kernel"] = kernel
                choices[f"stage{s}.block{b}.expand"] = expand
        yield space.arch(choices)


def _chain(space: Any) -> Iterable[Arch]:
    layers, widths = space.space_args["layers"], space.space_args["widths"]
    ops = space.dims["layer0.op"].choices
    pairs = itertools.product(widths, widths) if len(widths) > 1 else [(None, None)]
    for (a, b), op in itertools.product(list(pairs), ops):
        choices: dict[str, Any] = {f"layer{i}.op": op for i in range(layers)}
        if a is not None:
            choices.update({f"layer{i}.width": a if i % 2 == 0 else b for i in range(layers)})
        yield space.arch(choices)


COVERINGS: dict[str, Callable[[Any], Iterable[Arch]]] = {
    "darts": _darts, "nb201": _nb201, "mobilenet": _mobilenet, "chain": _chain}


def _generic(space: SearchSpace, rng: np.random.Generator) -> tuple[list[Arch], bool]:
    if space.is_finite() and space.size() <= ENUMERATE_LIMIT:
        return list(space.enumerate(limit=ENUMERATE_LIMIT)), True
    archs = []
    base = space.sample(rng)
    for label, dim in space.dims.items():
        for value in dim.discretize():
            choices = {**dict(base), label: value}
            if space.check(choices) is None:
                archs.append(space._make(choices))
    archs += [space.sample(rng) for _ in range(GENERIC_SAMPLES)]
    return archs, False


def covering_archs(space: SearchSpace, *, seed: int = 0) -> tuple[list[Arch], bool]:
    """A covering set of archs of `space` and whether it is exact (a known or small space).

    Archs are deduplicated (by fingerprint) and returned in a stable order.
    """
    rng = np.random.default_rng(seed)
    make = COVERINGS.get(space.name)
    try:
        archs, exact = (list(make(space)), True) if make is not None else _generic(space, rng)
    except (KeyError, AttributeError, ArchsearchError):
        # A space that shares a known name but not its structure: fall back.
        archs, exact = _generic(space, rng)
    unique = {arch.fingerprint(): arch for arch in archs}
    return list(unique.values()), exact
