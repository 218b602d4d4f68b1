"""NAS-Bench-201: cell strings, canonical forms, the reference network and its supernet.

Tests marked `real tables` read `nb201_*.csv` from `ARCHSEARCH_NB201_DIR` or
`../shared/data/nb201` next to the repository and skip when neither has them; the rest
(hard-coded rows included) run without them.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from archsearch.errors import ArchError, ConfigError
from archsearch.hardware import count_macs, num_params
from archsearch.networks.nasbench201 import Nb201Cell, Nb201MixedEdge, create_nb201_op
from archsearch.spaces import SPACES
from archsearch.spaces.nasbench201 import (
    LABELS,
    NB201_OPS,
    NasBench201Space,
    canonical,
    from_string,
    parse_string,
    to_string,
)

SPACE = NasBench201Space()
ALL_SKIP = ("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|"
            "skip_connect~2|")
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
# Rows of nb201_flops_params_computed.csv: index -> (string, {dataset: (MACs M, params M)}).
KNOWN_COUNTS = {
    0: ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|"
        "skip_connect~2|", (15.64737, 0.129306, 15.65322, 0.135156, 3.91948, 0.136456)),
    1651: (ALL_NONE, (7.78305, 0.073306, 7.7889, 0.079156, 1.9534, 0.080456)),
    1835: (ALL_SKIP, (7.78305, 0.073306, 7.7889, 0.079156, 1.9534, 0.080456)),
    6111: ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
           "nor_conv_1x1~2|", (153.27297, 1.073466, 153.27882, 1.079316, 38.32588, 1.080616)),
    12415: (RESNET, (113.95137, 0.802426, 113.95722, 0.808276, 28.49548, 0.809576)),
}
DATASETS = (("cifar10", 10, 32), ("cifar100", 100, 32), ("imagenet16", 120, 16))


def cell(**ops: str) -> dict[str, str]:
    """A cell with the given edges (`n3_e1="skip_connect"`) and `none` elsewhere."""
    choices = dict.fromkeys(LABELS, "none")
    choices.update({k.replace("_", "."): v for k, v in ops.items()})
    return choices


def counts(text: str, *, num_classes: int = 10, hw: int = 32, cells: int = 5) -> tuple[int, int]:
    model = SPACE.build(from_string(text), num_classes=num_classes, cells_per_stage=cells)
    return num_params(model), count_macs(model, (3, hw, hw), include_bias=True)


def assert_counts(text: str, macs_m: float, params_m: float, got: tuple[int, int]) -> None:
    params, macs = got
    assert params == round(params_m * 1e6), f"{text}: {params} params, table {params_m} M"
    # The table stores millions with 5 decimals: a resolution of 10 MACs.
    assert abs(macs - macs_m * 1e6) <= 5, f"{text}: {macs} MACs, table {macs_m} M"


# --- the space and its strings -----------------------------------------------------------
def test_labels_size_and_registry():
    assert SPACE.labels() == ["n1.e0", "n2.e0", "n2.e1", "n3.e0", "n3.e1", "n3.e2"]
    assert SPACE.size() == 15_625 and NasBench201Space(ops=["none", "skip_connect"]).size() == 64
    assert isinstance(SPACES.get("nb201")(), NasBench201Space)
    assert SPACE.sample(np.random.default_rng(0)).space == "nb201"
    with pytest.raises(ConfigError, match="conv_5x5"):
        NasBench201Space(ops=["none", "conv_5x5"])


def test_string_round_trip_for_every_cell():
    strings = [to_string(arch) for arch in SPACE.enumerate()]
    assert len(set(strings)) == 15_625
    for arch, text in zip(SPACE.enumerate(), strings, strict=True):
        assert SPACE.from_string(text) == arch


def test_string_names_edges_in_benchmark_order():
    arch = from_string(RESNET)
    assert dict(arch) == cell(n1_e0="nor_conv_3x3", n2_e1="nor_conv_3x3",
                              n3_e0="skip_connect", n3_e2="nor_conv_3x3")
    assert SPACE.describe(arch) == RESNET == SPACE.to_string(arch)


@pytest.mark.parametrize(("text", "named"), [
    (RESNET.replace("nor_conv_3x3~2", "conv_3x3~2"), "unknown op 'conv_3x3'"),
    ("|none~0|+|none~0|none~1|", "2 node groups"),
    (ALL_NONE + "+|none~0|none~1|none~2|none~3|", "4 node groups"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 has 1 edges"),
    (ALL_NONE.replace("none~1|+", "none~2|+"), "reads node '2'"),
    (ALL_NONE.replace("|none~0|", "|none|", 1), "'op~input'"),
    ("resnet", "not a NAS-Bench-201 cell string"),
    ("", "not a NAS-Bench-201 cell string"),
    ("|none~0|+none~0|none~1|+|none~0|none~1|none~2|", "node group 2"),
])
def test_malformed_strings_raise_naming_the_problem(text, named):
    with pytest.raises(ArchError, match=named) as info:
        from_string(text)
    assert repr(text) in str(info.value)


def test_ops_outside_a_smaller_space_raise():
    small = NasBench201Space(ops=["none", "skip_connect"])
    with pytest.raises(ArchError, match="avg_pool_3x3"):
        small.from_string(KNOWN_COUNTS[0][0])
    assert small.from_string(ALL_SKIP) == small.arch(dict.fromkeys(LABELS, "skip_connect"))


# --- canonical forms --------------------------------------------------------------------
@pytest.mark.parametrize(("first", "second"), [
    # Node 2 does not reach the output (n3.e2 = none): its edges do not matter.
    (cell(n1_e0="nor_conv_3x3", n3_e1="skip_connect"),
     cell(n1_e0="nor_conv_3x3", n2_e0="nor_conv_1x1", n2_e1="avg_pool_3x3",
          n3_e1="skip_connect")),
    # Skips pass a conv's output on: conv into node 1 then skips 1 -> 2 -> 3 equals the
    # conv into node 2 then a skip 2 -> 3.
    (cell(n1_e0="nor_conv_1x1", n2_e1="skip_connect", n3_e2="skip_connect"),
     cell(n2_e0="nor_conv_1x1", n3_e2="skip_connect")),
    # A skip out of a zero node adds nothing: x + 0 is x.
    (cell(n3_e0="skip_connect"), cell(n3_e0="skip_connect", n3_e1="skip_connect")),
    (cell(n3_e0="nor_conv_3x3"), cell(n1_e0="nor_conv_3x3", n3_e1="skip_connect")),
    # The order of a node's inputs does not matter.
    (cell(n1_e0="skip_connect", n3_e0="nor_conv_3x3", n3_e1="avg_pool_3x3"),
     cell(n1_e0="skip_connect", n3_e0="avg_pool_3x3", n3_e1="nor_conv_3x3")),
])
def test_cells_computing_the_same_function_share_a_canonical_form(first, second):
    assert first != second and canonical(first) == canonical(second)


@pytest.mark.parametrize(("first", "second"), [
    (cell(n3_e0="nor_conv_3x3"), cell(n3_e0="nor_conv_1x1")),
    # conv(conv(x)) is not conv(x) + conv(x).
    (cell(n1_e0="nor_conv_3x3", n3_e1="nor_conv_3x3"),
     cell(n1_e0="nor_conv_3x3", n3_e0="nor_conv_3x3", n3_e1="skip_connect")),
    # avg(conv(x)) is not conv(avg(x)).
    (cell(n1_e0="nor_conv_3x3", n3_e1="avg_pool_3x3"),
     cell(n1_e0="avg_pool_3x3", n3_e1="nor_conv_3x3")),
    (cell(n3_e0="skip_connect"),  # x, not 2x
     cell(n1_e0="skip_connect", n3_e0="skip_connect", n3_e1="skip_connect")),
    (dict(parse_string(ALL_SKIP)), dict(parse_string(ALL_NONE))),
])
def test_different_functions_have_different_canonical_forms(first, second):
    assert canonical(first) != canonical(second)


def test_zero_terms_follow_the_benchmarks_convention():
    """Documented: counted zero terms keep two identity cells apart, as the benchmark does."""
    direct = cell(n3_e0="skip_connect")
    via_node2 = cell(n2_e0="skip_connect", n3_e2="skip_connect")
    assert canonical(direct) == "#+#+0" and canonical(via_node2) == "#+#+#+0"
    assert canonical(dict(parse_string(ALL_NONE))) == "#+#+#"
    assert SPACE.canonical(from_string(RESNET)) == canonical(from_string(RESNET))


# --- the real tables --------------------------------------------------------------------
@pytest.fixture(scope="module")
def nb201_dir() -> Path:
    env = os.environ.get("ARCHSEARCH_NB201_DIR")
    root = Path(__file__).resolve().parents[3]
    for candidate in ([Path(env)] if env else []) + [root.parent / "shared" / "data" / "nb201"]:
        if (candidate / "nb201_flops_params_computed.csv").is_file():
            return candidate
    pytest.skip("real NAS-Bench-201 tables not found (set ARCHSEARCH_NB201_DIR or put the "
                "nb201_*.csv files in ../shared/data/nb201)")


def read_rows(directory: Path, name: str) -> list[dict[str, str]]:
    with open(directory / name, newline="") as f:
        return list(csv.DictReader(f))


def test_canonical_form_is_the_benchmarks_unique_string(nb201_dir):
    rows = read_rows(nb201_dir, "nb201_nats_tss_test_acc_200ep.csv")
    ours, theirs = defaultdict(set), defaultdict(set)
    for row in rows:
        key = canonical(parse_string(row["ArchitectureString"]))
        assert key == row["UniqueString"], row["ArchitectureString"]
        ours[key].add(row["UniqueString"])
        theirs[row["UniqueString"]].add(key)
    assert len(ours) == len(theirs) == 6_466


def test_every_table_lists_the_space_in_one_index_order(nb201_dir):
    columns = {"nb201_cifar10_v1_1_valid_test_params.csv": "cellstr",
               "nb201_nats_tss_test_acc_200ep.csv": "ArchitectureString",
               "nb201_12epoch_accs.csv": "cellstr",
               "nb201_flops_params_computed.csv": "arch_str"}
    orders = [[row[col] for row in read_rows(nb201_dir, name)] for name, col in columns.items()]
    assert all(order == orders[0] for order in orders[1:])
    strings = orders[0]
    assert {to_string(a) for a in SPACE.enumerate()} == set(strings)
    assert [strings[i] for i in (1835, 12415)] == [ALL_SKIP, RESNET]


def test_counts_of_a_sample_match_the_table(nb201_dir):
    """200 random rows. Each stage stacks N identical cells at one resolution, so a count
    is exactly count(N=0) + N·(count(N=1) − count(N=0)); the N=5 build itself is checked
    on the known rows (and on every row in the slow test)."""
    rows = read_rows(nb201_dir, "nb201_flops_params_computed.csv")
    base = np.array(counts(ALL_NONE, cells=0))
    for i in np.random.default_rng(0).choice(len(rows), size=200, replace=False):
        row = rows[int(i)]
        one = np.array(counts(row["arch_str"], cells=1))
        got = tuple(int(x) for x in base + 5 * (one - base))
        assert_counts(row["arch_str"], float(row["cifar10_flops_M"]),
                      float(row["cifar10_params_MB"]), got)


@pytest.mark.exhaustive  # about 3 minutes on 2 cores: `python -m pytest -m exhaustive`
@pytest.mark.parametrize("chunk", range(8))
def test_counts_of_every_cell_match_the_table(nb201_dir, chunk):
    rows = read_rows(nb201_dir, "nb201_flops_params_computed.csv")
    for row in rows[chunk::8]:
        assert_counts(row["arch_str"], float(row["cifar10_flops_M"]),
                      float(row["cifar10_params_MB"]), counts(row["arch_str"]))


# --- the network ------------------------------------------------------------------------
@pytest.mark.parametrize("index", sorted(KNOWN_COUNTS))
def test_counts_of_known_cells_on_all_three_datasets(index):
    text, table = KNOWN_COUNTS[index]
    for k, (_, classes, hw) in enumerate(DATASETS):
        assert_counts(text, table[2 * k], table[2 * k + 1],
                      counts(text, num_classes=classes, hw=hw))


@pytest.mark.parametrize(("hw", "classes"), [(32, 10), (16, 120)])
def test_output_shape(hw, classes):
    model = SPACE.build(from_string(RESNET), num_classes=classes)
    assert model(torch.randn(2, 3, hw, hw)).shape == (2, classes)


def test_cell_wiring_sums_edges_into_nodes():
    x = torch.randn(2, 4, 6, 6)
    skips = Nb201Cell([create_nb201_op("skip_connect", 4) for _ in LABELS])
    # node1 = x, node2 = x + node1 = 2x, node3 = x + node1 + node2 = 4x
    torch.testing.assert_close(skips(x), 4 * x)
    ops = cell(n1_e0="avg_pool_3x3", n2_e1="skip_connect", n3_e2="skip_connect")
    chain = Nb201Cell([create_nb201_op(ops[label], 4) for label in LABELS])
    torch.testing.assert_close(chain(x), create_nb201_op("avg_pool_3x3", 4)(x))


def test_edges_that_do_not_reach_the_output_get_zero_gradients():
    ops = cell(n1_e0="skip_connect", n2_e0="nor_conv_3x3", n3_e1="nor_conv_1x1")
    model = SPACE.build(SPACE.arch(ops), channels=4, cells_per_stage=1)
    model(torch.randn(2, 3, 8, 8)).square().sum().backward()
    dead = model.blocks[0].edges[LABELS.index("n2.e0")]
    live = model.blocks[0].edges[LABELS.index("n3.e1")]
    assert all(p.grad is not None and not p.grad.any() for p in dead.parameters())
    assert any(p.grad.any() for p in live.parameters())


def test_count_macs_can_include_biases():
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.Flatten(),
                                torch.nn.Linear(3 * 4 * 4, 5))
    plain = count_macs(model, (2, 4, 4))
    assert plain == 3 * 16 * 2 + 48 * 5
    assert count_macs(model, (2, 4, 4), include_bias=True) == plain + 3 * 16 + 5


# --- the supernet -----------------------------------------------------------------------
def test_supernet_alpha_is_state_and_gets_gradients():
    torch.manual_seed(0)
    net = SPACE.build_supernet(channels=4, cells_per_stage=1)
    assert net.arch_parameter_names() == ("alpha",)
    assert net.state_dict()["alpha"].shape == (6, len(NB201_OPS))
    assert list(net.alphas()) == list(LABELS)
    net(torch.randn(2, 3, 8, 8)).square().mean().backward()
    assert net.alpha.grad is not None and net.alpha.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.weight_parameters())
    assert SPACE.contains(net.derive())


def test_mixed_edge_is_the_softmax_weighted_sum_of_its_ops():
    torch.manual_seed(0)
    edge = Nb201MixedEdge(NB201_OPS, 4)
    x, alpha = torch.randn(2, 4, 6, 6), torch.randn(len(NB201_OPS))
    weights = torch.softmax(alpha, dim=0)
    expected = sum(w * op(x) for w, op in zip(weights, edge.ops, strict=True))
    torch.testing.assert_close(edge(x, weights), expected)
    assert not edge.ops[0](x).any()  # none


def test_derive_takes_the_argmax_of_every_edge_none_included():
    wanted = ["none", "nor_conv_3x3", "skip_connect", "avg_pool_3x3", "none", "nor_conv_1x1"]
    alphas = {label: [1.0 if op == want else 0.0 for op in NB201_OPS]
              for label, want in zip(LABELS, wanted, strict=True)}
    assert [SPACE.derive(alphas)[label] for label in LABELS] == wanted
    with pytest.raises(ArchError, match="n1.e0"):
        SPACE.derive({**alphas, "n1.e0": [1.0, 2.0]})
    with pytest.raises(ArchError, match="n3.e2"):
        SPACE.derive({k: v for k, v in alphas.items() if k != "n3.e2"})
