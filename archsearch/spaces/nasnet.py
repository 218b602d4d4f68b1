"""The NASNet cell space (Zoph et al., "Learning Transferable Architectures for Scalable
Image Recognition", CVPR 2018, arXiv:1707.07012, §3 and Fig. 3).

A cell is B blocks. Block k makes one new hidden state in five decisions, labelled in the
order the paper's controller takes them:

    {cell}.b{k}.in0      the first input   (an int, see below)
    {cell}.b{k}.in1      the second input
    {cell}.b{k}.op0      the op applied to the first input
    {cell}.b{k}.op1      the op applied to the second input
    {cell}.b{k}.combine  how the two results are merged: "add" or "concat"

Inputs are numbered as in DARTS: 0 = h_{i-2} (the output of the cell two back), 1 = h_{i-1}
(the previous cell's output), and 2 + j = the output of block j of this cell. With
`variant="fixed"` (the default, and the space behind the size quoted in REFERENCE.md) a block
reads only inputs 0 and 1, so a cell has (2·2·M·M·N)^B choices: 3.2·10¹¹ for M = 5 ops,
N = 2 combiners and B = 5 blocks. With `variant="original"` block k may also read blocks
0..k−1, as in the paper, giving Π_k (2+k)²·M²·N. Both inputs may be the same state.

Every combination is valid (no cross-dimension rule), so the generic SearchSpace sampling,
mutation, crossover and enumeration apply unchanged. `reduction=True` adds a separately
searched `reduce.*` cell (squaring the size); otherwise the network's reduction cells are the
normal cell run at stride 2 (see `archsearch.networks.nasnet`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from archsearch.errors import ConfigError
from archsearch.ops import OPS
from archsearch.space import Arch, Categorical, Dimension, SearchSpace

# The paper's list has 13 ops; the course version of the size uses M = 5 of them. Op names
# are those of `archsearch.ops.OPS`, whose `skip_connect` is the paper's "identity".
DEFAULT_OPS: tuple[str, ...] = (
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
)
COMBINES: tuple[str, ...] = ("add", "concat")
VARIANTS: tuple[str, ...] = ("fixed", "original")
CELL_INPUTS = 2  # h_{i-2} and h_{i-1}
INPUT_NAMES = ("h[i-2]", "h[i-1]")


class Block(NamedTuple):
    """One block of a cell: `combine(ops[0](inputs[0]), ops[1](inputs[1]))`."""

    inputs: tuple[int, int]
    ops: tuple[str, str]
    combine: str


def output_blocks(blocks: Sequence[Block]) -> list[int]:
    """Blocks that no other block reads: their outputs are concatenated into the cell's
    output, as in NASNet ("all unused hidden states are concatenated")."""
    read = {i - CELL_INPUTS for block in blocks for i in block.inputs if i >= CELL_INPUTS}
    return [k for k in range(len(blocks)) if k not in read]


def used_cell_inputs(blocks: Sequence[Block]) -> set[int]:
    """Which of the cell's inputs (0 = h_{i-2}, 1 = h_{i-1}) some block reads."""
    return {i for block in blocks for i in block.inputs if i < CELL_INPUTS}


def input_name(index: int) -> str:
    return INPUT_NAMES[index] if index < CELL_INPUTS else f"b{index - CELL_INPUTS}"


