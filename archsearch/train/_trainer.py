"""Trainer: retrains a discrete network from scratch (DARTS retraining recipe, §3.2, §A.2).

SGD with momentum and a cosine learning-rate schedule, gradient clipping, an optional
auxiliary-head loss (weight 0.4 in the paper), drop-path whose rate rises linearly over the
epochs, and optional label smoothing. `fit` can start at a later epoch with a restored
optimiser (resuming from a checkpoint), scores a validation split after every epoch when
given one, and stops a diverging run naming the epoch and step. Readable research code on
any device; no framework.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from archsearch.errors import ConfigError
from archsearch.train._checkpoint import MAX_LOSS, check_loss
from archsearch.train._evaluate import cosine_lr, evaluate, foreach_supported

EpochCallback = Callable[[Mapping[str, Any]], None]


class Trainer:
    """Trains a classifier on batches from a loader.

    Args:
        epochs: passes over the training data.
        lr, lr_min: cosine schedule from `lr` (first epoch) to `lr_min` (after the last).
        momentum, weight_decay: SGD settings.
        grad_clip: max global gradient norm (None: no clipping).
        auxiliary_weight: weight of the auxiliary head's loss, used when the model returns
            auxiliary logits from `forward_with_aux`.
        drop_path_prob: final drop-path rate; epoch e uses `drop_path_prob · e / epochs` on
            models with a `drop_path_prob` attribute.
        label_smoothing: cross-entropy label smoothing.
        max_loss: a training loss above this stops the run like a NaN does (None: only
            non-finite losses stop it).
        device: where to train.
        progress: show progress bars.
    """

    def __init__(self, *, epochs: int = 20, lr: float = 0.025, lr_min: float = 0.0,
                 momentum: float = 0.9, weight_decay: float = 3e-4, grad_clip: float | None = 5.0,
                 auxiliary_weight: float = 0.4, drop_path_prob: float = 0.0,
                 label_smoothing: float = 0.0, max_loss: float | None = MAX_LOSS,
                 device: str | torch.device = "cpu", progress: bool = True) -> None:
        if epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {epochs}")
        if not lr > 0:
            raise ConfigError(f"--lr must be positive, got {lr}")
        if not weight_decay >= 0 or not momentum >= 0:
            raise ConfigError(f"--weight-decay and momentum must be at least 0, got "
                              f"{weight_decay} and {momentum}")
        if grad_clip is not None and not grad_clip > 0:
            raise ConfigError(f"--grad-clip must be positive (or off), got {grad_clip}")
        if not auxiliary_weight >= 0:
            raise ConfigError(f"auxiliary weight must be at least 0, got {auxiliary_weight}")
        if not 0.0 <= drop_path_prob < 1.0:
            raise ConfigError(f"--drop-path must be in [0, 1), got {drop_path_prob}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label smoothing must be in [0, 1), got {label_smoothing}")
        self.epochs, self.lr, self.lr_min = epochs, lr, lr_min
        self.momentum, self.weight_decay, self.grad_clip = momentum, weight_decay, grad_clip
        self.auxiliary_weight, self.drop_path_prob = auxiliary_weight, drop_path_prob
        self.label_smoothing, self.max_loss = label_smoothing, max_loss
        self.device = torch.device(device)
        self.progress = progress

    def __repr__(self) -> str:
        return (f"Trainer(epochs={self.epochs}, lr={self.lr}, drop_path_prob="
                f"{self.drop_path_prob}, device={str(self.device)!r})")

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The SGD optimiser `fit` uses (make it yourself to restore its state first)."""
        params = list(model.parameters())
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                               weight_decay=self.weight_decay, foreach=foreach_supported(params))

    def fit(self, model: nn.Module, loader: Any, *, on_epoch: EpochCallback | None = None,
            val_data: tuple[Tensor, Tensor] | None = None,
            optimizer: torch.optim.Optimizer | None = None,
            start_epoch: int = 0) -> list[dict[str, Any]]:
        """Train `model` in place on `loader` (an iterable of (x, y) with `set_epoch`).

        Args:
            model: the network; moved to the trainer's device.
            loader: batches of the training data.
            on_epoch: called with each epoch's record once the epoch is done.
            val_data: (x, y) scored after every epoch (`val_loss`, `val_accuracy`).
            optimizer: from `make_optimizer`, e.g. with a checkpoint's state loaded.
            start_epoch: the first epoch to run (0-based), to continue an interrupted run;
                the learning rate and drop-path rate follow the epoch, as uninterrupted.

        Returns:
            The records of the epochs run.

        Raises:
            FloatingPointError: the loss became NaN, infinite or above `max_loss`; the
                message names the epoch and step.
        """
        model.to(self.device)
        optimizer = self.make_optimizer(model) if optimizer is None else optimizer
        history = []
        epochs = tqdm(range(start_epoch, self.epochs), desc="train", unit="epoch",
                      initial=start_epoch, total=self.epochs, disable=not self.progress)
        for epoch in epochs:
            record = self._epoch(model, optimizer, loader, epoch)
            if val_data is not None:
                val = self.evaluate(model, *val_data)
                record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            history.append(record)
            epochs.set_postfix(loss=f"{record['train_loss']:.3f}",
                               acc=f"{record['train_accuracy']:.3f}")
            if on_epoch is not None:
                on_epoch(record)
        return history

    def _epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: Any,
               epoch: int) -> dict[str, Any]:
        start = time.perf_counter()
        lr = cosine_lr(self.lr, self.lr_min, epoch, self.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if hasattr(model, "drop_path_prob"):
            model.drop_path_prob = self.drop_path_prob * epoch / self.epochs
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        # iter() once, here: tqdm.auto calls iter() on what it wraps in its constructor and
        # again when iterated, which would make a TensorLoader skip an epoch's order.
        batches = tqdm(iter(loader), total=len(loader) if hasattr(loader, "__len__") else None,
                       desc=f"epoch {epoch + 1}/{self.epochs}", unit="batch", leave=False,
                       disable=not self.progress)
        for step, (x, y) in enumerate(batches, 1):
            x, y = x.to(self.device), y.to(self.device)
            logits, loss = self._loss(model, x, y)
            value = loss.item()
            check_loss(value, epoch=epoch + 1, step=step, max_loss=self.max_loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip is not None:
                params = list(model.parameters())
                nn.utils.clip_grad_norm_(params, self.grad_clip,
                                         foreach=foreach_supported(params))
            optimizer.step()
            total_loss += value * len(y)
            correct += int((logits.detach().argmax(1) == y).sum())
            seen += len(y)
        return {"epoch": epoch + 1, "lr": lr, "train_loss": total_loss / seen,
                "train_accuracy": correct / seen, "seconds": time.perf_counter() - start}

    def _loss(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if hasattr(model, "forward_with_aux"):
            logits, aux = model.forward_with_aux(x)
        else:
            logits, aux = model(x), None
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        if aux is not None:
            loss = loss + self.auxiliary_weight * F.cross_entropy(
                aux, y, label_smoothing=self.label_smoothing)
        return logits, loss

    def evaluate(self, model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
        """Loss and accuracy (a fraction) of `model` on (x, y), in eval mode."""
        loss, accuracy = evaluate(model, x, y, device=self.device)
        return {"loss": loss, "accuracy": accuracy}
