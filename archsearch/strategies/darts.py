"""DARTS: Differentiable Architecture Search (Liu, Simonyan & Yang, ICLR 2019, arXiv:1806.09055).

The training data is split in halves: the first trains the supernet's weights w, the
second its architecture α (§3.1). Each step updates α on a batch of the second half, then w
on a batch of the first (Algorithm 1), with first- or second-order architecture gradients.
After each epoch the current α is discretised, so the log shows how the cell evolves.

A search can be checkpointed after every epoch (`state_dict`-like documents handed to
`on_checkpoint`: supernet weights with α, both optimisers, the loaders' and global RNG
states, the history) and continued from such a document with `resume=`; the continued
search computes exactly what the uninterrupted one would have.

With a `DistributedContext` of several ranks (`torchrun`, `archsearch.distributed`) the
search is data-parallel: every rank draws the same global batches, computes the losses on
its own slice, and averages the α and w gradients over the ranks before each update, so all
ranks hold the same supernet and derive the same cell. Second order averages the virtual
step's gradient and the Hessian-vector product's direction too (`supernet._hypergrad`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from archsearch.data import TensorLoader
from archsearch.distributed import DistributedContext
from archsearch.errors import ConfigError
from archsearch.networks.darts import check_network_size
from archsearch.space import Arch
from archsearch.spaces.darts import DartsCellSpace
from archsearch.strategies._base import EpochCallback, OneShotStrategy
from archsearch.strategies._one_shot import run_epochs, search_loaders, seeded_supernet
from archsearch.supernet import BilevelOptimizer, DartsSupernet
from archsearch.supernet.cost import expected_macs, op_macs_table
from archsearch.train import MAX_LOSS, check_loss, cosine_lr, evaluate, foreach_supported


@dataclass
class DartsResult:
    """What a DARTS search hands over."""

    arch: Arch
    alphas: dict[str, list[list[float]]]
    history: list[dict[str, Any]] = field(default_factory=list)
    supernet: DartsSupernet | None = None


class DARTS(OneShotStrategy):
    """DARTS search with the paper's defaults (CIFAR-10 settings of §3.1 / Table 1).

    Args:
        space: the cell space (nodes, op set).
        order: "first" or "second" (unrolled gradient, eq. 7).
        hvp: second order only: "finite-difference" (eq. 8) or "exact" (double backward).
        epochs, channels, layers, batch_size: search length and supernet size.
        lr, lr_min, momentum, weight_decay, grad_clip: SGD on w, cosine from lr to lr_min.
        arch_lr, arch_betas, arch_weight_decay: Adam on α.
        xi: virtual step size; None = the current weight learning rate (the paper).
        crop_padding, flip, cutout_length: augmentation of training batches.
        seed: seeds the supernet's initialisation and the data order.
        device: where the supernet runs ("cpu", "cuda:0", ...).
        cost_weight: λ of a hardware-cost term in the architecture loss:
            L_val + λ · E[MACs] / E_uniform[MACs], where E[MACs] = Σ softmax(α)·MACs(op)
            over all edges of all cells (`supernet.cost`) and the denominator is its value
            at uniform α, so λ does not depend on the network's size. 0 (the default) is
            plain DARTS.
        cost_tables: the per-op cost the `cost_weight` term uses instead of MACs:
            {"normal": (edges, ops), "reduce": (edges, ops)}, e.g. a measured latency table
            (`supernet.latency_cost.op_latency_table`); its expectation is logged as
            `expected_cost` beside `expected_macs`.
        max_loss: a training loss above this stops the search like a NaN does.
        distributed: the ranks of a data-parallel search (None: one process). Each rank
            takes `batch_size / world_size` rows of every batch; gradients are averaged.
    """

    def __init__(self, space: DartsCellSpace, *, order: str = "first",
                 hvp: str = "finite-difference", epochs: int = 50, channels: int = 16,
                 layers: int = 8, batch_size: int = 64, lr: float = 0.025, lr_min: float = 0.001,
                 momentum: float = 0.9, weight_decay: float = 3e-4, grad_clip: float = 5.0,
                 arch_lr: float = 3e-4, arch_betas: tuple[float, float] = (0.5, 0.999),
                 arch_weight_decay: float = 1e-3, xi: float | None = None,
                 crop_padding: int = 0, flip: bool = False, cutout_length: int = 0,
                 seed: int = 0, device: str | torch.device = "cpu",
                 cost_weight: float = 0.0, cost_tables: dict[str, Tensor] | None = None,
                 max_loss: float | None = MAX_LOSS,
                 distributed: DistributedContext | None = None) -> None:
        if epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {epochs}")
        if batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
        check_network_size(channels, layers)
        self.distributed = distributed or DistributedContext()
        if self.distributed.active:
            _check_distributed(self.distributed, batch_size)
        if not cost_weight >= 0:
            raise ConfigError(f"--cost-weight must be at least 0, got {cost_weight}")
        self.cost_weight = float(cost_weight)
        self.cost_tables = cost_tables
        self.max_loss = max_loss
        self.space = space
        self.order, self.hvp = order, hvp
        self.epochs, self.channels, self.layers = epochs, channels, layers
        self.batch_size = batch_size
        self.lr, self.lr_min, self.momentum = lr, lr_min, momentum
        self.weight_decay, self.grad_clip = weight_decay, grad_clip
        self.arch_lr, self.arch_betas = arch_lr, arch_betas
        self.arch_weight_decay = arch_weight_decay
        self.xi = xi
        self.augment = {"crop_padding": crop_padding, "flip": flip, "cutout_length": cutout_length}
        self.seed = seed
        self.device = self.distributed.device(torch.device(device))

    def extra_repr(self) -> str:
        cost = f", cost_weight={self.cost_weight}" if self.cost_weight else ""
        return (f"order={self.order!r}, epochs={self.epochs}, channels={self.channels}, "
                f"layers={self.layers}, nodes={self.space.nodes}{cost}")

    def build_supernet(self, *, num_classes: int, in_channels: int) -> DartsSupernet:
        return seeded_supernet(DartsSupernet, self.space, seed=self.seed, channels=self.channels,
                               layers=self.layers, num_classes=num_classes,
                               in_channels=in_channels, device=self.device)

    def search(self, x_train: Tensor, y_train: Tensor, *, num_classes: int,
               on_epoch: EpochCallback | None = None, progress: bool = True,
               on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
               resume: Mapping[str, Any] | None = None) -> DartsResult:
        """Search on `x_train` (N, C, H, W), split in halves for w and α.

        Args:
            x_train, y_train: the training split (the test split is never seen).
            num_classes: K.
            on_epoch: called with each epoch's record (losses, accuracies, α, genotype).
            progress: show progress bars.
            on_checkpoint: called after each epoch, before `on_epoch`, with a checkpoint
                document (tensors and plain values; `torch.save` it).
            resume: such a document: the search continues after its epoch.

        Raises:
            FloatingPointError: the loss became NaN, infinite or above `max_loss` (naming
                the epoch and step), or α or the validation loss became non-finite.
        """
        loaders, (xa, ya) = search_loaders(x_train, y_train, batch_size=self.batch_size,
                                           seed=self.seed, augment=self.augment)
        net = self.build_supernet(num_classes=num_classes, in_channels=x_train.shape[1])
        self.distributed.broadcast_parameters(net)  # the same seed; this makes sure of it
        progress = progress and self.distributed.is_main
        stash: dict[str, Tensor] = {}
        self._macs_tables = op_macs_table(net, x_train.shape[-1])
        self._cost_tables = self._macs_tables if self.cost_tables is None else \
            {cell: t.to(torch.float64) for cell, t in self.cost_tables.items()}
        optimizer = self._bilevel(net, stash)
        history = run_epochs(
            lambda epoch: self._epoch(net, optimizer, loaders["weights"], loaders["arch"],
                                      (xa, ya), epoch, stash, progress),
            net, optimizer, loaders, epochs=self.epochs, device=self.device, progress=progress,
            on_epoch=on_epoch, on_checkpoint=on_checkpoint, resume=resume)
        return DartsResult(arch=net.derive(), alphas=net.alphas(), history=history, supernet=net)

    def _expected_cost(self, net: DartsSupernet) -> dict[str, float]:
        if self.cost_tables is None:
            return {}
        return {"expected_cost": float(expected_macs(net, self._cost_tables).detach())}

    def _bilevel(self, net: DartsSupernet, stash: dict[str, Tensor]) -> BilevelOptimizer:
        def loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
            x, y = batch
            logits = model(x)
            stash["logits"] = logits.detach()  # the last call of a step is the w step
            return F.cross_entropy(logits, y)

        weights = net.weight_parameters()
        weight_opt = torch.optim.SGD(weights, lr=self.lr, momentum=self.momentum,
                                     weight_decay=self.weight_decay,
                                     foreach=foreach_supported(weights))
        arch_opt = torch.optim.Adam(net.arch_parameters(), lr=self.arch_lr, betas=self.arch_betas,
                                    weight_decay=self.arch_weight_decay)
        tables = self._cost_tables
        uniform = sum(float(t.mean(dim=-1).sum()) for t in tables.values())

        def val_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
            if self.cost_weight == 0 or uniform == 0:
                return loss(model, batch)
            # L_val + λ·E[MACs]/E_uniform[MACs]; the table is constant, so only α moves it.
            penalty = expected_macs(net, tables) / uniform
            return loss(model, batch) + self.cost_weight * penalty.to(torch.float32)

        return BilevelOptimizer(net, net.arch_parameter_names(), train_loss=loss,
                                val_loss=val_loss,
                                weight_optimizer=weight_opt, arch_optimizer=arch_opt,
                                order=self.order, hvp=self.hvp, xi=self.xi,
                                grad_clip=self.grad_clip,
                                average=self.distributed.mean
                                if self.distributed.active else None)

    def _epoch(self, net: DartsSupernet, opt: BilevelOptimizer, w_loader: TensorLoader,
               a_loader: TensorLoader, val_data: tuple[Tensor, Tensor], epoch: int,
               stash: dict[str, Tensor], progress: bool) -> dict[str, Any]:
        start = time.perf_counter()
        lr = cosine_lr(self.lr, self.lr_min, epoch, self.epochs)
        for group in opt.weight_optimizer.param_groups:
            group["lr"] = lr
        w_loader.set_epoch(epoch)
        a_loader.set_epoch(epoch)
        net.train()
        total_loss, correct, seen = 0.0, 0, 0
        steps = tqdm(zip(w_loader, a_loader, strict=False), total=min(len(w_loader), len(a_loader)),
                     desc=f"epoch {epoch + 1}/{self.epochs}", unit="step", leave=False,
                     disable=not progress)
        ctx = self.distributed
        for step, ((xw, yw), (xa, ya)) in enumerate(steps, 1):
            xw, yw, xa, ya = ctx.shard((xw, yw, xa, ya))  # this rank's rows of the global batch
            train_batch = (xw.to(self.device), yw.to(self.device))
            val_batch = (xa.to(self.device), ya.to(self.device))
            value = opt.step(train_batch, val_batch).item()
            hits = int((stash["logits"].argmax(1) == train_batch[1]).sum())
            if ctx.active:  # every rank logs (and checks) the global batch's figures
                value, hits_sum = ctx.sum_floats(value, hits)
                value, hits = value / ctx.world_size, int(hits_sum)
            check_loss(value, epoch=epoch + 1, step=step, max_loss=self.max_loss)
            total_loss += value * len(yw) * ctx.world_size
            correct += hits
            seen += len(yw) * ctx.world_size
        val_loss, val_acc = evaluate(net, *val_data, device=self.device)
        alphas = net.alphas()
        finite_alphas = all(math.isfinite(v) for cell in alphas.values() for row in cell
                            for v in row)
        if not (math.isfinite(val_loss) and finite_alphas):
            broken = "α" if not finite_alphas else f"the validation loss ({val_loss})"
            raise FloatingPointError(f"{broken} became non-finite at the end of epoch "
                                     f"{epoch + 1}; lower the learning rates or check the data")
        arch = net.derive()
        return {"epoch": epoch + 1, "lr": lr, "train_loss": total_loss / seen,
                "train_accuracy": correct / seen, "val_loss": val_loss, "val_accuracy": val_acc,
                "expected_macs": float(expected_macs(net, self._macs_tables).detach()),
                **self._expected_cost(net), "alphas": alphas, "genotype": self.space.describe(arch),
                "seconds": time.perf_counter() - start}


def _check_distributed(ctx: DistributedContext, batch_size: int) -> None:
    """A data-parallel search needs a global batch that splits evenly over the ranks."""
    if batch_size % ctx.world_size:
        raise ConfigError(f"--batch-size {batch_size} does not split evenly over "
                          f"{ctx.world_size} processes")