class NasnetCellSpace(SearchSpace):
    """The NASNet space of B-block cells over a configurable op and combine set.

    Args:
        blocks: B, the blocks per cell (the paper uses 5).
        ops: the candidate ops (names in `archsearch.ops.OPS`), M of them.
        combines: the merge methods, a non-empty subset of ("add", "concat").
        variant: "fixed" (inputs h_{i-2}, h_{i-1} only) or "original" (block k may also read
            blocks 0..k−1).
        reduction: also search a separate reduction cell (`reduce.*` labels).

    Raises:
        ConfigError: for an unknown variant or combine, a repeated op, or fewer than 1 block.
    """

    def __init__(self, *, blocks: int = 5, ops: Sequence[str] = DEFAULT_OPS,
                 combines: Sequence[str] = COMBINES, variant: str = "fixed",
                 reduction: bool = False) -> None:
        ops, combines = tuple(ops), tuple(combines)
        _check_settings(blocks, ops, combines, variant)
        self.blocks, self.ops, self.combines = blocks, ops, combines
        self.variant, self.reduction = variant, bool(reduction)
        super().__init__(self._dims(), name="nasnet", space_args={
            "blocks": blocks, "ops": list(ops), "combines": list(combines),
            "variant": variant, "reduction": self.reduction})

    def __repr__(self) -> str:
        return (f"NasnetCellSpace(blocks={self.blocks}, ops={len(self.ops)}, "
                f"combines={len(self.combines)}, variant={self.variant!r}, "
                f"reduction={self.reduction})")

    @property
    def cell_types(self) -> tuple[str, ...]:
        return ("normal", "reduce") if self.reduction else ("normal",)

    def num_inputs(self, block: int) -> int:
        """How many states block `block` may read: 2, or 2 + block in the original variant."""
        return CELL_INPUTS + (block if self.variant == "original" else 0)

    def _dims(self) -> dict[str, Dimension]:
        dims: dict[str, Dimension] = {}
        for cell in self.cell_types:
            for k in range(self.blocks):
                inputs = Categorical(tuple(range(self.num_inputs(k))))
                dims[f"{cell}.b{k}.in0"] = inputs
                dims[f"{cell}.b{k}.in1"] = inputs
                dims[f"{cell}.b{k}.op0"] = Categorical(self.ops)
                dims[f"{cell}.b{k}.op1"] = Categorical(self.ops)
                dims[f"{cell}.b{k}.combine"] = Categorical(self.combines)
        return dims

    # --- views of an arch ------------------------------------------------------------
    def cell(self, arch: Arch, cell: str = "normal") -> tuple[Block, ...]:
        """The blocks of cell `cell` ("normal" or, with `reduction=True`, "reduce")."""
        if cell not in self.cell_types:
            raise ConfigError(f"this space has no {cell!r} cell (cells: "
                              f"{', '.join(self.cell_types)})")
        self.validate(arch)
        return tuple(
            Block((arch[f"{cell}.b{k}.in0"], arch[f"{cell}.b{k}.in1"]),
                  (arch[f"{cell}.b{k}.op0"], arch[f"{cell}.b{k}.op1"]),
                  arch[f"{cell}.b{k}.combine"])
            for k in range(self.blocks))

    def describe(self, arch: Arch) -> str:
        """One line per cell, e.g.
        `normal: b0 = add(sep_conv_3x3(h[i-1]), skip_connect(h[i-2])); ...; out = concat(b0, b1)`.
        """
        lines = []
        for cell in self.cell_types:
            blocks = self.cell(arch, cell)
            parts = [f"b{k} = {b.combine}({b.ops[0]}({input_name(b.inputs[0])}), "
                     f"{b.ops[1]}({input_name(b.inputs[1])}))" for k, b in enumerate(blocks)]
            out = ", ".join(f"b{k}" for k in output_blocks(blocks))
            lines.append(f"{cell}: {'; '.join(parts)}; out = concat({out})")
        return "\n".join(lines)

    def build(self, arch: Arch, *, channels: int = 16, cells: int = 3, num_classes: int = 10,
              in_channels: int = 3) -> Any:
        """A small NASNet-style network of `arch` (see `NasnetNetwork`).

        Args:
            arch: an architecture of this space.
            channels: the channels of the first stage; each reduction doubles them (even).
            cells: normal cells per stage; there are 3 stages with a reduction between two.
            num_classes: outputs of the classifier.
            in_channels: image channels (1 for digits, 3 for colour).
        """
        from archsearch.networks.nasnet import NasnetNetwork

        normal = self.cell(arch, "normal")
        reduce = self.cell(arch, "reduce") if self.reduction else None
        return NasnetNetwork(normal, reduce, channels=channels, cells=cells,
                             num_classes=num_classes, in_channels=in_channels)


def _check_settings(blocks: int, ops: tuple[str, ...], combines: tuple[str, ...],
                    variant: str) -> None:
    if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 1:
        raise ConfigError(f"blocks must be an integer ≥ 1, got {blocks!r}")
    if variant not in VARIANTS:
        raise ConfigError(f"unknown NASNet variant {variant!r} (known: {', '.join(VARIANTS)})")
    if not ops:
        raise ConfigError("the NASNet op set is empty")
    for op in ops:
        OPS.get(op)  # an unknown op name fails here, with a suggestion
    if len(set(ops)) != len(ops):
        raise ConfigError(f"the op set lists an op twice: {', '.join(ops)}")
    unknown = [c for c in combines if c not in COMBINES]
    if not combines or unknown or len(set(combines)) != len(combines):
        raise ConfigError(f"combines must be distinct values among {', '.join(COMBINES)}, "
                          f"got {list(combines)}")
