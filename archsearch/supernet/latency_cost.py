"""A differentiable expected latency of the DARTS supernet, from a measured latency table.

ProxylessNAS (Cai et al., ICLR 2019, arXiv:1812.00332, eq. 3) makes latency differentiable
as its expectation over the relaxed choice: E[latency] = Σ_cells Σ_edges Σ_ops
softmax(α)_o · latency(o at that edge). `op_latency_table` gives the per-(edge, op) latencies
in exactly the format of `op_macs_table` (`archsearch/supernet/cost.py`), so
`expected_macs(net, op_latency_table(net, table))` is the expected latency in ms of the
cells' ops; the parts that do not depend on α (stem, preprocessing, glue, classifier) are
`fixed_latency_ms(table)`, and their sum is `table.predict_ms` at a one-hot α.

The latencies are those of the *discrete* network the table was built for (its build
settings: channels, layers, input size), which need not be the supernet's size: α is shared
by every cell of a type, so this penalises the latency of the network you will train.
"""

from __future__ import annotations

import inspect
import math
import re

import numpy as np
import torch
from torch import Tensor

from archsearch.errors import ConfigError
from archsearch.hardware._trace import unit_key
from archsearch.hardware.latency_table import LatencyTable
from archsearch.networks.darts import DartsNetwork, reduction_indices
from archsearch.ops import create_op
from archsearch.spaces.darts import DartsCellSpace
from archsearch.supernet.darts import DartsSupernet

_CELL_OP = re.compile(r"cells\.\d+\.ops\.\d+")


def op_latency_table(net: DartsSupernet | DartsCellSpace,
                     table: LatencyTable) -> dict[str, Tensor]:
    """Latency (ms) of every op on every edge, summed over the cells of each type.

    Args:
        net: the supernet, or its cell space (which gives the edges and the α-column order
            of the ops).
        table: a latency table of the same DARTS space.

    Returns:
        {"normal": (edges, ops), "reduce": (edges, ops)} float64 tensors; `none` costs 0.

    Raises:
        ConfigError: the table is of another space or op set, of ImageNet-style networks, or
            lacks an op at a shape (a table built for other sizes).
    """
    space = net if isinstance(net, DartsCellSpace) else net.space
    if (table.space_name, table.space_hash) != (space.name, space.space_hash):
        raise ConfigError(f"the latency table is for space {table.space_name!r} with "
                          f"{table.space_args}; the supernet's is {space.name!r} with "
                          f"{space.space_args}")
    channels, layers = _network_size(table)
    tables = {cell: torch.zeros(space.num_edges, len(space.ops), dtype=torch.float64)
              for cell in ("normal", "reduce")}
    size = table.input_size
    for k in range(layers):
        reduction = k in reduction_indices(layers)
        channels = 2 * channels if reduction else channels
        out_size = (size + 1) // 2 if reduction else size  # stride-2 ops: ceil(H / 2)
        kind = "reduce" if reduction else "normal"
        for e, (_, j) in enumerate(space.edges()):
            stride = 2 if reduction and j < 2 else 1
            for o, name in enumerate(space.ops):
                if name != "none":
                    tables[kind][e, o] += _op_ms(table, name, channels, stride,
                                                 size if j < 2 else out_size)
        size = out_size
    return tables


def fixed_latency_ms(table: LatencyTable) -> float:
    """The predicted latency of the parts of a DARTS network that do not depend on α."""
    arch = table.space.sample(np.random.default_rng(0))
    return math.fsum(part.ms for part in table.breakdown(arch)
                     if not _CELL_OP.fullmatch(part.path))


def _network_size(table: LatencyTable) -> tuple[int, int]:
    """(channels, layers) of the table's DARTS network, defaults filled in."""
    defaults = {name: p.default for name, p in
                inspect.signature(DartsNetwork.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    settings = {**defaults, **table.build_kwargs}
    if settings.get("imagenet"):
        raise ConfigError("op_latency_table supports CIFAR-style DARTS networks only "
                          "(the table was built with imagenet=true)")
    return int(settings["channels"]), int(settings["layers"])


def _op_ms(table: LatencyTable, name: str, channels: int, stride: int, size: int) -> float:
    # The key the table's trace gave this op: DartsNetwork runs channels-last (its forward
    # converts the input) where that layout pays, plain contiguous otherwise; try both.
    op = create_op(name, channels, stride)
    entry = None
    for layout in (torch.channels_last, torch.contiguous_format):
        x = torch.empty(table.batch, channels, size, size).contiguous(memory_format=layout)
        entry = entry or table.entries.get(unit_key(op, (x,), {}))
    if entry is None:
        raise ConfigError(f"the latency table has no entry for {name} with {channels} "
                          f"channels at {size}×{size}, stride {stride}; was it built for "
                          f"this network size ({table.build_kwargs})?")
    return entry.ms
