"""What the one-shot searches (DARTS, ProxylessNAS) share: the data halves and their loaders
(§3.1 of DARTS: half of the training split trains w, the other half α), and checkpoints.

A checkpoint document holds the supernet's `state_dict` (weights and α), the optimisers'
state (as the strategy's optimiser object gives it: momentum buffers, Adam moments, and for
ProxylessNAS the gate generator), the loaders' positions and shuffling generators, the global
RNG states and the epoch history. Restoring all of it into a freshly built search continues
the exact sequence of updates an uninterrupted search would have made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from archsearch.data import TensorLoader, split_in_half
from archsearch.errors import ArchsearchError, ConfigError
from archsearch.train import rng_state, set_rng_state
from archsearch.train._checkpoint import load_module_state

SEARCH_CHECKPOINT = "archsearch.search-checkpoint/1"
SEARCH_CHECKPOINT_KEYS = ("epoch", "supernet", "optimizers", "loaders", "rng", "history")


def search_loaders(x_train: Tensor, y_train: Tensor, *, batch_size: int, seed: int,
                   augment: Mapping[str, Any]) -> tuple[dict[str, TensorLoader],
                                                        tuple[Tensor, Tensor]]:
    """({"weights": loader of the w-half, "arch": loader of the α-half}, the α-half itself,
    which is also the validation data of the epoch records). Both loaders drop the last
    partial batch, so every step sees `batch_size` rows (a data-parallel search splits them).

    Raises:
        ConfigError: a batch is larger than a half.
    """
    (xw, yw), (xa, ya) = split_in_half(x_train, y_train, seed=seed)
    if min(len(xw), len(xa)) < batch_size:
        raise ConfigError(f"--batch-size {batch_size} is larger than each half of the "
                          f"training data ({min(len(xw), len(xa))} examples)")
    loaders = {"weights": TensorLoader(xw, yw, batch_size=batch_size, seed=seed,
                                       drop_last=True, **augment),
               "arch": TensorLoader(xa, ya, batch_size=batch_size, seed=seed + 10_000,
                                    drop_last=True, **augment)}
    return loaders, (xa, ya)


def seeded_supernet(supernet_class: Callable[..., nn.Module], space: Any, *, seed: int,
                    channels: int, layers: int, num_classes: int, in_channels: int,
                    device: torch.device) -> Any:
    """`supernet_class(space, ...)` initialised from `seed` alone (the global RNG is left as
    it was), on `device`: the same seed gives the same weights and α in every process."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = supernet_class(space, channels=channels, layers=layers, num_classes=num_classes,
                             in_channels=in_channels)
    return net.to(device)


def search_checkpoint(net: nn.Module, optimizer_state: Mapping[str, Any],
                      loaders: Mapping[str, TensorLoader], history: list[dict[str, Any]],
                      device: torch.device) -> dict[str, Any]:
    """The document of a search after `len(history)` epochs (tensors and plain values)."""
    return {"format": SEARCH_CHECKPOINT, "epoch": len(history),
            "supernet": net.state_dict(),  # w and α (registered parameters)
            "optimizers": dict(optimizer_state),
            "loaders": {name: loader.state_dict() for name, loader in loaders.items()},
            "rng": rng_state(device), "history": list(history)}


def restore_search(doc: Mapping[str, Any], net: nn.Module,
                   load_optimizer: Callable[[Mapping[str, Any]], None],
                   loaders: Mapping[str, TensorLoader], *, epochs: int,
                   device: torch.device) -> list[dict[str, Any]]:
    """Load a `search_checkpoint` document into a freshly built search; returns its history.

    Raises:
        ConfigError: the document does not fit a search of `epochs` epochs, this supernet,
            these optimisers or loaders (one line).
    """
    history = doc["history"]
    if not isinstance(history, list) or doc["epoch"] != len(history) or len(history) > epochs:
        raise ConfigError(f"checkpoint at epoch {doc['epoch']!r} does not fit a search of "
                          f"{epochs} epochs")
    load_module_state(net, doc["supernet"], source="checkpoint")
    load_optimizer(doc["optimizers"])
    try:
        for name, loader in loaders.items():
            loader.load_state_dict(doc["loaders"][name])
    except (KeyError, TypeError, ArchsearchError) as exc:
        raise ConfigError(f"checkpoint holds no usable loader state ({exc})") from None
    set_rng_state(doc["rng"], device)
    return [dict(record) for record in history]


class _Resumable(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def run_epochs(epoch: Callable[[int], dict[str, Any]], net: nn.Module, optimizer: _Resumable,
               loaders: Mapping[str, TensorLoader], *, epochs: int, device: torch.device,
               progress: bool,
               on_epoch: Callable[[dict[str, Any]], None] | None = None,
               on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
               resume: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The epochs of a one-shot search: `epoch(i)` returns epoch i's record. After each
    epoch the checkpoint goes to `on_checkpoint`, then the record to `on_epoch`; with
    `resume` (a checkpoint document) the search continues after its epoch. Returns the
    history of records."""
    history: list[dict[str, Any]] = []
    if resume is not None:
        history = restore_search(resume, net, optimizer.load_state_dict, loaders,
                                 epochs=epochs, device=device)
    bar = tqdm(range(len(history), epochs), desc="search", unit="epoch",
               initial=len(history), total=epochs, disable=not progress)
    for i in bar:
        record = epoch(i)
        history.append(record)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}",
                        val_acc=f"{record['val_accuracy']:.3f}")
        if on_checkpoint is not None:
            on_checkpoint(search_checkpoint(net, optimizer.state_dict(), loaders, history,
                                            device))
        if on_epoch is not None:
            on_epoch(record)
    return history
