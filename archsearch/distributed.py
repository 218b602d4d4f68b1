"""Data-parallel one-shot search with `torch.distributed` (synchronous SGD, Goyal et al.,
"Accurate, Large Minibatch SGD", arXiv:1706.02677).

Every rank builds the same loaders with the same seed, so each step all ranks see the same
*global* batch; each takes its own contiguous slice of it (`shard`). After each backward
pass the gradients are averaged over the ranks (`mean`): with equal slices the
mean of the per-rank mean losses is the mean loss of the global batch, so every rank applies
the update a single process would apply to the whole batch, and all ranks stay identical.
Batch normalisation still normalises with per-rank batch statistics, so the equivalence
with one process is exact only for networks without batch-dependent layers.

Under `torchrun` the environment names RANK, WORLD_SIZE and LOCAL_RANK;
`DistributedContext.from_env` joins the process group (gloo on CPU, nccl on CUDA). Without
those variables everything here is a single-process no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from archsearch.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands among the ranks of one data-parallel run.

    Args:
        rank: this process's index, 0 … world_size − 1.
        world_size: how many processes share the work (1: no distribution).
        local_rank: index on this machine (picks the CUDA device).
        owns_group: this context joined the process group (`close` leaves it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes results."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process: collectives are needed."""
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: torch.device | str = "cpu") -> DistributedContext:
        """The context torchrun describes in the environment; joins the process group
        (gloo for CPU, nccl for CUDA) unless it is joined already. Without WORLD_SIZE > 1
        it is the single-process context and nothing is initialised."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
        if world <= 1:
            return cls()
        if not 0 <= rank < world:
            raise ConfigError(f"RANK {rank} is outside 0…{world - 1} (WORLD_SIZE {world})")
        if not dist.is_available():
            raise ConfigError("this torch build has no torch.distributed")
        owns = not dist.is_initialized()
        if owns:
            backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
            if backend == "nccl":  # nccl needs each rank's own GPU chosen first
                torch.cuda.set_device(local)
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
        return cls(rank=rank, world_size=world, local_rank=local, owns_group=owns)

    def device(self, device: torch.device) -> torch.device:
        """`device` for this rank: a CUDA device without an index becomes cuda:LOCAL_RANK."""
        if self.active and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def shard(self, batch: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """This rank's contiguous slice of each tensor of a global batch (equal slices)."""
        if not self.active:
            return tuple(batch)
        size = len(batch[0])
        if size % self.world_size:
            raise ConfigError(f"a batch of {size} does not split evenly over "
                              f"{self.world_size} processes")
        step = size // self.world_size
        return tuple(t[self.rank * step:(self.rank + 1) * step] for t in batch)

    def mean(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """Each tensor's mean over the ranks, as new tensors, differentiably: the backward
        pass averages the incoming gradients over the ranks too. With the global loss
        L = (1/R) Σ_r L_r and y = (1/R) Σ_r x_r shared by all ranks, rank r's gradient
        (1/R) Σ_r' ∂L_r'/∂y, once the ranks' gradients are averaged at the end, gives
        exactly ∂L/∂x_r; so the exact unrolled DARTS gradient can differentiate through
        an averaged virtual step. One collective per call (the tensors travel flattened)."""
        if not self.active:
            return list(tensors)
        return list(_MeanOverRanks.apply(self.world_size, *tensors))

    def sum_floats(self, *values: float) -> tuple[float, ...]:
        """Each value summed over the ranks (float64, so counts stay exact)."""
        if not self.active:
            return tuple(float(v) for v in values)
        t = torch.tensor(values, dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return tuple(float(v) for v in t.cpu())

    def broadcast_parameters(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank (an identical start)."""
        if not self.active:
            return
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.active:
            dist.barrier()

    def on_main(self, fn: Callable[[], T], *, what: str) -> T | None:
        """Run `fn` on rank 0 only; if it raises there, every rank raises (rank 0 its own
        error, the others a ConfigError naming `what`), so no rank waits forever in a
        collective its peers never reach."""
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as exc:  # re-raised below, on every rank
                error = exc
        failed, = self.sum_floats(float(error is not None))
        if error is not None:
            raise error
        if failed:
            raise ConfigError(f"rank 0 failed to {what}; see its error")
        return result

    def close(self) -> None:
        """Wait for every rank, then leave the process group if this context joined it."""
        if self.active and dist.is_initialized():
            dist.barrier()
            if self.owns_group:
                dist.destroy_process_group()

    def _collective_device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


def _mean_in_place(tensors: Sequence[Tensor], world_size: int) -> None:
    """All-reduce the tensors (same dtype and device) as one flat buffer, then divide."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(world_size)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


class _MeanOverRanks(torch.autograd.Function):
    """y_i = mean over ranks of x_i; backward: ∂/∂x_i = mean over ranks of ∂/∂y_i."""

    @staticmethod
    def forward(ctx: Any, world_size: int, *tensors: Tensor) -> tuple[Tensor, ...]:
        ctx.world_size = world_size
        out = [t.detach().clone() for t in tensors]
        _mean_grouped(out, world_size)
        return tuple(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        out = [g.clone() for g in grads]  # zeros where an output was unused (same on all ranks)
        _mean_grouped(out, ctx.world_size)
        return (None, *out)


def _mean_grouped(tensors: Sequence[Tensor], world_size: int) -> None:
    """`_mean_in_place` per (dtype, device) group, in first-seen order (the same on every rank)."""
    groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    for group in groups.values():
        _mean_in_place(group, world_size)


def check_single_process(what: str, instead: str) -> None:
    """A ConfigError if torchrun started this process as one of several ranks (WORLD_SIZE
    > 1) for work that runs in one process: every rank would repeat it and write the same
    files. `instead` says what to do."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError("WORLD_SIZE must be an integer") from None
    if world > 1:
        raise ConfigError(f"{what} does not run under torchrun ({world} processes); {instead}")


def check_one_shot_run(ctx: DistributedContext, settings: Mapping[str, Any], *,
                       resume: bool) -> None:
    """What `archsearch search` cannot do under torchrun with several processes: resume
    (the checkpoint lives with rank 0), retrain (one process retrains the cell) and
    multi-trial strategies (they scale out with `--workers`); each is a ConfigError."""
    if not ctx.active:
        return
    ranks = f"under torchrun with {ctx.world_size} processes"
    if resume:
        raise ConfigError(f"--resume is not supported {ranks}; resume in one process")
    if settings.get("retrain") is not None:
        raise ConfigError(f"--retrain is not supported {ranks}; retrain the cell afterwards "
                          "with `archsearch train`")
    if settings.get("method", "darts") not in ("darts", "proxyless"):
        raise ConfigError(f"--strategy {settings['method']} is not supported {ranks}; "
                          "one-shot searches (darts, proxyless) run under torchrun, "
                          "multi-trial ones scale out with --workers")
