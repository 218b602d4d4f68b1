"""Cell graphs as data, and their layout: plain geometry in inches, no matplotlib.

`layout` puts each layer in a column (left to right), orders a column by the mean height of
its nodes' inputs (the barycentre heuristic of Sugiyama et al. 1981, which keeps crossings
few), and bends every edge that would cut through another node into a quadratic Bézier
(matplotlib's arc3 convention). `place_labels` then slides each op label along its edge,
rotated with it, to the first spot where it overlaps no node and no earlier label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Horizontal distance between two layers, inches: wider where more labelled edges cross
# the gap, so their labels find room.
LAYER_GAP_IN = (1.8, 5.0)
GAP_PER_EDGE_IN = 0.42
ROW_GAP_IN = 1.2  # vertical distance between nodes of one layer
NODE_HEIGHT_IN = 0.42
MARGIN_IN = 0.3
TITLE_IN = 0.4
# Bends tried in turn (control point at bend × the chord, perpendicular to it); the first
# that clears every other node is kept.
BENDS = (0.0, 0.22, -0.22, 0.4, -0.4, 0.6, -0.6)
# Where along its edge a label is tried, from the middle outward.
LABEL_POSITIONS = tuple(0.5 + s * k / 50 for k in range(19) for s in ((1,) if k == 0 else (-1, 1)))
LABEL_PAD_IN = 0.05
LABEL_CHAR_IN = 0.06  # mean width of a character of a 7.5-point label
_SAMPLES = tuple(k / 40 for k in range(3, 38))

Point = tuple[float, float]
Polygon = list[Point]


@dataclass(frozen=True)
class Node:
    """A node of a cell: `kind` is "input", "inner" or "output"; `layer` its column."""

    key: str
    label: str
    layer: int
    kind: str
    width_in: float | None = None  # None: from the label's length


@dataclass(frozen=True)
class Edge:
    """A directed edge `src -> dst` labelled with its op ("" for the output's concat)."""

    src: str
    dst: str
    label: str


@dataclass
class CellGraph:
    """A cell as nodes and labelled edges, before any geometry."""

    title: str
    nodes: list[Node]
    edges: list[Edge]
    ops: tuple[str, ...] = ()  # the space's ops in order (fixes each op's colour)

    def triples(self) -> list[tuple[str, str, str]]:
        """(src, dst, label) of every edge, in order."""
        return [(e.src, e.dst, e.label) for e in self.edges]

    def node(self, key: str) -> Node:
        return next(n for n in self.nodes if n.key == key)


@dataclass(frozen=True)
class EdgeGeometry:
    """Where an edge is drawn: a quadratic Bézier from `start` (on the source's box) via
    `control` to `end` (on the target's box)."""

    edge: Edge
    start: Point
    control: Point
    end: Point
    bend: float

    def point(self, t: float) -> Point:
        return _bezier(self.start, self.control, self.end, t)

    def angle_deg(self, t: float) -> float:
        """The curve's direction at `t` in degrees, turned so that text reads left to right."""
        (x0, y0), (x1, y1), (x2, y2) = self.start, self.control, self.end
        dx = 2 * (1 - t) * (x1 - x0) + 2 * t * (x2 - x1)
        dy = 2 * (1 - t) * (y1 - y0) + 2 * t * (y2 - y1)
        angle = math.degrees(math.atan2(dy, dx))
        return angle - 180 if angle > 90 else angle + 180 if angle < -90 else angle


@dataclass
class Layout:
    """Node centres and box sizes (inches), edge geometry, and the drawing's extent."""

    positions: dict[str, Point]
    sizes: dict[str, tuple[float, float]]
    edges: list[EdgeGeometry]
    xlim: tuple[float, float]
    ylim: tuple[float, float]

    def node_box(self, key: str, margin: float = 0.0) -> Polygon:
        (x, y), (w, h) = self.positions[key], self.sizes[key]
        w, h = w + 2 * margin, h + 2 * margin
        return [(x - w / 2, y - h / 2), (x + w / 2, y - h / 2), (x + w / 2, y + h / 2),
                (x - w / 2, y + h / 2)]


@dataclass(frozen=True)
class LabelSpot:
    """Where an edge's label goes: the curve parameter, centre, angle and outline."""

    t: float
    centre: Point
    angle_deg: float
    outline: Polygon
    clear: bool  # overlaps no node and no earlier label


def layout(graph: CellGraph) -> Layout:
    """Node positions (one column per layer), box sizes and edge curves of `graph`."""
    positions: dict[str, Point] = {}
    sizes = {n.key: node_size(n) for n in graph.nodes}
    columns: dict[int, list[Node]] = {}
    for node in graph.nodes:
        columns.setdefault(node.layer, []).append(node)
    x = _column_positions(graph, sorted(columns), sizes)
    for layer in sorted(columns):
        column = columns[layer]
        if layer > 0:  # stable sort: ties keep the node order
            column.sort(key=lambda n: -_barycentre(graph, n, positions))
        for k, node in enumerate(column):
            positions[node.key] = (x[layer], ((len(column) - 1) / 2 - k) * ROW_GAP_IN)
    geometry = _route_edges(graph, positions, sizes)
    xs, ys = [], []
    for key, (x, y) in positions.items():
        w, h = sizes[key]
        xs += [x - w / 2, x + w / 2]
        ys += [y - h / 2, y + h / 2]
    for g in geometry:
        for t in (0.25, 0.5, 0.75):
            px, py = g.point(t)
            xs.append(px)
            ys.append(py)
    return Layout(positions, sizes, geometry,
                  (min(xs) - MARGIN_IN, max(xs) + MARGIN_IN),
                  (min(ys) - MARGIN_IN, max(ys) + MARGIN_IN + TITLE_IN))


def _column_positions(graph: CellGraph, layers: Sequence[int],
                      sizes: Mapping[str, tuple[float, float]]) -> dict[int, float]:
    """x of each layer: gaps wide enough for two labels side by side on an edge between
    neighbouring columns (two edges that cross there need that), and wider the more
    labelled edges cross the gap."""
    layer_of = {n.key: n.layer for n in graph.nodes}
    x = {layers[0]: 0.0}
    low, high = LAYER_GAP_IN
    for left, right in zip(layers, layers[1:], strict=False):
        crossing = [e for e in graph.edges if e.label
                    and layer_of[e.src] <= left and layer_of[e.dst] >= right]
        halves = sum(max(sizes[n.key][0] for n in graph.nodes if n.layer == layer) / 2
                     for layer in (left, right))
        label_in = max((len(e.label) * LABEL_CHAR_IN + 2 * LABEL_PAD_IN for e in crossing),
                       default=0.0)
        gap = max(low, halves + 2 * label_in + 0.6, GAP_PER_EDGE_IN * len(crossing))
        x[right] = x[left] + min(high, gap)
    return x


def node_size(node: Node) -> tuple[float, float]:
    """Width and height of a node's box in inches (10-point text)."""
    lines = node.label.split("\n")
    width = node.width_in or max(0.5, 0.3 + 0.095 * max(len(line) for line in lines))
    return width, NODE_HEIGHT_IN + 0.17 * (len(lines) - 1)


def _barycentre(graph: CellGraph, node: Node, positions: Mapping[str, Point]) -> float:
    ys = [positions[e.src][1] for e in graph.edges if e.dst == node.key and e.src in positions]
    return sum(ys) / len(ys) if ys else 0.0


def _route_edges(graph: CellGraph, positions: Mapping[str, Point],
                 sizes: Mapping[str, tuple[float, float]]) -> list[EdgeGeometry]:
    used: dict[tuple[str, str], list[float]] = {}
    out = []
    for edge in graph.edges:
        p0, p2 = positions[edge.src], positions[edge.dst]
        others = [k for k in positions if k not in (edge.src, edge.dst)]
        taken = used.setdefault((edge.src, edge.dst), [])
        free = [b for b in BENDS if b not in taken]  # parallel edges get their own curves
        bend = next((b for b in free
                     if not any(_near_box(_bezier(p0, _control(p0, p2, b), p2, t),
                                          positions[k], sizes[k])
                                for k in others for t in _SAMPLES)), free[0])
        taken.append(bend)
        control = _control(p0, p2, bend)
        start = _on_box(p0, control if control != p0 else p2, sizes[edge.src])
        end = _on_box(p2, control if control != p2 else p0, sizes[edge.dst], gap=0.03)
        out.append(EdgeGeometry(edge, start, control, end, bend))
    return out


def _control(p0: Point, p2: Point, bend: float) -> Point:
    # matplotlib's arc3: the chord's midpoint moved by bend × (dy, -dx)
    (x0, y0), (x2, y2) = p0, p2
    return ((x0 + x2) / 2 + bend * (y2 - y0), (y0 + y2) / 2 - bend * (x2 - x0))


def _bezier(p0: Point, p1: Point, p2: Point, t: float) -> Point:
    a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t * t
    return (a * p0[0] + b * p1[0] + c * p2[0], a * p0[1] + b * p1[1] + c * p2[1])


def _near_box(point: Point, centre: Point, size: tuple[float, float],
              margin: float = 0.12) -> bool:
    return (abs(point[0] - centre[0]) < size[0] / 2 + margin
            and abs(point[1] - centre[1]) < size[1] / 2 + margin)


def _on_box(centre: Point, toward: Point, size: tuple[float, float],
            gap: float = 0.0) -> Point:
    """Where the ray from a box's centre toward `toward` leaves the box (plus `gap`)."""
    dx, dy = toward[0] - centre[0], toward[1] - centre[1]
    norm = math.hypot(dx, dy) or 1.0
    dx, dy = dx / norm, dy / norm
    t = min(size[0] / 2 / abs(dx) if dx else math.inf,
            size[1] / 2 / abs(dy) if dy else math.inf)
    return (centre[0] + (t + gap) * dx, centre[1] + (t + gap) * dy)


# --- labels -------------------------------------------------------------------------------
def place_labels(lay: Layout,
                 text_sizes: Sequence[tuple[float, float] | None]) -> list[LabelSpot | None]:
    """A spot for each edge's label (None where the edge has none).

    Greedy, edge by edge: the first position from the middle outward whose rotated box
    overlaps no node and no label placed before it. A label left without such a spot is
    then repaired together with each label it overlaps: the pair is moved to the first two
    positions (nearest the middles) that clear everything and each other, if there are any.

    Args:
        lay: the layout.
        text_sizes: per edge of `lay.edges`, the label's unrotated width and height in
            inches, or None for an unlabelled edge.
    """
    # Nodes and arrowheads stay uncovered.
    nodes = [lay.node_box(key, margin=LABEL_PAD_IN) for key in lay.positions]
    nodes += [_arrow_tip(g) for g in lay.edges]
    candidates = [None if size is None else [_spot(g, t, size) for t in LABEL_POSITIONS]
                  for g, size in zip(lay.edges, text_sizes, strict=True)]
    spots: list[LabelSpot | None] = [None] * len(lay.edges)
    for k, options in enumerate(candidates):
        if options is not None:
            spots[k] = _first_clear(options, nodes + _others(spots))
    for k, options in enumerate(candidates):
        spot = spots[k]
        if options is None or spot is None or not _hits(spot, nodes + _others(spots, k)):
            continue
        for m, other in enumerate(spots):
            if m != k and other is not None and polygons_overlap(spot.outline, other.outline):
                _repair(k, m, spots, candidates, nodes)
                break
    return [None if s is None else LabelSpot(s.t, s.centre, s.angle_deg, s.outline,
                                             _hits(s, nodes + _others(spots, k)) == 0)
            for k, s in enumerate(spots)]


def _arrow_tip(g: EdgeGeometry, size_in: float = 0.2) -> Polygon:
    """A square over the arrowhead at the end of edge `g`."""
    (x, y), (px, py) = g.end, g.point(0.97)
    norm = math.hypot(x - px, y - py) or 1.0
    cx, cy = x - (x - px) / norm * size_in / 2, y - (y - py) / norm * size_in / 2
    half = size_in / 2
    return [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half),
            (cx - half, cy + half)]


