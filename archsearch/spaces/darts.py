"""The DARTS cell space (DARTS: arXiv:1806.09055, §2.1 and §2.4).

A cell is a DAG of 2 input nodes (the outputs of the previous two cells) and N intermediate
nodes; node i may read every node j < i. Each possible edge is one decision, labelled
`"{cell}.n{i}.e{j}"` (cell `normal` or `reduce`, nodes numbered from 0 with 0 and 1 the
inputs), whose value is an op name or `"none"` for "no edge". A valid discrete cell gives
every intermediate node exactly two non-`none` inputs. The same labels index the rows of
α in the supernet, so the relaxed and the discrete architecture share one vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from archsearch.errors import ArchError, ArchsearchError, ConfigError
from archsearch.ops import DARTS_OPS, OPS
from archsearch.space import Arch, Categorical, SearchSpace

CELL_TYPES = ("normal", "reduce")
INPUTS_PER_NODE = 2


class Genotype(NamedTuple):
    """The paper's notation: per intermediate node, two (op, input node) pairs."""

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]

    @property
    def nodes(self) -> int:
        return len(self.normal) // INPUTS_PER_NODE

    def render(self) -> str:
        def cell(pairs: Sequence[tuple[str, int]]) -> str:
            nodes = [pairs[k:k + 2] for k in range(0, len(pairs), 2)]
            return " | ".join(" ".join(f"({op},{j})" for op, j in node) for node in nodes)

        return (f"normal: {cell(self.normal)}; concat {list(self.normal_concat)}\n"
                f"reduce: {cell(self.reduce)}; concat {list(self.reduce_concat)}")


def _genotype(normal: str, reduce: str) -> Genotype:
    def pairs(text: str) -> tuple[tuple[str, int], ...]:
        return tuple((op, int(j)) for op, j in (p.split(",") for p in text.split()))

    concat = (2, 3, 4, 5)
    return Genotype(pairs(normal), concat, pairs(reduce), concat)


# The cells published in the paper (its Figures 4-5 and code), four nodes each.
NAMED_CELLS: dict[str, Genotype] = {
    "darts_v1": _genotype(
        "sep_conv_3x3,1 sep_conv_3x3,0 skip_connect,0 sep_conv_3x3,1 "
        "skip_connect,0 sep_conv_3x3,1 sep_conv_3x3,0 skip_connect,2",
        "max_pool_3x3,0 max_pool_3x3,1 skip_connect,2 max_pool_3x3,0 "
        "max_pool_3x3,0 skip_connect,2 skip_connect,2 avg_pool_3x3,0"),
    "darts_v2": _genotype(
        "sep_conv_3x3,0 sep_conv_3x3,1 sep_conv_3x3,0 sep_conv_3x3,1 "
        "sep_conv_3x3,1 skip_connect,0 skip_connect,0 dil_conv_3x3,2",
        "max_pool_3x3,0 max_pool_3x3,1 skip_connect,2 max_pool_3x3,1 "
        "max_pool_3x3,0 skip_connect,2 skip_connect,2 max_pool_3x3,1"),
}


