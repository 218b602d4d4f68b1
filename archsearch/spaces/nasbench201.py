"""The NAS-Bench-201 cell space (NAS-Bench-201: Dong & Yang, ICLR 2020, arXiv:2001.00326).

A cell is a DAG of 4 nodes; node 0 is the cell input, node 3 its output, and node i is the
sum over j < i of op_{j→i}(node j). Each of the 6 edges is one decision, labelled `n{i}.e{j}`
(the edge from node j to node i) and listed in the benchmark's order
`n1.e0, n2.e0, n2.e1, n3.e0, n3.e1, n3.e2`, with values among the 5 ops of `NB201_OPS`.
Every combination is a valid cell: 5⁶ = 15,625 cells, no cross-edge rule.

The benchmark names a cell by a string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` (group i lists
the edges into node i+1, `op~j` reading node j); `to_string` and `from_string` convert both
ways. `canonical` gives the string that cells computing the same function share, exactly the
benchmark's `UniqueString` (see its docstring for the convention). Nothing here imports
torch; `build` and `build_supernet` import the networks lazily.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from archsearch.errors import ArchError, ConfigError
from archsearch.space import Arch, Categorical, SearchSpace

if TYPE_CHECKING:
    from archsearch.networks.nasbench201 import NasBench201Network, NasBench201Supernet

NB201_OPS: tuple[str, ...] = (
    "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
# (to node i, from node j) in label order: the order of the benchmark's string and of α rows.
EDGES: tuple[tuple[int, int], ...] = tuple(
    (i, j) for i in range(1, NUM_NODES) for j in range(i))
LABELS: tuple[str, ...] = tuple(f"n{i}.e{j}" for i, j in EDGES)
STRING_FORMAT = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"

# Symbols of the canonical form: the cell input and a zero term (the benchmark's spelling).
_INPUT, _ZERO = "0", "#"


# --- the benchmark's string format ------------------------------------------------------
def parse_string(text: str) -> dict[str, str]:
    """label -> op of a cell string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`.

    Raises:
        ArchError: naming what is wrong (not a string, wrong number of node groups, of
            edges in a group, an edge reading the wrong node, an unknown op).
    """
    if not isinstance(text, str):
        raise ArchError(f"a NAS-Bench-201 cell string must be a str, got {type(text).__name__}")
    s = text.strip()
    if len(s) < 2 or not (s.startswith("|") and s.endswith("|")):
        raise ArchError(f"{text!r} is not a NAS-Bench-201 cell string (expected the form "
                        f"{STRING_FORMAT})")
    groups = s.split("+")
    if len(groups) != NUM_NODES - 1:
        raise ArchError(f"{text!r}: has {len(groups)} node groups separated by '+', a "
                        f"NAS-Bench-201 cell has {NUM_NODES - 1} ({STRING_FORMAT})")
    choices: dict[str, str] = {}
    for i, group in enumerate(groups, start=1):
        if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
            raise ArchError(f"{text!r}: node group {i} ({group!r}) must be enclosed in '|'")
        tokens = group[1:-1].split("|")
        if len(tokens) != i:
            raise ArchError(f"{text!r}: node {i} has {len(tokens)} edges, expected {i} "
                            f"(one from each of nodes 0..{i - 1})")
        for j, token in enumerate(tokens):
            choices[f"n{i}.e{j}"] = _parse_edge(text, token, i, j)
    return choices


def _parse_edge(text: str, token: str, i: int, j: int) -> str:
    op, sep, source = token.rpartition("~")
    if not sep:
        raise ArchError(f"{text!r}: edge {token!r} into node {i} is not of the form 'op~input'")
    if source != str(j):
        raise ArchError(f"{text!r}: edge {token!r} is listed as node {i}'s input {j} but reads "
                        f"node {source!r}; node {i}'s edges must read nodes 0..{i - 1} in order")
    if op not in NB201_OPS:
        raise ArchError(f"{text!r}: unknown op {op!r} on the edge {j}->{i} (ops: "
                        f"{', '.join(NB201_OPS)})")
    return op


def to_string(arch: Mapping[str, Any]) -> str:
    """The benchmark's string of a cell (an Arch of the space, or any label -> op mapping)."""
    _check_choices(arch)
    groups = ("|" + "|".join(f"{arch[f'n{i}.e{j}']}~{j}" for j in range(i)) + "|"
              for i in range(1, NUM_NODES))
    return "+".join(groups)


def from_string(text: str) -> Arch:
    """The Arch (of the default space, all 5 ops) named by a benchmark cell string."""
    return _default_space().from_string(text)


def canonical(arch: Mapping[str, Any]) -> str:
    """A string shared by cells that compute the same function: the benchmark's UniqueString.

    Each node is written as an expression over the cell input `0`: an edge with op `o`
    reading node j contributes the term `(s_j)@o`, where `s_j` is node j's expression,
    except that `skip_connect` contributes `s_j` itself (the identity passes its input's
    terms through) and `none` contributes a zero term `#`. A node is the `+`-join of its
    terms in sorted order, so the order of a node's inputs does not matter; node 3 is the
    cell. Nodes with no path to the output never enter it, and so neither do their edges.

    Zeros follow the benchmark's convention, which is what makes this partition equal the
    benchmark's (6,466 classes of 15,625): a zero term is kept and counted, not cancelled,
    and an edge reading node 1 when node 1 is zero (its only edge is `none`) is zero; a
    larger all-zero sum is not simplified further, nor is a sum passed through a skip
    flattened into the sum that receives it. So a few cells that compute the same function
    stay apart: `|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|` (`#+#+0`) and
    `|none~0|+|skip_connect~0|none~1|+|none~0|none~1|skip_connect~2|` (`#+#+#+0`) are both
    the identity. Merging them would give one key to cells the benchmark scores apart.
    """
    _check_choices(arch)
    nodes = [_INPUT]
    for i in range(1, NUM_NODES):
        terms = [_term(arch[f"n{i}.e{j}"], nodes[j]) for j in range(i)]
        nodes.append("+".join(sorted(terms)))
    return nodes[-1]


def _term(op: str, source: str) -> str:
    if op == "none" or source == _ZERO:
        return _ZERO
    if op == "skip_connect":
        return source
    return f"({source})@{op}"


def _check_choices(arch: Mapping[str, Any]) -> None:
    missing = [label for label in LABELS if label not in arch]
    if missing:
        raise ArchError(f"not a NAS-Bench-201 cell: missing label {missing[0]!r}")
    bad = [label for label in LABELS if arch[label] not in NB201_OPS]
    if bad:
        raise ArchError(f"not a NAS-Bench-201 cell: {bad[0]} = {arch[bad[0]]!r} is not one "
                        f"of {', '.join(NB201_OPS)}")


_DEFAULT: list[NasBench201Space] = []


def _default_space() -> NasBench201Space:
    if not _DEFAULT:
        _DEFAULT.append(NasBench201Space())
    return _DEFAULT[0]


# --- the space ----------------------------------------------------------------------------
class NasBench201Space(SearchSpace):
    """The 15,625 cells of NAS-Bench-201 (fewer with a smaller op set).

    Args:
        ops: the candidate ops of every edge, a subset of `NB201_OPS` in that order (it is
            also the α-column order of the supernet). The default is all five.
    """

    def __init__(self, *, ops: Sequence[str] = NB201_OPS) -> None:
        ops = tuple(ops)
        unknown = [op for op in ops if op not in NB201_OPS]
        if unknown:
            raise ConfigError(f"unknown NAS-Bench-201 op {unknown[0]!r} (ops: "
                              f"{', '.join(NB201_OPS)})")
        if len(set(ops)) != len(ops):
            raise ConfigError(f"the op set lists an op twice: {', '.join(ops)}")
        if not ops:
            raise ConfigError("the op set needs at least one op")
        self.ops = ops
        dims = {label: Categorical(ops) for label in LABELS}
        super().__init__(dims, name="nb201", space_args={"ops": list(ops)})

    def __repr__(self) -> str:
        return f"NasBench201Space(ops={len(self.ops)}, size {self.size():,})"

    # --- strings ----------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        """The benchmark's string of `arch`, e.g. `|nor_conv_3x3~0|+|...|`."""
        return to_string(self.validate(arch))

    def from_string(self, text: str) -> Arch:
        """The Arch of a benchmark string; malformed strings or ops outside the space raise
        ArchError naming the problem."""
        return self.arch(parse_string(text))

    def canonical(self, arch: Arch) -> str:
        """Equal for cells that compute the same function (see module-level `canonical`);
        the loop's `dedup_key`."""
        return canonical(arch)

    def describe(self, arch: Arch) -> str:
        return to_string(arch)

    # --- models ------------------------------------------------------------------------
    def build(self, arch: Arch, *, channels: int = 16, cells_per_stage: int = 5,
              num_classes: int = 10, in_channels: int = 3) -> NasBench201Network:
        """The benchmark's reference network of `arch` (C=16, N=5 as in the tables)."""
        from archsearch.networks.nasbench201 import NasBench201Network

        self.validate(arch)
        return NasBench201Network([arch[label] for label in LABELS], channels=channels,
                                  cells_per_stage=cells_per_stage, num_classes=num_classes,
                                  in_channels=in_channels)

    def build_supernet(self, *, channels: int = 16, cells_per_stage: int = 5,
                       num_classes: int = 10, in_channels: int = 3,
                       alpha_init_std: float = 1e-3) -> NasBench201Supernet:
        """The one-shot supernet: every edge mixes the space's ops, α (6 × ops) shared by
        all cells, as in the benchmark's DARTS runs."""
        from archsearch.networks.nasbench201 import NasBench201Supernet

        return NasBench201Supernet(self, channels=channels, cells_per_stage=cells_per_stage,
                                   num_classes=num_classes, in_channels=in_channels,
                                   alpha_init_std=alpha_init_std)

    def derive(self, alphas: Mapping[str, Any]) -> Arch:
        """The discrete cell of relaxed weights: per edge the op of largest α (`none`
        included, so a supernet may learn to cut an edge). Ties go to the earlier op.

        Args:
            alphas: label -> α row, one weight per op of the space, in `ops` order.
        """
        choices = {}
        for label in LABELS:
            if label not in alphas:
                raise ArchError(f"alphas: missing label {label!r}")
            row = np.asarray(alphas[label], dtype=np.float64)
            if row.shape != (len(self.ops),):
                raise ArchError(f"alphas[{label!r}] has shape {row.shape}, expected "
                                f"({len(self.ops)},) (ops: {', '.join(self.ops)})")
            choices[label] = self.ops[int(row.argmax())]
        return self.arch(choices)
