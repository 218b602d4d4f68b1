"""Cell graphs: the edges match the genotype, the layout connects the right nodes, labels
do not collide, and the files are valid PNG and SVG."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from archsearch.plots._graph import place_labels, polygons_overlap
from archsearch.plots.cell_graph import (
    cell_graphs,
    darts_graphs,
    draw_cell,
    layout,
    nasnet_graphs,
    nb201_graph,
)
from archsearch.spaces.darts import NAMED_CELLS, DartsCellSpace
from archsearch.spaces.nasbench201 import NasBench201Space
from archsearch.spaces.nasnet import Block, NasnetCellSpace, output_blocks

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SVG_NS = "{http://www.w3.org/2000/svg}"


def _expected_darts(pairs, concat):
    # genotype pair k feeds intermediate node 2 + k // 2 from node j; every node feeds c_{k}
    edges = [(f"n{j}", f"n{2 + k // 2}", op) for k, (op, j) in enumerate(pairs)]
    return edges + [(f"n{i}", "out", "") for i in concat]


@pytest.mark.parametrize("name", sorted(NAMED_CELLS))
def test_darts_graph_edges_are_the_genotype(name):
    space = DartsCellSpace()
    genotype = space.to_genotype(space.named(name))
    # the same pairs per node as the paper lists them (the space orders them by input)
    published = NAMED_CELLS[name]
    for ours, theirs in ((genotype.normal, published.normal), (genotype.reduce, published.reduce)):
        assert [set(ours[k:k + 2]) for k in range(0, 8, 2)] == \
            [set(theirs[k:k + 2]) for k in range(0, 8, 2)]
    graphs = darts_graphs(space, space.named(name))
    assert graphs["cell_normal"].triples() == _expected_darts(genotype.normal,
                                                              genotype.normal_concat)
    assert graphs["cell_reduce"].triples() == _expected_darts(genotype.reduce,
                                                              genotype.reduce_concat)
    assert graphs["cell_reduce"].title == "reduction cell"
    normal = graphs["cell_normal"]
    assert normal.node("n0").label == r"$c_{k-2}$" and normal.node("out").kind == "output"
    # layers: inputs first, each node right of all its inputs, the output last
    for src, dst, _ in normal.triples():
        assert normal.node(src).layer < normal.node(dst).layer


def test_nb201_graph_draws_the_non_none_edges_between_numbered_nodes():
    arch = NasBench201Space().from_string(
        "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    graph = nb201_graph(arch)
    assert graph.triples() == [("n0", "n1", "nor_conv_3x3"), ("n1", "n2", "avg_pool_3x3"),
                               ("n0", "n3", "skip_connect"), ("n2", "n3", "nor_conv_1x1")]
    assert [n.layer for n in graph.nodes] == [0, 1, 2, 3]
    assert list(cell_graphs(NasBench201Space(), arch)) == ["cell"]


def test_nasnet_graph_has_two_op_edges_per_block_and_concats_the_unused_blocks():
    space = NasnetCellSpace(blocks=3, variant="original", reduction=True)
    arch = space.sample(np.random.default_rng(5))
    graphs = nasnet_graphs(space, arch)
    assert list(graphs) == ["cell_normal", "cell_reduce"]
    for cell, graph in zip(("normal", "reduce"), graphs.values(), strict=True):
        blocks = space.cell(arch, cell)
        key = {0: "in0", 1: "in1", 2: "b0", 3: "b1", 4: "b2"}
        expected = [(key[i], f"b{k}", op) for k, b in enumerate(blocks)
                    for i, op in zip(b.inputs, b.ops, strict=True)]
        expected += [(f"b{k}", "out", "") for k in output_blocks(blocks)]
        assert graph.triples() == expected
        assert graph.node("b0").label == f"b0\n{blocks[0].combine}"


def _on_box_edge(point, centre, size, gap=0.0):
    # the point lies on the outline of the box grown by `gap` (max-norm scaled to 1)
    w, h = size[0] / 2 + gap, size[1] / 2 + gap
    return max(abs(point[0] - centre[0]) / w, abs(point[1] - centre[1]) / h)


@pytest.mark.parametrize("name", sorted(NAMED_CELLS))
def test_layout_runs_every_edge_from_its_source_box_to_its_target_box(name):
    space = DartsCellSpace()
    for graph in darts_graphs(space, space.named(name)).values():
        lay = layout(graph)
        assert [g.edge for g in lay.edges] == graph.edges
        for g in lay.edges:
            src, dst = g.edge.src, g.edge.dst
            assert _on_box_edge(g.start, lay.positions[src], lay.sizes[src]) == \
                pytest.approx(1.0, abs=0.05)
            assert _on_box_edge(g.end, lay.positions[dst], lay.sizes[dst]) == \
                pytest.approx(1.0, abs=0.15)
            assert lay.positions[src][0] < lay.positions[dst][0]  # left to right
            for other in lay.positions:  # the curve avoids every other node
                if other not in (src, dst):
                    assert all(_on_box_edge(g.point(t), lay.positions[other],
                                            lay.sizes[other]) > 1.0
                               for t in np.linspace(0.05, 0.95, 37))
        boxes = [lay.node_box(k) for k in lay.positions]
        assert not any(polygons_overlap(a, b) for a, b in itertools.combinations(boxes, 2))


def test_parallel_edges_between_the_same_nodes_get_different_curves():
    space = NasnetCellSpace(blocks=1)
    arch = space.arch({"normal.b0.in0": 1, "normal.b0.in1": 1, "normal.b0.op0": "sep_conv_3x3",
                       "normal.b0.op1": "max_pool_3x3", "normal.b0.combine": "add"})
    assert space.cell(arch) == (Block((1, 1), ("sep_conv_3x3", "max_pool_3x3"), "add"),)
    lay = layout(nasnet_graphs(space, arch)["cell_normal"])
    first, second = lay.edges[0], lay.edges[1]
    assert (first.edge.src, first.edge.dst) == (second.edge.src, second.edge.dst)
    assert first.bend != second.bend
    assert first.point(0.5) != pytest.approx(second.point(0.5))


@pytest.mark.parametrize("name", sorted(NAMED_CELLS))
def test_labels_overlap_no_node_and_no_other_label(name):
    space = DartsCellSpace()
    for graph in darts_graphs(space, space.named(name)).values():
        lay = layout(graph)
        # label sizes as 7.5-point text measures them, roughly: 0.058 in per character
        sizes = [(0.058 * len(g.edge.label), 0.11) if g.edge.label else None
                 for g in lay.edges]
        spots = place_labels(lay, sizes)
        placed = [s for s in spots if s is not None]
        assert len(placed) == sum(1 for e in graph.edges if e.label)
        assert all(s.clear for s in placed)
        for a, b in itertools.combinations(placed, 2):
            assert not polygons_overlap(a.outline, b.outline)
        for spot in placed:
            assert not any(polygons_overlap(spot.outline, lay.node_box(k))
                           for k in lay.positions)


def test_polygons_overlap_separating_axes():
    square = [(0, 0), (1, 0), (1, 1), (0, 1)]
    assert polygons_overlap(square, [(0.5, 0.5), (2, 0.5), (2, 2), (0.5, 2)])
    assert not polygons_overlap(square, [(1.5, 0), (2.5, 0), (2.5, 1), (1.5, 1)])
    # a diamond beside the corner: the boxes' bounding boxes overlap, the shapes do not
    diamond = [(1.6, 1.0), (2.1, 1.5), (1.6, 2.0), (1.1, 1.5)]
    assert not polygons_overlap(square, diamond)
    assert polygons_overlap(square, [(x - 0.4, y - 0.4) for x, y in diamond])


def test_draw_cell_writes_a_png_and_an_svg_that_name_every_op(tmp_path):
    space = DartsCellSpace()
    graph = darts_graphs(space, space.named("darts_v2"))["cell_reduce"]
    paths = draw_cell(graph, tmp_path / "cell_reduce")
    assert paths == [tmp_path / "cell_reduce.png", tmp_path / "cell_reduce.svg"]
    assert paths[0].read_bytes().startswith(PNG_MAGIC)
    root = ET.parse(paths[1]).getroot()
    assert root.tag == f"{SVG_NS}svg"
    texts = [t.text or "" for t in root.iter(f"{SVG_NS}text")]
    for op in {op for op, _ in NAMED_CELLS["darts_v2"].reduce}:
        assert sum(op in t for t in texts) == sum(
            o == op for o, _ in NAMED_CELLS["darts_v2"].reduce)
    assert "reduction cell" in texts
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_spaces_without_cells_have_no_graph():
    class Chain:
        name = "chain"

    assert cell_graphs(Chain(), {}) == {}