def _first_clear(options: Sequence[LabelSpot], blocked: Sequence[Polygon]) -> LabelSpot:
    """The first option that overlaps nothing in `blocked`, else the one overlapping least."""
    best, best_hits = options[0], math.inf
    for option in options:
        hits = _hits(option, blocked)
        if hits == 0:
            return option
        if hits < best_hits:
            best, best_hits = option, hits
    return best


def _spot(g: EdgeGeometry, t: float, size: tuple[float, float]) -> LabelSpot:
    centre, angle = g.point(t), g.angle_deg(t)
    outline = _rotated_box(centre, size[0] / 2 + LABEL_PAD_IN, size[1] / 2 + LABEL_PAD_IN,
                           angle)
    return LabelSpot(t, centre, angle, outline, False)


def _hits(spot: LabelSpot, blocked: Sequence[Polygon]) -> int:
    return sum(polygons_overlap(spot.outline, other) for other in blocked)


def _others(spots: Sequence[LabelSpot | None], *skip: int) -> list[Polygon]:
    return [s.outline for m, s in enumerate(spots) if s is not None and m not in skip]


def _repair(k: int, m: int, spots: list[LabelSpot | None],
            candidates: Sequence[list[LabelSpot] | None], nodes: Sequence[Polygon]) -> None:
    """Move labels k and m to the first pair of spots that clear everything else and each
    other."""
    rest = list(nodes) + _others(spots, k, m)
    options_k = [o for o in candidates[k] or [] if not _hits(o, rest)]
    options_m = [o for o in candidates[m] or [] if not _hits(o, rest)]
    for a in options_k:
        for b in options_m:
            if not polygons_overlap(a.outline, b.outline):
                spots[k], spots[m] = a, b
                return


def _rotated_box(centre: Point, half_w: float, half_h: float, angle_deg: float) -> Polygon:
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return [(centre[0] + dx * c - dy * s, centre[1] + dx * s + dy * c)
            for dx, dy in ((-half_w, -half_h), (half_w, -half_h), (half_w, half_h),
                           (-half_w, half_h))]


def polygons_overlap(a: Polygon, b: Polygon) -> bool:
    """Whether two convex polygons overlap (separating axis theorem: they are apart iff
    their projections on some edge normal of either are disjoint)."""
    for poly in (a, b):
        for k in range(len(poly)):
            (x0, y0), (x1, y1) = poly[k], poly[(k + 1) % len(poly)]
            nx, ny = y0 - y1, x1 - x0
            pa = [nx * x + ny * y for x, y in a]
            pb = [nx * x + ny * y for x, y in b]
            if max(pa) <= min(pb) or max(pb) <= min(pa):
                return False
    return True
