"""α pictures: the plotted weights are softmax of the logged α, the outlined ops are the
derived cell's, bad logs are one-line errors, and the files are valid."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from archsearch.errors import ConfigError
from archsearch.plots.alphas import (
    alpha_history,
    draw_alpha_epochs,
    draw_alphas,
    kept_ops,
    nodes_of,
    row_labels,
)
from archsearch.spaces.darts import DartsCellSpace

OPS = ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"]


def _records(epochs=3, edges=5, ops=4, seed=0):
    rng = np.random.default_rng(seed)
    return [{"epoch": e, "val_accuracy": 0.5,
             "alphas": {c: rng.normal(size=(edges, ops)).tolist() for c in ("normal", "reduce")}}
            for e in range(1, epochs + 1)]


def _softmax_by_hand(rows):
    out = []
    for row in rows:
        exps = [np.exp(v) for v in row]
        out.append([v / sum(exps) for v in exps])
    return np.asarray(out)


def test_weights_are_the_softmax_of_the_logged_alphas_per_epoch():
    records = _records()
    records.insert(1, {"epoch": 99, "note": "a record without alphas is skipped"})
    history = alpha_history(records, OPS)
    assert history.epochs == [1, 2, 3]
    assert history.nodes == 2 and history.ops == tuple(OPS)
    for cell in ("normal", "reduce"):
        assert history.weights[cell].shape == (3, 5, 4)
        logged = [r["alphas"][cell] for r in records if "alphas" in r]
        for e, alphas in enumerate(logged):
            np.testing.assert_allclose(history.weights[cell][e], _softmax_by_hand(alphas))
        np.testing.assert_allclose(history.final(cell), _softmax_by_hand(logged[-1]))
        np.testing.assert_allclose(history.final(cell).sum(axis=1), 1.0)


def test_no_alphas_means_no_history_and_wrong_op_count_means_generic_names():
    assert alpha_history([{"epoch": 1}]) is None
    assert alpha_history(_records(), ops=["a", "b"]).ops == ("op0", "op1", "op2", "op3")


def test_edge_counts_give_the_number_of_nodes():
    assert [nodes_of(n) for n in (2, 5, 9, 14)] == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="7 rows"):
        nodes_of(7)


def test_rows_are_labelled_input_to_node_in_alpha_row_order():
    history = alpha_history(_records(), OPS)
    assert history.edges() == DartsCellSpace(nodes=2, ops=OPS).edges()
    assert row_labels(history) == [r"$c_{k-2}$ → 0", r"$c_{k-1}$ → 0", r"$c_{k-2}$ → 1",
                                   r"$c_{k-1}$ → 1", "0 → 1"]


def test_outlined_ops_are_the_cell_that_darts_derives():
    records = _records(seed=3)
    history = alpha_history(records, OPS)
    space = DartsCellSpace(nodes=2, ops=OPS)
    arch = space.derive(records[-1]["alphas"])
    kept = kept_ops(history)
    for cell in ("normal", "reduce"):
        expected = {(row, OPS.index(arch[f"{cell}.n{i}.e{j}"]))
                    for row, (i, j) in enumerate(space.edges())
                    if arch[f"{cell}.n{i}.e{j}"] != "none"}
        assert kept[cell] == expected and len(expected) == 4  # two inputs per node
    assert kept_ops(alpha_history(records, ["a", "b"])) == {}  # not derivable: no outline


@pytest.mark.parametrize("bad", [
    {"alphas": {"normal": [[0.0, 1.0]]}},  # no reduce cell
    {"alphas": {"normal": "x", "reduce": [[0.0]]}},
    {"alphas": {"normal": [[0.0, 1.0]] * 5, "reduce": [[0.0, 1.0, 2.0]] * 5}},  # other shape
])
def test_malformed_alphas_are_a_config_error_naming_the_record(bad):
    records = _records(epochs=1, ops=2) + [bad]
    with pytest.raises(ConfigError, match="record 2"):
        alpha_history(records, source="log.jsonl")


def test_pictures_are_written_as_valid_files(tmp_path):
    history = alpha_history(_records(epochs=4), OPS)
    (png,) = draw_alphas(history, tmp_path / "alphas")
    assert png == tmp_path / "alphas.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    (svg,) = draw_alpha_epochs(history, tmp_path / "alphas_epochs", ("svg",))
    root = ET.parse(svg).getroot()
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "normal cell" in texts and "reduction cell" in texts
    assert all(op in texts for op in OPS)  # the legend names every op
