"""Training that survives interruption: a checkpoint after every epoch, best weights, resume.

`CheckpointedFit` wraps `Trainer.fit`. After each epoch it writes `checkpoint.pt`
atomically with the weights, the optimiser state, the epoch, the RNG states of torch, numpy
and the loader, the best weights so far and the history; `restore` puts all of that back,
so the resumed run draws the same batches and drop-path masks and ends with the same
numbers as one that never stopped. The best weights are those with the highest validation
accuracy (ties: the lower validation loss, then the earlier epoch); without validation data
the best weights are the last. DARTS retraining (arXiv:1806.09055, §A.2) reports the final
weights; keeping the best by a held-out split as well is common practice and lets the two
be compared on the test set.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from archsearch.data._dataset import stratified_split
from archsearch.errors import ConfigError, DataError
from archsearch.train._checkpoint import (
    check_finite_weights,
    clone_state,
    forked_rng,
    last_good,
    load_module_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from archsearch.train._trainer import Trainer

TRAIN_CHECKPOINT = "archsearch.train-checkpoint/1"
TRAIN_CHECKPOINT_KEYS = ("epoch", "state_dict", "optimizer", "loader", "rng", "history", "best")

EpochCallback = Callable[[Mapping[str, Any]], None]


Split = tuple[Tensor, Tensor]


def hold_out(x: Tensor, y: Tensor, fraction: float, *, seed: int,
             name: str = "data") -> tuple[Split, Split | None]:
    """(training part, validation part or None): a stratified, seeded `fraction` of the
    training split held out to choose the best weights (the test split stays unseen).

    Raises:
        ConfigError: `fraction` outside [0, 1), or too few examples of a class to stratify.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return (x, y), None
    try:
        fit_idx, val_idx, _, _ = stratified_split(name, np.arange(len(y)), y.numpy(),
                                                  seed=seed, test_fraction=fraction)
    except DataError as exc:
        raise ConfigError(f"--val-fraction {fraction}: cannot hold out a stratified "
                          f"validation split of {name} ({str(exc).split(' (')[-1]}") from None
    fit_idx, val_idx = torch.from_numpy(fit_idx), torch.from_numpy(val_idx)
    return (x[fit_idx], y[fit_idx]), (x[val_idx], y[val_idx])


@dataclass
class BestWeights:
    """The best epoch so far; `state_dict` None means "the last weights" (no validation)."""

    epoch: int = 0
    val_accuracy: float | None = None
    val_loss: float | None = None
    state_dict: dict[str, Tensor] | None = None

    def improved_by(self, record: Mapping[str, Any]) -> bool:
        if self.epoch == 0 or self.val_accuracy is None:
            return True
        accuracy, loss = record["val_accuracy"], record["val_loss"]
        return accuracy > self.val_accuracy or (
            accuracy == self.val_accuracy and loss < (self.val_loss or float("inf")))

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "val_accuracy": self.val_accuracy,
                "val_loss": self.val_loss, "state_dict": self.state_dict}


