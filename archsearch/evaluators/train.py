"""TrainEvaluator: score an architecture by training it from scratch for a few epochs.

The classic multi-trial NAS evaluation (as in Zoph & Le 2017, arXiv:1611.01578, and
Real et al. 2019, arXiv:1802.01548, with a much shorter schedule): build the discrete network
of the arch, train it with `archsearch.train.Trainer` (SGD, cosine schedule, gradient
clipping) and report its accuracy on a held-out validation split.

Every trial is reproducible on its own: its torch seed is derived from the evaluator's
`seed` and the arch's fingerprint, so the same arch gets the same metrics whatever was
evaluated before it, and the global RNG state is left untouched.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

from archsearch.data import TensorLoader
from archsearch.errors import ConfigError
from archsearch.evaluators._base import TrialFailed
from archsearch.hardware import count_macs, num_params
from archsearch.space import Arch, SearchSpace
from archsearch.train import Trainer

# Heads that run only in training (DARTS' auxiliary head) are not part of the network whose
# size is reported, as in `archsearch train`.
TRAINING_ONLY_PREFIXES = ("aux_head",)


def trial_seed(seed: int, arch: Arch) -> int:
    """A torch seed for one trial: a hash of `seed` and the arch's fingerprint (< 2**62)."""
    digest = hashlib.sha256(f"{int(seed)}|{arch.fingerprint()}".encode()).digest()
    # 62 bits: TensorLoader adds the epoch to its seed, which must stay below 2**64.
    return int.from_bytes(digest[:8], "big") >> 2


