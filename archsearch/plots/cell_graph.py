"""Cells drawn as graphs: DARTS (Liu et al., arXiv:1806.09055, Figs. 4–5), NAS-Bench-201
(Dong & Yang, arXiv:2001.00326, Fig. 1) and NASNet (Zoph et al., arXiv:1707.07012, Fig. 4).

Three steps, each testable on its own: a builder here turns an arch into a `CellGraph`
(nodes in layers, edges labelled with their op: plain data to check against the genotype);
`layout` (in `_graph`) places the layers left to right and bends edges around nodes; and
`draw_cell` renders it on an Agg canvas with each op label rotated along its edge, at the
spot `place_labels` finds free of nodes and other labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from archsearch.plots._common import FORMATS, darts_node_name, new_figure, op_colours, save_figure
from archsearch.plots._graph import (
    TITLE_IN,
    CellGraph,
    Edge,
    EdgeGeometry,
    Layout,
    Node,
    layout,
    place_labels,
)

NODE_COLOURS = {"input": "#c8e6c9", "inner": "#bbdefb", "output": "#fff59d"}
LABEL_FONT_PT = 7.5

__all__ = ["CellGraph", "Edge", "EdgeGeometry", "Layout", "Node", "cell_graphs",
           "darts_cell_graph", "darts_graphs", "draw_cell", "layout", "nasnet_graphs",
           "nb201_graph", "render_cell"]


# --- builders ----------------------------------------------------------------------------
def darts_cell_graph(pairs: Sequence[tuple[str, int]], concat: Sequence[int], *,
                     cell: str = "normal", ops: Sequence[str] = ()) -> CellGraph:
    """The graph of one DARTS cell given in genotype form: per intermediate node two
    (op, input) pairs; inputs 0, 1 are c_{k-2}, c_{k-1}, input i ≥ 2 is node i - 2.
    Node keys are `n{i}` in the same numbering, and `out` for c_{k}."""
    nodes_count = len(pairs) // 2
    edges = [Edge(f"n{j}", f"n{2 + k // 2}", op) for k, (op, j) in enumerate(pairs)]
    edges += [Edge(f"n{i}", "out", "") for i in concat]
    keys = [f"n{i}" for i in range(nodes_count + 2)] + ["out"]
    layers = _longest_path_layers(keys, edges, sources=("n0", "n1"))
    nodes = [Node(f"n{i}", darts_node_name(i), layers[f"n{i}"],
                  "input" if i < 2 else "inner", 0.75 if i < 2 else 0.5)
             for i in range(nodes_count + 2)]
    nodes.append(Node("out", r"$c_{k}$", layers["out"], "output", 0.75))
    title = "normal cell" if cell == "normal" else "reduction cell"
    return CellGraph(title, nodes, edges, tuple(ops))


def darts_graphs(space: Any, arch: Mapping[str, Any]) -> dict[str, CellGraph]:
    """`cell_normal` and `cell_reduce` graphs of a DARTS arch (a `DartsCellSpace` arch)."""
    genotype = space.to_genotype(arch)
    return {"cell_normal": darts_cell_graph(genotype.normal, genotype.normal_concat,
                                            cell="normal", ops=space.ops),
            "cell_reduce": darts_cell_graph(genotype.reduce, genotype.reduce_concat,
                                            cell="reduce", ops=space.ops)}


def nb201_graph(arch: Mapping[str, Any], ops: Sequence[str] = ()) -> CellGraph:
    """The NAS-Bench-201 cell: nodes 0 (input) to 3 (output) in a row; an edge j -> i per
    label `n{i}.e{j}` whose op is not `none` (none is "no edge")."""
    from archsearch.spaces.nasbench201 import EDGES, NUM_NODES

    edges = [Edge(f"n{j}", f"n{i}", arch[f"n{i}.e{j}"]) for i, j in EDGES
             if arch[f"n{i}.e{j}"] != "none"]
    nodes = [Node(f"n{i}", str(i) if 0 < i < NUM_NODES - 1 else
                  ("0: in" if i == 0 else f"{i}: out"), i,
                  "input" if i == 0 else "output" if i == NUM_NODES - 1 else "inner")
             for i in range(NUM_NODES)]
    return CellGraph("NAS-Bench-201 cell", nodes, edges, tuple(ops))


def nasnet_graphs(space: Any, arch: Mapping[str, Any]) -> dict[str, CellGraph]:
    """One graph per cell type of a NASNet arch: inputs h[i-2], h[i-1], one node per block
    (named with its combine), the output concatenating the blocks nothing else reads."""
    from archsearch.spaces.nasnet import CELL_INPUTS, input_name, output_blocks

    graphs = {}
    for cell in space.cell_types:
        blocks = space.cell(arch, cell)
        edges = [Edge(_nasnet_key(i), f"b{k}", op)
                 for k, block in enumerate(blocks)
                 for i, op in zip(block.inputs, block.ops, strict=True)]
        edges += [Edge(f"b{k}", "out", "") for k in output_blocks(blocks)]
        keys = [_nasnet_key(i) for i in range(CELL_INPUTS)]
        keys += [f"b{k}" for k in range(len(blocks))] + ["out"]
        layers = _longest_path_layers(keys, edges, sources=keys[:CELL_INPUTS])
        nodes = [Node(_nasnet_key(i), input_name(i), 0, "input") for i in range(CELL_INPUTS)]
        nodes += [Node(f"b{k}", f"b{k}\n{b.combine}", layers[f"b{k}"], "inner")
                  for k, b in enumerate(blocks)]
        nodes.append(Node("out", "h[i]", layers["out"], "output"))
        title = "normal cell" if cell == "normal" else "reduction cell"
        graphs[f"cell_{cell}"] = CellGraph(title, nodes, edges, tuple(space.ops))
    return graphs


def cell_graphs(space: Any, arch: Mapping[str, Any]) -> dict[str, CellGraph]:
    """File stem -> graph for every cell of `arch`; {} for spaces that have no cell."""
    if space.name == "darts":
        return darts_graphs(space, arch)
    if space.name == "nb201":
        return {"cell": nb201_graph(arch, space.ops)}
    if space.name == "nasnet":
        return nasnet_graphs(space, arch)
    return {}


def _nasnet_key(index: int) -> str:
    return f"in{index}" if index < 2 else f"b{index - 2}"


def _longest_path_layers(keys: Sequence[str], edges: Sequence[Edge], *,
                         sources: Sequence[str]) -> dict[str, int]:
    """Each node one column right of its rightmost input; `sources` (and nodes nothing
    feeds) in column 0. Keys are in topological order, as every cell numbers them."""
    layers = {key: 0 for key in keys}
    for key in keys:
        if key in sources:
            continue
        preds = [layers[e.src] for e in edges if e.dst == key]
        layers[key] = 1 + max(preds) if preds else 0
    return layers


# --- drawing ------------------------------------------------------------------------------
def draw_cell(graph: CellGraph, stem: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Draw `graph` to `stem.png` / `stem.svg` (each format asked for); returns the paths."""
    return save_figure(render_cell(graph), Path(stem), formats)