class CheckpointedFit:
    """`trainer.fit(model, loader)` with a checkpoint at `path` after every epoch.

    Args:
        trainer: the recipe (epochs, schedule, regularisation).
        model: the network, freshly initialised (or to be restored).
        loader: training batches (a `TensorLoader`: its state is checkpointed).
        path: where the checkpoint goes (rewritten atomically every epoch).
        seed: seeds the global torch RNG (drop-path masks) for the run; the caller's own
            global RNG state is left as it was.
        val_data: held-out (x, y) scored every epoch to choose the best weights.
        meta: further plain values stored in every checkpoint (arch, settings) so the file
            describes itself.
    """

    def __init__(self, trainer: Trainer, model: nn.Module, loader: Any, *, path: Path,
                 seed: int, val_data: tuple[Tensor, Tensor] | None = None,
                 meta: Mapping[str, Any] | None = None) -> None:
        self.trainer, self.loader, self.path = trainer, loader, Path(path)
        self.model = model.to(trainer.device)
        self.optimizer = trainer.make_optimizer(self.model)
        self.seed, self.val_data, self.meta = int(seed), val_data, dict(meta or {})
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, Any]] = []
        self.best = BestWeights()
        self._rng: Mapping[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.epoch >= self.trainer.epochs

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: everything the remaining epochs depend on."""
        return {"format": TRAIN_CHECKPOINT, "epoch": self.epoch,
                "state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "loader": self.loader.state_dict(), "rng": rng_state(self.trainer.device),
                "history": self.history, "best": self.best.to_json(), **self.meta}

    def restore(self, doc: Mapping[str, Any], *, source: str) -> None:
        """Continue from a checkpoint `doc` (read from `source`, named in errors)."""
        epoch, history, best = doc["epoch"], doc["history"], doc["best"]
        if not isinstance(epoch, int) or not 0 <= epoch <= self.trainer.epochs or \
                not isinstance(history, list) or len(history) != epoch:
            raise ConfigError(f"{source}: checkpoint at epoch {epoch!r} with "
                              f"{len(history) if isinstance(history, list) else '?'} history "
                              f"records does not fit a run of {self.trainer.epochs} epochs")
        load_module_state(self.model, doc["state_dict"], source=source)
        try:
            self.optimizer.load_state_dict(doc["optimizer"])
            self.loader.load_state_dict(doc["loader"])
            self.best = BestWeights(**best)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"{source}: checkpoint does not fit this run "
                              f"({str(exc).strip().splitlines()[0] if str(exc) else exc!r})") \
                from None
        self.epoch, self.history, self._rng = epoch, [dict(r) for r in history], doc["rng"]

    def run(self, on_epoch: EpochCallback | None = None) -> list[dict[str, Any]]:
        """Train the remaining epochs; returns the whole history (earlier sessions too).

        Raises:
            FloatingPointError: the run diverged; the message names the epoch and step and
                where the last good checkpoint is.
        """
        with forked_rng(self.trainer.device):
            torch.manual_seed(self.seed)
            if self._rng is not None:
                set_rng_state(self._rng, self.trainer.device)
            try:
                self.trainer.fit(self.model, self.loader, val_data=self.val_data,
                                 optimizer=self.optimizer, start_epoch=self.epoch,
                                 on_epoch=lambda record: self._epoch_done(record, on_epoch))
            except FloatingPointError as exc:
                raise FloatingPointError(f"{exc}; {self.last_good()}") from None
        return self.history

    def last_good(self) -> str:
        return last_good(self.path, self.epoch)

    def best_state_dict(self) -> dict[str, Tensor]:
        """The best weights (the last ones when there is no validation data)."""
        return self.model.state_dict() if self.best.state_dict is None else self.best.state_dict

    def test_last_and_best(self, x: Tensor, y: Tensor) -> tuple[dict[str, float],
                                                                 dict[str, float]]:
        """Loss and accuracy on (x, y) of the last weights and of the best weights."""
        last = self.trainer.evaluate(self.model, x, y)
        if self.best.state_dict is None:
            return last, last
        best_model = copy.deepcopy(self.model)
        best_model.load_state_dict(self.best.state_dict)
        return last, self.trainer.evaluate(best_model, x, y)

    def _epoch_done(self, record: Mapping[str, Any], on_epoch: EpochCallback | None) -> None:
        epoch = int(record["epoch"])
        check_finite_weights(self.model, epoch=epoch)  # never checkpoint broken weights
        self.history.append(dict(record))
        if self.val_data is None:
            self.best = BestWeights(epoch=epoch)
        elif self.best.improved_by(record):
            self.best = BestWeights(epoch, record["val_accuracy"], record["val_loss"],
                                    clone_state(self.model))
        self.epoch = epoch
        save_checkpoint(self.path, self.state_dict())
        if on_epoch is not None:
            on_epoch(record)