def forked_rng(device: torch.device) -> AbstractContextManager[Any]:
    """Fork the CPU RNG (and the RNG of `device` if it is an accelerator): restored on exit."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    index = torch.empty(0, device=device).device.index or 0  # resolve "cuda" to "cuda:N"
    return torch.random.fork_rng(devices=[index], device_type=device.type)


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, shortened to `limit` characters."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def probe_macs(model: nn.Module, input_shape: torch.Size, device: torch.device) -> int:
    """MACs for one input; a forward pass that fails on this shape fails the trial."""
    try:
        return count_macs(model, tuple(input_shape), device=device)
    except RuntimeError as exc:
        raise TrialFailed(f"the network cannot run on inputs of shape "
                          f"{tuple(input_shape)}: {one_line(exc)}") from None


def check_split(what: str, x: Tensor, y: Tensor, num_classes: int) -> None:
    """Images (N, C, H, W) and N integer labels in [0, num_classes); else ConfigError."""
    if x.dim() != 4:
        raise ConfigError(f"{what}: x must be images (N, C, H, W), got shape {tuple(x.shape)}")
    if y.dim() != 1 or len(y) != len(x) or len(x) == 0:
        raise ConfigError(f"{what}: need N > 0 images and N labels, got x {tuple(x.shape)} "
                          f"and y {tuple(y.shape)}")
    if y.dtype.is_floating_point or int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ConfigError(f"{what}: labels must be integers in [0, {num_classes})")


class _TrialTrainer(Trainer):
    """A Trainer that remembers the epoch, step and loss it is at, so that a diverged trial
    can say where it diverged (the Trainer itself reports only the epoch)."""

    at_epoch = 0
    at_step = 0
    last_loss: Tensor | None = None

    def _epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: Any,
               epoch: int) -> dict[str, Any]:
        self.at_epoch, self.at_step = epoch + 1, 0
        return super()._epoch(model, optimizer, loader, epoch)

    def _loss(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        self.at_step += 1
        logits, loss = super()._loss(model, x, y)
        self.last_loss = loss.detach()  # read (.item()) only when the step fails
        return logits, loss

    def failure(self) -> TrialFailed:
        value = math.nan if self.last_loss is None else float(self.last_loss)
        shown = "NaN" if math.isnan(value) else str(value)
        return TrialFailed(f"loss became {shown} at epoch {self.at_epoch} step {self.at_step}")


class TrainEvaluator:
    """Train each architecture from scratch and report its validation accuracy.

    The network is `space.build(arch, num_classes=num_classes, in_channels=C,
    **build_kwargs)`; a builder space's function must therefore accept `num_classes` and
    `in_channels`.

    Args:
        space: the search space whose archs are evaluated.
        x_train, y_train: training images (N, C, H, W) and labels (N,).
        x_val, y_val: validation images and labels (accuracy on them is the score).
        num_classes: number of classes K; labels lie in [0, K).
        epochs: training epochs per trial.
        batch_size: training batch size.
        lr: initial learning rate of the cosine schedule (SGD, momentum 0.9).
        weight_decay: SGD weight decay.
        device: where to train.
        seed: base seed; each trial's seed is derived from it and the arch.
        build_kwargs: further keyword arguments for `space.build` (e.g. channels, layers).
        progress: show the Trainer's progress bars.

    Raises:
        ConfigError: the data or the training settings are unusable.
    """

    def __init__(self, space: SearchSpace, *, x_train: Tensor, y_train: Tensor, x_val: Tensor,
                 y_val: Tensor, num_classes: int, epochs: int = 5, batch_size: int = 64,
                 lr: float = 0.05, weight_decay: float = 3e-4, device: str | torch.device = "cpu",
                 seed: int = 0, build_kwargs: Mapping[str, Any] | None = None,
                 progress: bool = False) -> None:
        if num_classes < 2:
            raise ConfigError(f"need at least 2 classes, got {num_classes}")
        check_split("training data", x_train, y_train, num_classes)
        check_split("validation data", x_val, y_val, num_classes)
        if x_val.shape[1:] != x_train.shape[1:]:
            raise ConfigError(f"validation images are {tuple(x_val.shape[1:])} but training "
                              f"images are {tuple(x_train.shape[1:])} (C, H, W)")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.space = space
        self.x_train, self.y_train, self.x_val, self.y_val = x_train, y_train, x_val, y_val
        self.num_classes, self.batch_size, self.seed = num_classes, batch_size, int(seed)
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.device = torch.device(device)
        self.build_kwargs = dict(build_kwargs or {})
        self.progress = progress
        self._new_trainer()  # checks the training settings now, not at the first trial

    def __repr__(self) -> str:
        return (f"TrainEvaluator(space={self.space.name!r}, epochs={self.epochs}, "
                f"lr={self.lr}, batch_size={self.batch_size}, device={str(self.device)!r})")

    def _new_trainer(self) -> _TrialTrainer:
        return _TrialTrainer(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                             device=self.device, progress=self.progress)

    def metric_names(self) -> tuple[str, ...]:
        """The keys of the metrics every call returns."""
        return ("val_acc", "val_loss", "train_loss", "num_params", "macs", "train_seconds",
                "epochs")

    def __call__(self, arch: Arch) -> dict[str, float]:
        """Train `arch` from scratch and score it on the validation split.

        Returns:
            `val_acc` (a fraction in [0, 1]), `val_loss` (mean cross-entropy), `train_loss`
            (mean over the last epoch), `num_params` (without training-only heads), `macs`
            (one input), `train_seconds` and `epochs`.

        Raises:
            TrialFailed: the loss became NaN or infinite, or the network cannot run on the
                input shape.
        """
        seed = trial_seed(self.seed, arch)
        with forked_rng(self.device):
            torch.manual_seed(seed)  # the weights' init and any dropout / drop-path draws
            model = self.space.build(arch, num_classes=self.num_classes,
                                     in_channels=self.x_train.shape[1], **self.build_kwargs)
            model.to(self.device)
            macs = probe_macs(model, self.x_train.shape[1:], self.device)
            loader = TensorLoader(self.x_train, self.y_train, batch_size=self.batch_size,
                                  seed=seed)
            trainer = self._new_trainer()
            start = time.perf_counter()
            try:
                history = trainer.fit(model, loader)
            except FloatingPointError:
                raise trainer.failure() from None
            seconds = time.perf_counter() - start
            val = trainer.evaluate(model, self.x_val, self.y_val)
        if not math.isfinite(val["loss"]):
            # The last update can break the weights without a training loss to show it.
            raise TrialFailed(f"validation loss became {val['loss']} after epoch {self.epochs}")
        return {"val_acc": val["accuracy"], "val_loss": val["loss"],
                "train_loss": history[-1]["train_loss"],
                "num_params": num_params(model, exclude_prefixes=TRAINING_ONLY_PREFIXES),
                "macs": macs, "train_seconds": seconds, "epochs": self.epochs}
