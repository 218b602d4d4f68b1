"""The DARTS cell space: labels, size, validity, discretisation, named cells, JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from archsearch.errors import ArchError, ConfigError
from archsearch.ops import DARTS_OPS
from archsearch.space import Arch
from archsearch.spaces.darts import NAMED_CELLS, DartsCellSpace, Genotype

SPACE = DartsCellSpace()


def test_fourteen_edges_per_cell_in_alpha_row_order():
    assert SPACE.num_edges == 14
    assert SPACE.edges()[:5] == [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    assert SPACE.labels("normal")[0] == "normal.n2.e0"
    assert len(SPACE.dims) == 28


def test_size_matches_the_published_count():
    per_cell = math.prod(math.comb(k, 2) * 7**2 for k in range(2, 6))
    assert per_cell == 1_037_664_180
    assert SPACE.size() == per_cell**2


def test_named_cells_round_trip_through_genotypes():
    for name, genotype in NAMED_CELLS.items():
        arch = SPACE.named(name)
        assert SPACE.to_genotype(arch) == _sorted(genotype)
        assert sum(v != "none" for v in arch.values()) == 16


def _sorted(g: Genotype) -> Genotype:
    # Our genotype lists each node's inputs in increasing order; the paper lists by strength.
    def norm(pairs):
        nodes = [sorted(pairs[k:k + 2], key=lambda p: p[1]) for k in range(0, len(pairs), 2)]
        return tuple(p for node in nodes for p in node)

    return Genotype(norm(g.normal), g.normal_concat, norm(g.reduce), g.reduce_concat)


def test_darts_v2_rendering_is_readable():
    text = SPACE.describe(SPACE.named("darts_v2"))
    assert text.startswith("normal: (sep_conv_3x3,0) (sep_conv_3x3,1) |")
    assert "(skip_connect,0) (dil_conv_3x3,2)" in text


def _alphas_favouring(node_edges: dict[int, tuple[int, int]], op: str) -> dict[str, np.ndarray]:
    """α where node i's edges from the given inputs strongly prefer `op`, others prefer none."""
    k = DARTS_OPS.index(op)
    alphas = {}
    for cell in ("normal", "reduce"):
        a = np.zeros((14, 8))
        for row, (i, j) in enumerate(SPACE.edges()):
            if j in node_edges[i]:
                a[row, k] = 3.0
            a[row, 0] = 5.0  # `none` strongest everywhere: must be ignored
        alphas[cell] = a
    return alphas


def test_derive_keeps_two_strongest_non_none_edges_with_their_argmax_op():
    chosen = {2: (0, 1), 3: (1, 2), 4: (0, 3), 5: (2, 4)}
    arch = SPACE.derive(_alphas_favouring(chosen, "dil_conv_5x5"))
    for i, inputs in chosen.items():
        for j in range(i):
            expected = "dil_conv_5x5" if j in inputs else "none"
            assert arch[f"normal.n{i}.e{j}"] == expected


def test_derive_ranks_edges_by_strongest_non_none_weight():
    alphas = {c: np.zeros((14, 8)) for c in ("normal", "reduce")}
    # node 3 (rows 2..4): edge from 2 has one very strong op; edges from 0 and 1 mediocre
    alphas["normal"][4, DARTS_OPS.index("skip_connect")] = 4.0
    alphas["normal"][3, DARTS_OPS.index("sep_conv_3x3")] = 2.0
    alphas["normal"][2, DARTS_OPS.index("max_pool_3x3")] = 1.0
    arch = SPACE.derive(alphas)
    assert arch["normal.n3.e2"] == "skip_connect"
    assert arch["normal.n3.e1"] == "sep_conv_3x3"
    assert arch["normal.n3.e0"] == "none"


def test_derive_rejects_wrong_shapes():
    with pytest.raises(ArchError, match="shape"):
        SPACE.derive({"normal": np.zeros((14, 7)), "reduce": np.zeros((14, 8))})


def test_sample_gives_valid_cells_and_is_seeded():
    a = SPACE.sample(np.random.default_rng(3))
    b = SPACE.sample(np.random.default_rng(3))
    assert a == b
    SPACE.validate(a)


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c.update({"normal.n2.e0": "none"}), "1 non-'none' inputs"),
    (lambda c: c.update({"normal.n3.e2": "sep_conv_3x3"}), "3 non-'none' inputs"),
    (lambda c: c.update({"normal.n2.e0": "conv_7x7"}), "not one of"),
    (lambda c: c.pop("reduce.n5.e4"), "missing label"),
    (lambda c: c.update({"normal.n9.e0": "none"}), "unknown label"),
])
def test_validate_names_the_problem(mutate, message):
    choices = dict(SPACE.named("darts_v2"))
    mutate(choices)
    with pytest.raises(ArchError, match=message):
        SPACE.arch_from_choices(choices)


def test_arch_json_round_trip_and_space_hash(tmp_path):
    arch = SPACE.named("darts_v1")
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch.to_json(genotype=SPACE.describe(arch))))
    loaded = Arch.load(path)
    assert loaded == arch and loaded.fingerprint() == arch.fingerprint()
    assert DartsCellSpace.for_arch(loaded).space_hash == arch.space_hash
    other_ops = DartsCellSpace(ops=DARTS_OPS[:-1])
    assert other_ops.space_hash != SPACE.space_hash
    with pytest.raises(ArchError, match="space_hash"):
        other_ops.validate(arch)


def test_configurable_op_set_without_none():
    space = DartsCellSpace(nodes=2, ops=("sep_conv_3x3", "skip_connect"))
    assert space.edge_values[0] == "none" and space.num_edges == 5
    arch = space.derive({c: np.random.default_rng(0).normal(size=(5, 2))
                         for c in ("normal", "reduce")})
    assert set(arch.values()) <= {"none", "sep_conv_3x3", "skip_connect"}


@pytest.mark.parametrize("kwargs", [{"nodes": 0}, {"ops": ("none",)},
                                    {"ops": ("sep_conv_3x3", "sep_conv_3x3")}])
def test_bad_space_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        DartsCellSpace(**kwargs)


@pytest.mark.parametrize("doc,message", [
    ([], "expected a JSON object"),
    ({"format": "other"}, "'format' must be"),
    ({"format": "archsearch.arch/1", "space": "darts"}, "space_hash"),
    ({"format": "archsearch.arch/1", "space": "darts", "space_hash": "x", "choices": []},
     "'choices' must be"),
])
def test_malformed_arch_documents(doc, message):
    with pytest.raises(ArchError, match=message):
        Arch.from_json(doc)
