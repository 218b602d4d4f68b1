"""ProxylessNAS: direct NAS with binarised paths (Cai, Zhu & Han, ICLR 2019, arXiv:1812.00332).

Gradient-based search in which only sampled paths are in memory (§3.2). On the DARTS cell
space: the training data is split in halves as in DARTS; each step updates α on a batch of
the second half with two sampled ops per edge (BinaryConnect-style gradient through the
binary gates, §3.2.1, then the pair's α rescaled so the other ops keep their probabilities),
then the weights on a batch of the first half with one sampled op per edge. The
architecture loss may add the expected cost of §3.3.1 (the expected latency),
λ · E[cost] / E_uniform[cost], from a per-edge table (MACs by default, or any
{"normal", "reduce"} (edges, ops) table such as a latency table); its α-gradient is exact.
After each epoch the current α is discretised with the DARTS rule, so the log shows how
the cell evolves.

Data-parallel under `torchrun` (`archsearch.distributed`), as DARTS: every rank draws the
same global batches and takes its slice. All ranks hold the same α and the same seeded gate
generator, so they draw the same paths without communicating; the weight gradients of the
sampled path and the gate gradients are averaged over the ranks before each update, so α
and the weights stay identical on every rank.
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
from archsearch.spaces.darts import CELL_TYPES, DartsCellSpace
from archsearch.strategies._base import EpochCallback, OneShotStrategy
from archsearch.strategies._one_shot import run_epochs, search_loaders, seeded_supernet
from archsearch.supernet._hypergrad import Averager
from archsearch.supernet.proxyless import (
    Paths,
    ProxylessSupernet,
    default_cost_tables,
    expected_cost,
    expected_cost_grad,
    pair_alpha_grad,
    rescale_pairs,
)
from archsearch.train import cosine_lr, evaluate, foreach_supported

Batch = tuple[Tensor, Tensor]


@dataclass
class ProxylessResult:
    """What a ProxylessNAS search hands over (the fields of `DartsResult`)."""

    arch: Arch
    alphas: dict[str, list[list[float]]]
    history: list[dict[str, Any]] = field(default_factory=list)
    supernet: ProxylessSupernet | None = None


class ProxylessOptimizer:
    """The two updates of ProxylessNAS on a `ProxylessSupernet`.

    Args:
        net: the supernet.
        weight_optimizer: optimiser over the weights (SGD); it sees gradients only for the
            sampled path's weights, so the others are not touched (no decay, no momentum).
        arch_optimizer: optimiser over α (Adam with β1 = 0 and no weight decay in the
            paper's code, so the ops outside a sampled pair get no update at all).
        generator: draws every gate (seeded: same seed, same paths).
        cost_tables: {"normal", "reduce"} → (edges, ops) cost of each op on each edge.
        cost_weight: λ of λ · E[cost] / E_uniform[cost] in the architecture loss.
        grad_clip: max global norm of the weight gradient (None: no clipping).
        average: returns tensors' means over the ranks of a data-parallel run
            (`DistributedContext.mean`; None: one process); the sampled path's weight
            gradients and the gate gradients go through it before they are used.
    """

    def __init__(self, net: ProxylessSupernet, *, weight_optimizer: torch.optim.Optimizer,
                 arch_optimizer: torch.optim.Optimizer, generator: torch.Generator,
                 cost_tables: Mapping[str, Tensor], cost_weight: float = 0.0,
                 grad_clip: float | None = 5.0, average: Averager | None = None) -> None:
        self.net = net
        self.weight_optimizer, self.arch_optimizer = weight_optimizer, arch_optimizer
        self.generator = generator
        self.cost_tables = {c: cost_tables[c].to(torch.float64) for c in CELL_TYPES}
        # Normalising by the cost at uniform α makes λ independent of the network's size.
        self.uniform_cost = sum(float(t.mean(-1).sum()) for t in self.cost_tables.values())
        self.cost_weight = cost_weight if self.uniform_cost > 0 else 0.0
        self.grad_clip = grad_clip
        self.average = average

    def weight_step(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """One SGD step on one sampled path per edge; returns (loss, logits), detached."""
        x, y = batch
        logits = self.net(x, self.net.sample_paths(self.generator))
        loss = F.cross_entropy(logits, y)
        self.weight_optimizer.zero_grad(set_to_none=True)
        loss.backward()  # α is not in this graph: the gates were drawn without it
        if self.average is not None:  # every rank ran the same path: same grads are None
            sampled = [p for p in self.net.weight_parameters() if p.grad is not None]
            for p, g in zip(sampled, self.average([p.grad for p in sampled]), strict=True):
                p.grad = g
        if self.grad_clip is not None:
            params = self.net.weight_parameters()
            nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=foreach_supported(params))
        self.weight_optimizer.step()
        return loss.detach(), logits.detach()

    def arch_gradients(self, batch: Batch) -> tuple[dict[str, Tensor], Paths, Tensor]:
        """(∂L/∂α per cell type, the sampled pairs, the architecture loss) on one batch."""
        x, y = batch
        paths = self.net.sample_pairs(self.generator)
        assert paths.gates is not None
        loss = F.cross_entropy(self.net(x, paths), y)
        gate_grads = torch.autograd.grad(loss, [paths.gates[c] for c in CELL_TYPES])
        if self.average is not None:  # the global batch's ∂L/∂g
            gate_grads = self.average(gate_grads)
        grads = {c: pair_alpha_grad(self.net.alpha(c), paths.ops[c], g)
                 for c, g in zip(CELL_TYPES, gate_grads, strict=True)}
        loss = loss.detach()
        if self.cost_weight:
            scale = self.cost_weight / self.uniform_cost
            for c in CELL_TYPES:  # exact: E[cost] is a function of softmax(α) (§3.3.1)
                alpha = self.net.alpha(c)
                grads[c] += (scale * expected_cost_grad(alpha, self.cost_tables[c])).to(
                    alpha.device, alpha.dtype)
            penalty = scale * expected_cost(self.net, self.cost_tables).detach()
            loss = loss + penalty.to(loss.dtype)
        return grads, paths, loss

    def state_dict(self) -> dict[str, Any]:
        """Both optimisers' states and the gate generator's: with the supernet's own
        `state_dict` everything the next step depends on (same paths, same updates)."""
        return {"weight_optimizer": self.weight_optimizer.state_dict(),
                "arch_optimizer": self.arch_optimizer.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; a state that does not fit is a ConfigError."""
        try:
            self.weight_optimizer.load_state_dict(state["weight_optimizer"])
            self.arch_optimizer.load_state_dict(state["arch_optimizer"])
            self.generator.set_state(state["generator"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"optimiser state does not fit this search ({first})") from None

    def arch_step(self, batch: Batch) -> Tensor:
        """One update of α from two sampled paths per edge; returns the architecture loss."""
        grads, paths, loss = self.arch_gradients(batch)
        before = {c: self.net.alpha(c).detach().clone() for c in CELL_TYPES}
        self.arch_optimizer.zero_grad(set_to_none=True)
        for c in CELL_TYPES:
            self.net.alpha(c).grad = grads[c]
        self.arch_optimizer.step()
        for c in CELL_TYPES:
            rescale_pairs(self.net.alpha(c), before[c], paths.ops[c])
        return loss


class ProxylessNAS(OneShotStrategy):
    """ProxylessNAS search on the DARTS cell space.

    Args:
        space: the cell space (nodes, op set with at least two ops).
        epochs, channels, layers, batch_size: search length and supernet size (as DARTS).
        lr, lr_min, momentum, weight_decay, grad_clip: SGD on the weights, cosine from lr
            to lr_min (DARTS's settings).
        arch_lr, arch_betas, arch_weight_decay: Adam on α; the defaults (1e-3, (0, 0.999),
            0) are the paper's code's. With β1 > 0 or weight decay, ops outside a sampled
            pair also move and the rescaling no longer keeps their probabilities.
        arch_every: one α step every this many weight steps (1, as in DARTS; the paper's
            code uses 5).
        warmup_epochs: epochs that train only the weights before α starts to move (0, as in
            DARTS; the paper's code first trains the weights alone for 40 epochs).
        cost_weight: λ of the expected-cost term λ · E[cost] / E_uniform[cost] (0: none).
        cost_tables: {"normal": (edges, ops), "reduce": (edges, ops)} cost of each op on
            each edge, summed over the cells of that type (the `op_macs_table` format, e.g.
            a latency table); None = the supernet's MACs.
        crop_padding, flip, cutout_length: augmentation of training batches.
        seed: seeds the initialisation, the data order and every sampled path.
        device: where the supernet runs ("cpu", "cuda:0", ...).
        distributed: the ranks of a data-parallel search (None: one process). Each rank
            takes `batch_size / world_size` rows of every batch; gradients are averaged.
    """

    def __init__(self, space: DartsCellSpace, *, epochs: int = 50, channels: int = 16,
                 layers: int = 8, batch_size: int = 64, lr: float = 0.025,
                 lr_min: float = 0.001, momentum: float = 0.9, weight_decay: float = 3e-4,
                 grad_clip: float | None = 5.0, arch_lr: float = 1e-3,
                 arch_betas: tuple[float, float] = (0.0, 0.999),
                 arch_weight_decay: float = 0.0, arch_every: int = 1, warmup_epochs: int = 0,
                 cost_weight: float = 0.0, cost_tables: Mapping[str, Any] | None = None,
                 crop_padding: int = 0, flip: bool = False, cutout_length: int = 0,
                 seed: int = 0, device: str | torch.device = "cpu",
                 distributed: DistributedContext | None = None) -> None:
        _check_settings(space, epochs=epochs, batch_size=batch_size, lr=lr, arch_lr=arch_lr,
                        arch_betas=arch_betas, arch_every=arch_every,
                        warmup_epochs=warmup_epochs, cost_weight=cost_weight,
                        grad_clip=grad_clip)
        check_network_size(channels, layers)
        self.space = space
        self.epochs, self.channels, self.layers = epochs, channels, layers
        self.batch_size = batch_size
        self.lr, self.lr_min, self.momentum = lr, lr_min, momentum
        self.weight_decay, self.grad_clip = weight_decay, grad_clip
        self.arch_lr, self.arch_betas = arch_lr, tuple(arch_betas)
        self.arch_weight_decay = arch_weight_decay
        self.arch_every, self.warmup_epochs = arch_every, warmup_epochs
        self.cost_weight = float(cost_weight)
        self.cost_tables = None if cost_tables is None else _check_tables(space, cost_tables)
        self.augment = {"crop_padding": crop_padding, "flip": flip, "cutout_length": cutout_length}
        self.seed = seed
        self.distributed = distributed or DistributedContext()
        if self.distributed.active and batch_size % self.distributed.world_size:
            raise ConfigError(f"--batch-size {batch_size} does not split evenly over "
                              f"{self.distributed.world_size} processes")
        self.device = self.distributed.device(torch.device(device))

    def extra_repr(self) -> str:
        cost = f", cost_weight={self.cost_weight}" if self.cost_weight else ""
        return (f"epochs={self.epochs}, channels={self.channels}, layers={self.layers}, "
                f"nodes={self.space.nodes}{cost}")

    def build_supernet(self, *, num_classes: int, in_channels: int) -> ProxylessSupernet:
        return seeded_supernet(ProxylessSupernet, self.space, seed=self.seed,
                               channels=self.channels, layers=self.layers,
                               num_classes=num_classes, in_channels=in_channels,
                               device=self.device)

    def build_optimizer(self, net: ProxylessSupernet,
                        cost_tables: Mapping[str, Tensor]) -> ProxylessOptimizer:
        """The optimiser `search` steps with (SGD on w, Adam on α, seeded gate sampling)."""
        weights = net.weight_parameters()
        weight_opt = torch.optim.SGD(weights, lr=self.lr, momentum=self.momentum,
                                     weight_decay=self.weight_decay,
                                     foreach=foreach_supported(weights))
        arch_opt = torch.optim.Adam(net.arch_parameters(), lr=self.arch_lr,
                                    betas=self.arch_betas, weight_decay=self.arch_weight_decay)
        return ProxylessOptimizer(net, weight_optimizer=weight_opt, arch_optimizer=arch_opt,
                                  generator=torch.Generator().manual_seed(self.seed),
                                  cost_tables=cost_tables, cost_weight=self.cost_weight,
                                  grad_clip=self.grad_clip,
                                  average=self.distributed.mean
                                  if self.distributed.active else None)

    def search(self, x_train: Tensor, y_train: Tensor, *, num_classes: int,
               on_epoch: EpochCallback | None = None, progress: bool = True,
               on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
               resume: Mapping[str, Any] | None = None) -> ProxylessResult:
        """Search on `x_train` (N, C, H, W), split in halves for w and α.

        Args:
            x_train, y_train: the training split (the test split is never seen).
            num_classes: K.
            on_epoch: called with each epoch's record (losses, accuracies, α, genotype).
            progress: show progress bars.
            on_checkpoint: called after each epoch, before `on_epoch`, with a checkpoint
                document (`strategies._one_shot`; `torch.save` it).
            resume: such a document: the search continues after its epoch, exactly as the
                uninterrupted search would have.
        """
        loaders, (xa, ya) = search_loaders(x_train, y_train, batch_size=self.batch_size,
                                           seed=self.seed, augment=self.augment)
        net = self.build_supernet(num_classes=num_classes, in_channels=x_train.shape[1])
        self.distributed.broadcast_parameters(net)  # the same seed; this makes sure of it
        progress = progress and self.distributed.is_main
        macs = default_cost_tables(net, x_train.shape[-1])
        optimizer = self.build_optimizer(net, macs if self.cost_tables is None
                                         else self.cost_tables)

        def epoch(i: int) -> dict[str, Any]:
            record = self._epoch(optimizer, (loaders["weights"], loaders["arch"]), (xa, ya),
                                 i, progress)
            return {**record, "expected_macs": float(expected_cost(net, macs).detach())}

        history = run_epochs(epoch, net, optimizer, loaders, epochs=self.epochs,
                             device=self.device, progress=progress, on_epoch=on_epoch,
                             on_checkpoint=on_checkpoint, resume=resume)
        return ProxylessResult(arch=net.derive(), alphas=net.alphas(), history=history,
                               supernet=net)

    def _epoch(self, opt: ProxylessOptimizer, loaders: tuple[TensorLoader, TensorLoader],
               val_data: Batch, epoch: int, progress: bool) -> dict[str, Any]:
        start = time.perf_counter()
        net = opt.net
        lr = cosine_lr(self.lr, self.lr_min, epoch, self.epochs)
        for group in opt.weight_optimizer.param_groups:
            group["lr"] = lr
        for loader in loaders:
            loader.set_epoch(epoch)
        net.train()
        total, correct, seen, arch_total, arch_steps = 0.0, 0, 0, 0.0, 0
        steps = tqdm(zip(*loaders, strict=False), total=min(map(len, loaders)),
                     desc=f"epoch {epoch + 1}/{self.epochs}", unit="step", leave=False,
                     disable=not progress)
        ctx, rows = self.distributed, self.batch_size
        for step, ((xw, yw), (xa, ya)) in enumerate(steps):
            xw, yw, xa, ya = ctx.shard((xw, yw, xa, ya))  # this rank's rows of the global batch
            # Every rank logs (and checks) the global batch's figures, so all stop together.
            if epoch >= self.warmup_epochs and step % self.arch_every == 0:
                arch_loss = opt.arch_step((xa.to(self.device), ya.to(self.device))).item()
                arch_loss = ctx.sum_floats(arch_loss)[0] / ctx.world_size
                _check_finite(arch_loss, "architecture", epoch, step)  # before α is sampled
                arch_total += arch_loss
                arch_steps += 1
            batch = (xw.to(self.device), yw.to(self.device))
            loss, logits = opt.weight_step(batch)
            loss_sum, hits = ctx.sum_floats(loss.item(), int((logits.argmax(1) == batch[1]).sum()))
            loss_value = loss_sum / ctx.world_size
            _check_finite(loss_value, "training", epoch, step)
            total += loss_value * rows
            correct += int(hits)
            seen += rows
        val_loss, val_acc = evaluate(net, *val_data, device=self.device)  # most likely path
        arch = net.derive()
        return {"epoch": epoch + 1, "lr": lr, "train_loss": total / seen,
                "train_accuracy": correct / seen,
                "arch_loss": arch_total / arch_steps if arch_steps else None,
                "arch_steps": arch_steps, "val_loss": val_loss, "val_accuracy": val_acc,
                "expected_cost": float(expected_cost(net, opt.cost_tables).detach()),
                "alphas": net.alphas(), "genotype": self.space.describe(arch),
                "seconds": time.perf_counter() - start}


def _check_finite(loss: float, what: str, epoch: int, step: int) -> None:
    if not math.isfinite(loss):
        raise FloatingPointError(f"{what} loss became {loss} in epoch {epoch + 1}, "
                                 f"step {step + 1}; lower --lr or check the data")


def _check_settings(space: DartsCellSpace, *, epochs: int, batch_size: int, lr: float,
                    arch_lr: float, arch_betas: tuple[float, float], arch_every: int,
                    warmup_epochs: int, cost_weight: float, grad_clip: float | None) -> None:
    if len(space.ops) < 2:
        raise ConfigError("ProxylessNAS samples two ops per edge: the op set needs at least "
                          f"two, got {', '.join(space.ops)}")
    rules = [
        (epochs >= 1, f"--epochs must be at least 1, got {epochs}"),
        (batch_size >= 1, f"--batch-size must be at least 1, got {batch_size}"),
        (lr > 0, f"--lr must be positive, got {lr}"),
        (arch_lr >= 0, f"--arch-lr must be at least 0, got {arch_lr}"),
        (len(arch_betas) == 2 and all(0 <= b < 1 for b in arch_betas),
         f"--arch-betas must be two numbers in [0, 1), got {arch_betas}"),
        (arch_every >= 1, f"--arch-every must be at least 1, got {arch_every}"),
        (0 <= warmup_epochs < epochs,
         f"--warmup-epochs must be in [0, epochs={epochs}), got {warmup_epochs}"),
        (math.isfinite(cost_weight) and cost_weight >= 0,
         f"--cost-weight must be at least 0, got {cost_weight}"),
        (grad_clip is None or grad_clip > 0, f"--grad-clip must be positive, got {grad_clip}"),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)


def _check_tables(space: DartsCellSpace, tables: Mapping[str, Any]) -> dict[str, Tensor]:
    """The cost tables as float64 tensors, after checking their keys, shapes and values."""
    if set(tables) != set(CELL_TYPES):
        raise ConfigError(f"cost tables need exactly the keys {', '.join(CELL_TYPES)}, "
                          f"got {', '.join(map(str, tables)) or 'none'}")
    shape = (space.num_edges, len(space.ops))
    out = {}
    for c in CELL_TYPES:
        try:
            table = torch.as_tensor(tables[c], dtype=torch.float64).cpu()
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"cost table {c!r} is not a table of numbers ({exc})") from None
        if tuple(table.shape) != shape:
            raise ConfigError(f"cost table {c!r} has shape {tuple(table.shape)}, expected "
                              f"{shape} (edges, ops)")
        if not torch.isfinite(table).all() or (table < 0).any():
            raise ConfigError(f"cost table {c!r} must hold finite costs ≥ 0")
        out[c] = table
    return out
