"""The binary-gated supernet of ProxylessNAS over the DARTS cell space (arXiv:1812.00332, §3.2).

ProxylessNAS keeps only sampled paths in memory. Every edge carries binary gates g drawn
from its path probabilities p = softmax(α) (eq. 2), and the edge computes Σ_o g_o · o(x)
over the ops whose gate is open, never over all of them:

* weight step: one gate per edge is open (an op drawn from p); only that op runs, so the
  network is a discrete network with one op on every edge (a derived cell keeps only two
  edges per node: 8 ops instead of up to 14 in a 4-node cell);
* architecture step: two ops per edge are drawn from p (without replacement) and the
  open one from their 2-way softmax; both run, the closed one without autograd graph and
  multiplied by a gate of 0, so ∂L/∂g_j = ⟨∂L/∂out, o_j(x)⟩ exists for both and gives the
  BinaryConnect-style estimate ∂L/∂α_i = Σ_j ∂L/∂g_j · q_j (δ_ij − q_i) over the pair
  (§3.2.1, with q the pair's 2-way softmax); after the update the pair's α are shifted so
  the other ops' probabilities are unchanged.

All cells of one type share one α and, in a given step, one sample of gates: the sampled
network is a stack of identical cells, as a discrete DARTS network is. The weights, their
names and their initialisation are those of `DartsSupernet`: the parametric ops of an edge
live in `edge.ops` as there (so `supernet.cost.op_macs_table` counts them), and the
parameter-free ones (pooling + non-affine BN, the identity skip) in `edge.free`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archsearch.ops import POOLING_OPS, FactorizedReduce, ReLUConvBN, create_op
from archsearch.ops.layout import cat_channels, match_grad_layout
from archsearch.spaces.darts import CELL_TYPES, DartsCellSpace
from archsearch.supernet.cost import op_macs_table
from archsearch.supernet.darts import CellSearchNetwork, DartsSupernet

PathOps = tuple[tuple[int, ...], ...]  # per edge, the op indices (α columns) that run


@dataclass(frozen=True)
class Paths:
    """The ops that run on every edge of both cell types in one forward pass.

    Args:
        ops: cell type -> per edge (α-row order) the α-column indices of the ops computed:
            one per edge for a single path, two for a gated pair.
        gates: cell type -> (edges, ops per edge) binary gates multiplying the op outputs;
            None for a single path (its op's output is used as it is).
        open: with gates, cell type -> per edge the position (in `ops`) of the open gate.
            The other ops run without autograd graph: with their gate at 0 no gradient
            flows through them, and ∂L/∂g needs only their output (the paper's code
            detaches them too), so a pair costs one op's graph plus one output per edge.
    """

    ops: Mapping[str, PathOps]
    gates: Mapping[str, Tensor] | None = None
    open: Mapping[str, tuple[int, ...]] | None = None

    def __post_init__(self) -> None:
        if (self.gates is None) != (self.open is None):
            raise ValueError("Paths needs both gates and open, or neither")


class PathEdge(nn.Module):
    """One edge with every candidate op as its own module; a forward runs one of them."""

    def __init__(self, ops: Sequence[str], channels: int, stride: int) -> None:
        super().__init__()
        self.op_names = tuple(ops)
        self.stride = stride
        # The parametric ops under the same names as in DARTS's MixedEdge (same weights).
        self.ops = nn.ModuleDict({name: create_op(name, channels, stride, affine=False)
                                  for name in ops if _is_parametric(name, stride)})
        # Pooling is followed by a non-affine BN during search, as in DARTS (§2.1 code).
        self.free = nn.ModuleDict({
            name: (nn.Sequential(create_op(name, channels, stride),
                                 nn.BatchNorm2d(channels, affine=False))
                   if name in POOLING_OPS else create_op(name, channels, stride))
            for name in ops if name != "none" and name not in self.ops})

    def op(self, k: int) -> nn.Module | None:
        """The module of op `k` (α column), or None for `none`."""
        name = self.op_names[k]
        if name == "none":
            return None
        return self.ops[name] if name in self.ops else self.free[name]

    def forward(self, x: Tensor, k: int, gate: Tensor | None = None,
                track: bool = True) -> Tensor | None:
        """op_k(x), times `gate` when one is given; None for `none` (a zero contribution).

        With `track=False` the op runs without autograd graph; only the product with the
        gate is differentiated (in the gate).
        """
        module = self.op(k)
        if module is None:
            return None
        with torch.set_grad_enabled(track and torch.is_grad_enabled()):
            out = module(x)
        return out if gate is None else out * gate


def _is_parametric(name: str, stride: int) -> bool:
    if name == "none" or name in POOLING_OPS:
        return False
    return not (name == "skip_connect" and stride == 1)


class PathCell(nn.Module):
    """A supernet cell whose edges each run the ops a `Paths` names (DARTS cell layout)."""

    def __init__(self, *, ops: Sequence[str], nodes: int, c_prev_prev: int, c_prev: int,
                 channels: int, reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.nodes = nodes
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_prev_prev, channels, affine=False)
                            if reduction_prev else
                            ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            PathEdge(ops, channels, 2 if reduction and j < 2 else 1)
            for i in range(2, nodes + 2) for j in range(i))

    def forward(self, s0: Tensor, s1: Tensor, ops: PathOps, gates: Tensor | None = None,
                open_: Sequence[int] | None = None) -> Tensor:
        """(B, nodes·C, H', W'): each node sums its edges' paths (`none` adds nothing).

        `ops` names per edge the ops that run; `gates` (edges, len(ops[e])) multiply their
        outputs and `open_` gives per edge the position of the open one (see `Paths`).
        """
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        row = 0
        for i in range(2, self.nodes + 2):
            node: Tensor | None = None
            for j in range(i):
                e = row + j
                for m, k in enumerate(ops[e]):
                    gate = None if gates is None else gates[e, m]
                    track = open_ is None or open_[e] == m
                    term = self.edges[e](states[j], k, gate, track)
                    if term is not None:
                        node = term if node is None else node + term
            if node is None:  # every incoming path sampled `none`: the node is zero
                stride = 2 if self.reduction else 1
                node = torch.zeros_like(states[1][:, :, ::stride, ::stride])
            states.append(node)
            row += i
        return cat_channels(states[2:])  # (B, nodes·C, H, W)


class ProxylessSupernet(CellSearchNetwork):
    """The DARTS search network with binary gates instead of the softmax mixture.

    Same stem, cells, classifier, weights and α (`alpha_normal`, `alpha_reduce`, each
    (edges, ops)) as `DartsSupernet`, so a DARTS supernet's state dict loads into it; the
    forward pass runs only the paths a `Paths` names. Without one it runs the most likely
    path (the argmax op of every edge), which is what evaluation during search measures.

    Args:
        space: the cell space (nodes per cell, op set and α-column order).
        channels, layers, num_classes, in_channels, stem_multiplier: as `DartsSupernet`.
        alpha_init_std: α starts as `alpha_init_std · N(0, 1)` (near-uniform paths).
    """

    def __init__(self, space: DartsCellSpace, *, channels: int = 16, layers: int = 8,
                 num_classes: int = 10, in_channels: int = 3, stem_multiplier: int = 3,
                 alpha_init_std: float = 1e-3) -> None:
        super().__init__(space, PathCell, channels=channels, layers=layers,
                         num_classes=num_classes, in_channels=in_channels,
                         stem_multiplier=stem_multiplier, alpha_init_std=alpha_init_std)

    def forward(self, x: Tensor, paths: Paths | None = None) -> Tensor:
        """Logits (B, num_classes) of the network the paths name (default: most likely)."""
        paths = self.most_likely_paths() if paths is None else paths
        # channels_last: oneDNN's depthwise and 1×1 convolutions are 2-4× faster in NHWC.
        x = x.contiguous(memory_format=torch.channels_last)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            gates = None if paths.gates is None else paths.gates[kind]
            open_ = None if paths.open is None else paths.open[kind]
            s0, s1 = s1, cell(s0, s1, paths.ops[kind], gates, open_)
        # The pooling's backward gives NCHW gradients; the cells' BNs want channels-last.
        return self.classifier(F.adaptive_avg_pool2d(match_grad_layout(s1), 1).flatten(1))

    # --- sampling the binary gates (eq. 2) --------------------------------------------
    def probabilities(self, cell: str) -> Tensor:
        """p = softmax(α) of one cell type, (edges, ops), float64 on the CPU."""
        return F.softmax(self.alpha(cell).detach().to("cpu", torch.float64), dim=-1)

    def most_likely_paths(self) -> Paths:
        return Paths({c: tuple((int(k),) for k in self.probabilities(c).argmax(-1))
                      for c in CELL_TYPES})

    def sample_paths(self, generator: torch.Generator) -> Paths:
        """One op per edge drawn from p (the weight step's single path)."""
        return Paths({c: tuple((int(k),) for k in torch.multinomial(
            self.probabilities(c), 1, generator=generator)[:, 0]) for c in CELL_TYPES})

    def sample_pairs(self, generator: torch.Generator) -> Paths:
        """Two distinct ops per edge drawn from p, one of them open (the architecture step).

        The open one is drawn from the pair's 2-way softmax; the gates are leaf tensors
        that require grad, so the loss's gradient with respect to them is ∂L/∂g (§3.2.1).
        """
        ops, gates, open_ = {}, {}, {}
        for c in CELL_TYPES:
            # The floor keeps two ops drawable when α has driven all but one to p = 0.
            p = self.probabilities(c).clamp_min(torch.finfo(torch.float64).tiny)
            pairs = torch.multinomial(p, 2, replacement=False, generator=generator)  # (E, 2)
            q = p.gather(1, pairs)  # ∝ the 2-way softmax of the pair's α
            chosen = torch.multinomial(q, 1, generator=generator)  # (E, 1)
            ops[c] = tuple((int(a), int(b)) for a, b in pairs)
            open_[c] = tuple(int(m) for m in chosen[:, 0])
            one_hot = torch.zeros(pairs.shape, dtype=self.alpha_normal.dtype)
            one_hot.scatter_(1, chosen, 1.0)
            gates[c] = one_hot.to(self.alpha_normal.device).requires_grad_(True)
        return Paths(ops, gates, open_)


def pair_alpha_grad(alpha: Tensor, pairs: PathOps, gate_grad: Tensor) -> Tensor:
    """∂L/∂α (edges, ops) from the gates' gradients of a sampled pair per edge (§3.2.1).

    ∂L/∂α_i = Σ_j ∂L/∂g_j · q_j (δ_ij − q_i) = q_i (∂L/∂g_i − Σ_j q_j ∂L/∂g_j) for i, j in
    the pair, q the pair's 2-way softmax; the ops outside the pair get 0.

    Args:
        alpha: α of one cell type, (edges, ops).
        pairs: per edge the two α columns sampled (`Paths.ops` of `sample_pairs`).
        gate_grad: ∂L/∂g, (edges, 2), in the order of `pairs`.
    """
    idx = torch.tensor(pairs, dtype=torch.long, device=alpha.device)  # (E, 2)
    q = F.softmax(alpha.detach().gather(1, idx), dim=-1)
    g = gate_grad.to(alpha.dtype)
    grad = q * (g - (q * g).sum(-1, keepdim=True))
    return torch.zeros_like(alpha, memory_format=torch.contiguous_format).scatter_(1, idx, grad)


@torch.no_grad()
def rescale_pairs(alpha: Tensor, before: Tensor, pairs: PathOps) -> None:
    """Shift each pair's updated α so Σ_pair exp(α) is what it was before the update (§3.2.1).

    The softmax normaliser then keeps its value, so every op outside the pair keeps its
    probability; inside the pair only the ratio that the update changed moves.
    """
    idx = torch.tensor(pairs, dtype=torch.long, device=alpha.device)
    new = alpha.gather(1, idx)
    offset = torch.logsumexp(new, -1) - torch.logsumexp(before.gather(1, idx), -1)  # (E,)
    alpha.scatter_(1, idx, new - offset[:, None])


def expected_cost(net: ProxylessSupernet, tables: Mapping[str, Tensor]) -> Tensor:
    """E[cost] = Σ_cells Σ_edges Σ_ops p·cost (§3.3.1): a float64 scalar, differentiable in α."""
    total = net.alpha_normal.new_zeros((), dtype=torch.float64)
    for c in CELL_TYPES:
        p = F.softmax(net.alpha(c), dim=-1).to(torch.float64)
        total = total + (p * tables[c].to(p.device)).sum()
    return total


def expected_cost_grad(alpha: Tensor, table: Tensor) -> Tensor:
    """∂E[cost]/∂α of one cell type in closed form: p_o (cost_o − Σ_o' p_o' cost_o') per edge."""
    p = F.softmax(alpha.detach().to(torch.float64), dim=-1)
    table = table.to(p.device, torch.float64)
    return p * (table - (p * table).sum(-1, keepdim=True))


def default_cost_tables(net: ProxylessSupernet, image_size: int) -> dict[str, Tensor]:
    """The MACs of every op on every edge (`supernet.cost.op_macs_table`, the same table).

    The edges keep their parametric ops in `edge.ops` as `DartsSupernet`'s do, which is all
    the counter reads; the cast only tells the type checker so.
    """
    return op_macs_table(cast(DartsSupernet, net), image_size)