class DartsCellSpace(SearchSpace):
    """The DARTS space for a given number of intermediate nodes and op set.

    Args:
        nodes: intermediate nodes per cell (the paper uses 4).
        ops: candidate ops in α-column order; `none` is always a legal edge value in a
            discrete cell (it means "no edge") even if it is not a candidate op.
    """

    def __init__(self, *, nodes: int = 4, ops: Sequence[str] = DARTS_OPS) -> None:
        if nodes < 1:
            raise ConfigError(f"--nodes must be at least 1, got {nodes}")
        ops = tuple(ops)
        for op in ops:
            OPS.get(op)  # unknown op names fail here, with a suggestion
        if len(set(ops)) != len(ops):
            raise ConfigError(f"the op set lists an op twice: {', '.join(ops)}")
        if not [op for op in ops if op != "none"]:
            raise ConfigError("the op set needs at least one op other than 'none'")
        self.nodes = nodes
        self.ops = ops
        self.edge_values = ops if "none" in ops else ("none", *ops)
        dims = {label: Categorical(self.edge_values) for label in self.labels()}
        super().__init__(dims, name="darts", space_args={"nodes": nodes, "ops": list(ops)})

    def __repr__(self) -> str:
        return f"DartsCellSpace(nodes={self.nodes}, ops={len(self.ops)})"

    @classmethod
    def for_arch(cls, arch: Arch, *, source: str = "architecture") -> DartsCellSpace:
        """The space an Arch was made in, rebuilt from its `space_args`, and the arch checked."""
        args = arch.space_args
        unknown = set(args) - {"nodes", "ops"}
        if unknown:
            raise ArchError(f"{source}: unknown space_args key {sorted(unknown)[0]!r}")
        nodes, ops = args.get("nodes", 4), args.get("ops", list(DARTS_OPS))
        if not isinstance(nodes, int) or isinstance(nodes, bool):
            raise ArchError(f"{source}: space_args.nodes must be an integer, got {nodes!r}")
        if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
            raise ArchError(f"{source}: space_args.ops must be a list of op names")
        try:
            space = cls(nodes=nodes, ops=ops)
        except ArchsearchError as exc:
            raise ArchError(f"{source}: {exc}") from None
        space.validate(arch, source=source)
        return space

    # --- structure --------------------------------------------------------------------
    def edges(self) -> list[tuple[int, int]]:
        """(node, input) pairs in α-row order: node 2 reads 0, 1; node 3 reads 0, 1, 2; ..."""
        return [(i, j) for i in range(2, self.nodes + 2) for j in range(i)]

    def labels(self, cell: str | None = None) -> list[str]:  # type: ignore[override]
        cells = CELL_TYPES if cell is None else (cell,)
        return [f"{c}.n{i}.e{j}" for c in cells for i, j in self.edges()]

    @property
    def num_edges(self) -> int:
        return len(self.edges())

    def size(self) -> int:
        """Distinct discrete architectures (normal × reduce): Π_i C(i, 2)·K² per cell."""
        k = len([op for op in self.edge_values if op != "none"])
        per_cell = math.prod(math.comb(i, INPUTS_PER_NODE) * k**2
                             for i in range(2, self.nodes + 2))
        return per_cell ** len(CELL_TYPES)

    # --- validation and conversion ---------------------------------------------------
    def validate(self, arch: Arch, *, source: str = "architecture") -> Arch:
        """Return `arch` if it is a valid discrete cell pair of this space, else raise."""
        if arch.space != self.name:
            raise ArchError(f"{source}: belongs to space {arch.space!r}, not {self.name!r}")
        missing = [lbl for lbl in self.dims if lbl not in arch]
        extra = [lbl for lbl in arch if lbl not in self.dims]
        if missing or extra:
            what = f"missing label {missing[0]!r}" if missing else f"unknown label {extra[0]!r}"
            raise ArchError(f"{source}: {what} (this space has {self.nodes} nodes per cell)")
        for label, dim in self.dims.items():
            if not dim.contains(arch[label]):
                raise ArchError(f"{source}: {label} = {arch[label]!r} is not one of "
                                f"{', '.join(map(str, dim.choices))}")
        problem = self.check(arch)
        if problem is not None:
            raise ArchError(f"{source}: {problem}")
        if arch.space_hash != self.space_hash:
            raise ArchError(f"{source}: space_hash does not match this space's op set "
                            f"({', '.join(self.ops)}); was it made with other --ops?")
        return arch

    def check(self, choices: Mapping[str, Any]) -> str | None:
        """The cross-edge rule: every intermediate node has exactly two non-`none` inputs."""
        for cell in CELL_TYPES:
            for i in range(2, self.nodes + 2):
                used = [j for j in range(i) if choices[f"{cell}.n{i}.e{j}"] != "none"]
                if len(used) != INPUTS_PER_NODE:
                    return (f"{cell} node {i} has {len(used)} non-'none' inputs; a DARTS "
                            f"cell needs exactly {INPUTS_PER_NODE}")
        return None

    def allowed(self, label: str, partial: Mapping[str, Any]) -> Sequence[Any]:
        """Edge values that still allow two inputs for the node, given its earlier edges."""
        cell, node, edge = label.split(".")
        i, j = int(node[1:]), int(edge[1:])
        used = sum(partial[f"{cell}.n{i}.e{k}"] != "none" for k in range(j))
        need, after = INPUTS_PER_NODE - used, i - 1 - j  # inputs still needed; edges after j
        if need <= 0:
            return ("none",)
        if need > after:  # this edge must be used
            return tuple(op for op in self.edge_values if op != "none")
        return self.edge_values

    def groups(self) -> list[list[str]]:
        """Crossover inherits a node's incoming edges together, which keeps cells valid."""
        return [[f"{cell}.n{i}.e{j}" for j in range(i)]
                for cell in CELL_TYPES for i in range(2, self.nodes + 2)]

    def arch_from_choices(self, choices: Mapping[str, Any]) -> Arch:
        return self.validate(self._make(choices))

    def build(self, arch: Arch, **kwargs: Any) -> Any:
        """The discrete CIFAR-style network of `arch` (see `DartsNetwork` for `kwargs`:
        channels, layers, num_classes, in_channels, auxiliary, imagenet, drop_path_prob)."""
        from archsearch.networks.darts import DartsNetwork

        return DartsNetwork(self.to_genotype(arch), **kwargs)

    def to_genotype(self, arch: Arch) -> Genotype:
        self.validate(arch)
        cells = {}
        for cell in CELL_TYPES:
            cells[cell] = tuple((arch[f"{cell}.n{i}.e{j}"], j)
                                for i in range(2, self.nodes + 2) for j in range(i)
                                if arch[f"{cell}.n{i}.e{j}"] != "none")
        concat = tuple(range(2, self.nodes + 2))
        return Genotype(cells["normal"], concat, cells["reduce"], concat)

    def from_genotype(self, genotype: Genotype, *, source: str = "genotype") -> Arch:
        if genotype.nodes != self.nodes:
            raise ArchError(f"{source}: has {genotype.nodes} nodes per cell, the space "
                            f"{self.nodes}")
        choices = {label: "none" for label in self.dims}
        for cell, pairs in (("normal", genotype.normal), ("reduce", genotype.reduce)):
            for k, (op, j) in enumerate(pairs):
                label = f"{cell}.n{2 + k // INPUTS_PER_NODE}.e{j}"
                if label not in choices:
                    raise ArchError(f"{source}: {cell} node {2 + k // 2} cannot read node {j}")
                if choices[label] != "none":
                    raise ArchError(f"{source}: {cell} node {2 + k // 2} reads node {j} twice")
                choices[label] = op
        return self.arch_from_choices(choices)

    def named(self, name: str) -> Arch:
        """A published cell (`darts_v1`, `darts_v2`) as an Arch of this space."""
        if name not in NAMED_CELLS:
            raise ArchError(f"unknown named cell {name!r} (known: {', '.join(NAMED_CELLS)})")
        return self.from_genotype(NAMED_CELLS[name], source=name)

    def describe(self, arch: Arch) -> str:
        return self.to_genotype(arch).render()

    # --- discretisation (paper §2.4) --------------------------------------------------
    def derive(self, alphas: Mapping[str, Any]) -> Arch:
        """The discrete arch of relaxed weights `alphas[cell]` (rows = edges, cols = ops).

        Per node keep the two incoming edges whose strongest non-`none` op weight (after
        softmax) is largest; on each, the argmax op other than `none`. Ties go to the
        lower input index and the earlier op.
        """
        choices: dict[str, str] = {}
        for cell in CELL_TYPES:
            weights = _softmax(np.asarray(alphas[cell], dtype=np.float64))
            if weights.shape != (self.num_edges, len(self.ops)):
                raise ArchError(f"alphas[{cell!r}] has shape {weights.shape}, expected "
                                f"({self.num_edges}, {len(self.ops)})")
            real = [k for k, op in enumerate(self.ops) if op != "none"]
            row = 0
            for i in range(2, self.nodes + 2):
                block = weights[row:row + i][:, real]  # (inputs, real ops)
                strength = block.max(axis=1)
                keep = sorted(range(i), key=lambda j: -strength[j])[:INPUTS_PER_NODE]
                for j in range(i):
                    op = self.ops[real[int(block[j].argmax())]] if j in keep else "none"
                    choices[f"{cell}.n{i}.e{j}"] = op
                row += i
        return self.arch_from_choices(choices)

    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random valid cell pair: two distinct inputs per node, then ops."""
        real = [op for op in self.edge_values if op != "none"]
        choices = {label: "none" for label in self.dims}
        for cell in CELL_TYPES:
            for i in range(2, self.nodes + 2):
                for j in rng.choice(i, size=INPUTS_PER_NODE, replace=False):
                    choices[f"{cell}.n{i}.e{int(j)}"] = real[int(rng.integers(len(real)))]
        return self.arch_from_choices(choices)

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """One change to one node of one cell: either the op on one of its two edges, or
        one of its inputs moved to another node (keeping the op), as in Real et al. 2019."""
        real = [op for op in self.edge_values if op != "none"]
        cell = CELL_TYPES[int(rng.integers(len(CELL_TYPES)))]
        i = int(rng.integers(2, self.nodes + 2))
        labels = [f"{cell}.n{i}.e{j}" for j in range(i)]
        used = [lbl for lbl in labels if arch[lbl] != "none"]
        free = [lbl for lbl in labels if arch[lbl] == "none"]
        choices = dict(arch)
        edge = used[int(rng.integers(len(used)))]
        if free and (len(real) == 1 or rng.random() < 0.5):
            target = free[int(rng.integers(len(free)))]
            choices[target], choices[edge] = arch[edge], "none"
        elif len(real) > 1:
            others = [op for op in real if op != arch[edge]]
            choices[edge] = others[int(rng.integers(len(others)))]
        return self.arch_from_choices(choices)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
