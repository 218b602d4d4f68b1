"""The DARTS step benchmark's float64 equivalence check of ours against the reference, and
its yardsticks: forward FLOPs per example and a large matmul's GFLOP/s."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from _darts_setup import (
    CHANNELS,
    CHECK_KEYS,
    CHECK_RTOL,
    CLASSES,
    EXPECTED_WEIGHTS,
    IMAGE,
    LAYERS,
    NODES,
    Batch,
    build,
)
from _reference_darts import ReferenceArchitect, ReferenceNetwork
from torch import Tensor, nn

from archsearch.hardware import count_macs
from archsearch.spaces.darts import DartsCellSpace
from archsearch.supernet import DartsSupernet, finite_difference, first_order

# --------------------------------------------------------------------------------------------
# Equivalence in float64
# --------------------------------------------------------------------------------------------

def _max_abs(a: list[Tensor] | Tensor, b: list[Tensor] | Tensor) -> tuple[float, float]:
    """(max |a − b|, that divided by max |b|) over all tensors."""
    a = a if isinstance(a, list) else [a]
    b = b if isinstance(b, list) else [b]
    diff = max(float((x - y).detach().abs().max()) for x, y in zip(a, b, strict=True))
    scale = max(float(y.detach().abs().max()) for y in b)
    return diff, diff / scale if scale else diff


def check_equivalence(batch: int = 4, size: int = 16) -> dict[str, Any]:
    """Same weights and α in both implementations; compare logits and α-gradients in float64.

    The images are `size`×`size` (16 by default): float64 convolutions run on PyTorch's slow
    reference kernels, and the semantics checked do not depend on the resolution (the
    network is fully convolutional; 16 → 8 → 4 keeps every stride-2 input even, as 32 does).

    Parameters map 1:1 in module order: both stack stem, cells (preprocess0, preprocess1,
    then the edges in α-row order, each edge's parametric ops in op order) and classifier.
    The reference's extra modules (pooling BNs per edge, zero, identity) have no parameters,
    and ours keeps only the parametric ops per edge, so the two weight lists align; every
    pair's shape is verified before copying.
    """
    dtype = torch.float64
    ours = build("ours", batch, "second", dtype, size)
    ref = build("reference", batch, "second", dtype, size)
    net: DartsSupernet = ours.model  # type: ignore[assignment]
    rnet: ReferenceNetwork = ref.model  # type: ignore[assignment]
    ours_w, ref_w = net.weight_parameters(), list(rnet.parameters())
    if len(ours_w) != len(ref_w):
        raise AssertionError(f"{len(ours_w)} weight tensors in ours, {len(ref_w)} in reference")
    for (name, p), q in zip(((n, p) for n, p in net.named_parameters()
                             if n not in net.arch_parameter_names()), ref_w, strict=True):
        if p.shape != q.shape:
            raise AssertionError(f"shape mismatch at {name}: {tuple(p.shape)} vs {tuple(q.shape)}")
    n_ours, n_ref = sum(p.numel() for p in ours_w), sum(p.numel() for p in ref_w)
    if not n_ours == n_ref == EXPECTED_WEIGHTS:
        raise AssertionError(f"weights: ours {n_ours}, reference {n_ref}, "
                             f"expected {EXPECTED_WEIGHTS}")
    with torch.no_grad():
        for p, q in zip(ours_w, ref_w, strict=True):
            p.copy_(q)
        for a, b in zip(net.arch_parameters(), rnet.arch_parameters(), strict=True):
            a.copy_(b)
    train, val = ours.train, ours.val
    ref_arch: ReferenceArchitect = ref.optimizer
    ours_bilevel = ours.optimizer

    results: dict[str, Any] = {"batch": batch, "size": size, "dtype": "float64",
                               "weights": n_ours,
                               "weight_tensors": len(ours_w)}
    with torch.no_grad():
        results["logits"] = _max_abs(net(train[0]), rnet(train[0]))

    names = net.arch_parameter_names()

    def loss(model: nn.Module, b: Batch) -> Tensor:
        return F.cross_entropy(model(b[0]), b[1])

    g_ours = first_order(net, names, loss, loss, train, val, ours_bilevel.virtual_step())
    g_ref = ref_arch.first_order_grads(val)
    results["alpha_grad_first"] = _max_abs([g_ours[n] for n in names], g_ref)

    # Non-zero momentum buffers, identical in both, so the virtual step uses all its terms.
    gen = torch.Generator().manual_seed(2)
    for p, q in zip(ours_w, ref_w, strict=True):
        buf = 0.01 * torch.randn(p.shape, generator=gen, dtype=dtype)
        ours_bilevel.weight_optimizer.state[p]["momentum_buffer"] = buf.clone()
        ref_arch.network_optimizer.state[q]["momentum_buffer"] = buf.clone()
    g_ours = finite_difference(net, names, loss, loss, train, val, ours_bilevel.virtual_step())
    rnet.zero_grad(set_to_none=True)
    g_ref = ref_arch.second_order_grads(train, val)
    results["alpha_grad_second"] = _max_abs([g_ours[n] for n in names], g_ref)

    # One whole second-order search step of each: the weights and α afterwards.
    loss_ours = ours_bilevel.step(train, val)
    loss_ref = ref_arch.step(train, val, "second")
    results["step_loss"] = _max_abs(loss_ours, loss_ref)
    results["weights_after_step"] = _max_abs(ours_w, ref_w)
    results["alpha_after_step"] = _max_abs(net.arch_parameters(), rnet.arch_parameters())
    # NaN compares False, so a NaN difference counts as a failure too.
    results["failed"] = [k for k in CHECK_KEYS if not results[k][1] <= CHECK_RTOL]
    return results

# --------------------------------------------------------------------------------------------
# FLOPs and the matmul yardstick
# --------------------------------------------------------------------------------------------

def forward_flops_per_example() -> dict[str, int]:
    """2 × conv+linear MACs of one forward pass for one example, for both implementations."""
    torch.manual_seed(0)
    ours = DartsSupernet(DartsCellSpace(nodes=NODES), channels=CHANNELS, layers=LAYERS,
                         num_classes=CLASSES)
    ref = ReferenceNetwork(CHANNELS, CLASSES, LAYERS, NODES)
    return {"ours": 2 * count_macs(ours, IMAGE), "reference": 2 * count_macs(ref, IMAGE)}


def matmul_gflops(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    t = statistics.median(times)
    return {"n": n, "seconds": t, "gflops": 2 * n ** 3 / t / 1e9}