def render_cell(graph: CellGraph) -> Any:
    """The figure of `graph` (Agg canvas), laid out by `layout`."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Polygon
    from matplotlib.path import Path as MplPath

    lay = layout(graph)
    fig = new_figure(lay.xlim[1] - lay.xlim[0], lay.ylim[1] - lay.ylim[0])
    # Axes filling the figure with limits in inches: one data unit is one inch both ways,
    # so angles and sizes computed in inches hold on the page.
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(*lay.xlim)
    ax.set_ylim(*lay.ylim)
    ax.set_axis_off()
    colours = op_colours(graph.ops or tuple(dict.fromkeys(e.label for e in graph.edges)))
    for g in lay.edges:
        concat = g.edge.label == ""
        colour = "#9e9e9e" if concat else colours.get(g.edge.label, "#424242")
        path = MplPath([g.start, g.control, g.end],
                       [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3])
        ax.add_patch(FancyArrowPatch(path=path, arrowstyle="-|>", mutation_scale=11,
                                     color=colour, linewidth=1.1 if concat else 1.5,
                                     linestyle="--" if concat else "-", zorder=1))
    for node in graph.nodes:
        (x, y), (w, h) = lay.positions[node.key], lay.sizes[node.key]
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h,
                                    boxstyle="round,pad=0,rounding_size=0.08",
                                    facecolor=NODE_COLOURS[node.kind], edgecolor="#37474f",
                                    linewidth=1.0, zorder=3))
        ax.text(x, y, node.label, ha="center", va="center", fontsize=10, zorder=4,
                linespacing=1.0)
    spots = place_labels(lay, _label_sizes(fig, lay))
    for g, spot in zip(lay.edges, spots, strict=True):
        if spot is None:
            continue
        colour = colours.get(g.edge.label, "#424242")
        ax.add_patch(Polygon(spot.outline, closed=True, facecolor="white", edgecolor=colour,
                             linewidth=0.8, zorder=5))
        ax.text(*spot.centre, g.edge.label, rotation=spot.angle_deg, rotation_mode="anchor",
                ha="center", va="center", fontsize=LABEL_FONT_PT, zorder=6)
    ax.text(sum(lay.xlim) / 2, lay.ylim[1] - TITLE_IN / 2 - 0.05, graph.title, ha="center",
            va="center", fontsize=11, fontweight="bold")
    return fig


def _label_sizes(fig: Any, lay: Layout) -> list[tuple[float, float] | None]:
    """Unrotated width and height (inches) of each edge's label as the renderer sets it."""
    renderer = fig.canvas.get_renderer()
    cache: dict[str, tuple[float, float]] = {}
    sizes: list[tuple[float, float] | None] = []
    for g in lay.edges:
        label = g.edge.label
        if not label:
            sizes.append(None)
            continue
        if label not in cache:
            text = fig.text(0, 0, label, fontsize=LABEL_FONT_PT)
            box = text.get_window_extent(renderer)
            cache[label] = (box.width / fig.dpi, box.height / fig.dpi)
            text.remove()
        sizes.append(cache[label])
    return sizes
