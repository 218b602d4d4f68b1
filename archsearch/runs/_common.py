"""What the run functions share: defaults per dataset, devices, architectures and their
spaces, networks, and opening a run directory (validated first, written atomically)."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from archsearch._version import __version__
from archsearch.data import Dataset
from archsearch.errors import ArchError, ArchsearchError, ConfigError
from archsearch.hardware import count_macs, num_params
from archsearch.networks import DartsNetwork
from archsearch.space import Arch, SearchSpace
from archsearch.spaces.darts import NAMED_CELLS, DartsCellSpace
from archsearch.storage import atomic_write_json, prepare_run_dir
from archsearch.train import (
    CHECKPOINT_NAME,
    TRAIN_RECIPES,
    load_checkpoint,
    remove_stale_temporaries,
)

# Defaults per dataset. The paper's settings (DARTS §3.1–3.2) are right for CIFAR-sized
# data; on the built-in 8×8 digits a smaller network and fewer epochs reach ≥ 97 % test
# accuracy within minutes on 2 CPU cores. Training defaults are the recipes of
# `archsearch.train.recipes` (quick on digits, the paper's elsewhere).
SEARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "quick": {"epochs": 8, "channels": 8, "layers": 5, "batch_size": 64},
    "paper": {"epochs": 50, "channels": 16, "layers": 8, "batch_size": 64},
}
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = TRAIN_RECIPES
SEARCH_KEYS = ("dataset", "data_dir", "seed", "device", "nodes", "ops", "order", "hvp",
               "epochs", "channels", "layers", "batch_size")
VAL_FRACTION = 0.1  # of the training split, held out to choose the best retrained weights

Log = Callable[[str], None]


def defaults_for(dataset: str, table: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    return dict(table["quick" if dataset == "digits" else "paper"])


def resolve_device(name: str) -> torch.device:
    """A torch device from a string; a device that is not present is a ConfigError."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r} is not a device (try 'cpu' or 'cuda:0')") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available on this machine")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name}: unsupported device type {device.type!r} "
                          "(use cpu, cuda[:N] or mps)")
    return device


def augmentation(dataset: Dataset) -> dict[str, Any]:
    """Standard crop (and, for CIFAR-10, flip) on images of 32 pixels or more; none below."""
    big = dataset.image_size >= 32
    return {"crop_padding": 4 if big else 0, "flip": dataset.name == "cifar10"}


def resolve_arch(ref: str) -> Arch:
    """ARCH on the command line: a named cell, an arch JSON file, or a run directory."""
    path = Path(ref)
    if ref in NAMED_CELLS and not path.exists():
        return DartsCellSpace().named(ref)
    if path.is_dir():
        found = [path / n for n in ("arch.json", "best_arch.json") if (path / n).exists()]
        if not found:
            raise ArchError(f"{ref} is a directory without arch.json or best_arch.json")
        path = found[0]
    elif not path.exists():
        raise ArchError(f"{ref!r} is neither a named cell ({', '.join(NAMED_CELLS)}) "
                        "nor an existing architecture file")
    arch = Arch.load(path)
    space_of(arch, source=str(path))
    return arch


def space_of(arch: Arch, *, source: str = "architecture") -> SearchSpace:
    """The registered space an Arch was made in, rebuilt from its space_args and checked."""
    if arch.space == "darts":
        return DartsCellSpace.for_arch(arch, source=source)
    from archsearch.spaces import SPACES

    if arch.space not in SPACES:
        raise ArchError(f"{source}: unknown space {arch.space!r} (known: "
                        f"{', '.join(SPACES.names())})")
    try:
        space = SPACES.get(arch.space)(**arch.space_args)
    except (ArchsearchError, TypeError, ValueError) as exc:
        raise ArchError(f"{source}: its space_args do not make a {arch.space!r} space "
                        f"({exc})") from None
    space.validate(arch, source=source)
    return space


def run_meta(command: str, settings: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The config.json document of a run: the command, versions, start time, settings."""
    return {"command": command, "archsearch": __version__, "torch": torch.__version__,
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": dict(settings),
            **extra}


def open_run(out: Path, command: str, settings: Mapping[str, Any], *, resume: bool,
              overwrite: bool, subdirs: tuple[str, ...] = (), **extra: Any) -> Path:
    """A fresh run directory with its config.json, or (resume) the existing one, tidied."""
    if resume:
        remove_stale_temporaries(out)  # a kill during an atomic write leaves its temp file
        return out
    out = prepare_run_dir(out, overwrite=overwrite, subdirs=subdirs)
    atomic_write_json(out / "config.json", run_meta(command, settings, **extra))
    return out


def read_run_checkpoint(out: Path, kind: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
    path = out / CHECKPOINT_NAME
    return load_checkpoint(path, kind=kind, keys=keys) if path.exists() else None


def resuming(resume: bool, epochs_done: int) -> str:
    if not resume:
        return ""
    return f" (resuming after epoch {epochs_done})" if epochs_done else \
        " (resuming: no epoch was checkpointed, starting from the first)"


def build_network(arch: Arch, *, channels: int, layers: int, num_classes: int,
                  in_channels: int = 3, auxiliary: bool = False, imagenet: bool = False,
                  seed: int = 0) -> torch.nn.Module:
    """The discrete network of `arch`, initialised from `seed`.

    DARTS cells become a `DartsNetwork` of `channels` and `layers`; an arch of another space
    is built by that space (`channels`, `layers`, `auxiliary` and `imagenet` apply to DARTS
    only; the trial-network defaults of multi-trial search are used).
    """
    space = space_of(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(space, DartsCellSpace):
            return DartsNetwork(space.to_genotype(arch), channels=channels, layers=layers,
                                num_classes=num_classes, in_channels=in_channels,
                                auxiliary=auxiliary, imagenet=imagenet)
        from archsearch.multitrial import BUILD_DEFAULTS

        return space.build(arch, num_classes=num_classes, in_channels=in_channels,
                           **BUILD_DEFAULTS.get(space.name, {}))


def profile(arch: Arch, *, channels: int, layers: int, num_classes: int, imagenet: bool,
            auxiliary: bool, in_channels: int = 3, image_size: int | None = None) -> dict[str, Any]:
    """Parameters (with and without the auxiliary head) and MACs of the discrete network."""
    size = image_size or (224 if imagenet else 32)
    model = build_network(arch, channels=channels, layers=layers, num_classes=num_classes,
                          in_channels=in_channels, auxiliary=auxiliary, imagenet=imagenet)
    return {"num_params": num_params(model),
            "num_params_no_aux": num_params(model, exclude_prefixes=("aux_head",)),
            "macs": count_macs(model, (in_channels, size, size)),
            "input_shape": [1, in_channels, size, size]}


def check_batch(batch_size: int, available: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if batch_size > available:
        raise ConfigError(f"--batch-size {batch_size} exceeds the {available} training examples "
                          "available")


