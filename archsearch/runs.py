"""Whole runs, as the CLI performs them: load data, search or train, write a run directory.

Each function validates every input *before* it creates the run directory, so bad input
never leaves a half-written run behind; every result file is written atomically.

Run directory of `search`:  config.json, log.jsonl (one record per epoch: losses,
accuracies, α, genotype), arch.json (the derived cell, with its genotype rendered for
people), supernet.pt (weights and α).
Run directory of `train`:  config.json, log.jsonl, metrics.json (`test_accuracy` is a
fraction in [0, 1]), model.pt (weights + architecture + configuration, one file).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from archsearch._version import __version__
from archsearch.data import Dataset, TensorLoader, load_dataset
from archsearch.errors import ArchError, ArchsearchError, ConfigError
from archsearch.hardware import count_macs, num_params
from archsearch.networks import DartsNetwork
from archsearch.networks.darts import check_network_size
from archsearch.space import Arch, SearchSpace
from archsearch.spaces.darts import NAMED_CELLS, DartsCellSpace
from archsearch.storage import JsonlLog, atomic_write_bytes, atomic_write_json, prepare_run_dir
from archsearch.strategies.darts import DARTS
from archsearch.train import Trainer

# Defaults per dataset. The paper's settings (DARTS §3.1–3.2) are right for CIFAR-sized
# data; on the built-in 8×8 digits a smaller network and fewer epochs reach ≥ 97 % test
# accuracy within minutes on 2 CPU cores.
SEARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "quick": {"epochs": 8, "channels": 8, "layers": 5, "batch_size": 64},
    "paper": {"epochs": 50, "channels": 16, "layers": 8, "batch_size": 64},
}
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "quick": {"epochs": 30, "channels": 16, "layers": 6, "batch_size": 64, "lr": 0.05},
    "paper": {"epochs": 600, "channels": 36, "layers": 20, "batch_size": 96, "lr": 0.025},
}

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


def _meta(command: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    return {"command": command, "archsearch": __version__, "torch": torch.__version__,
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": dict(settings)}


def run_search(settings: Mapping[str, Any], out: Path, *, progress: bool = True,
               overwrite: bool = False, log: Log = print) -> Arch:
    """DARTS on a dataset; writes the search run directory and returns the derived arch."""
    s = dict(settings)
    space = DartsCellSpace(nodes=s["nodes"], ops=s["ops"])
    device = resolve_device(s["device"])
    data = load_dataset(s["dataset"], s["data_dir"], seed=s["seed"])
    strategy = DARTS(space, order=s["order"], hvp=s["hvp"], epochs=s["epochs"],
                     channels=s["channels"], layers=s["layers"], batch_size=s["batch_size"],
                     seed=s["seed"], device=device, cost_weight=s.get("cost_weight", 0.0),
                     **augmentation(data))
    _check_batch(s["batch_size"], len(data.x_train) // 2)
    # A search run may hold the retraining of its cell in retrain/: --overwrite replaces both.
    out = prepare_run_dir(out, overwrite=overwrite, subdirs=("retrain",))
    atomic_write_json(out / "config.json", _meta("search", s))
    log(f"search: {strategy!r} on {data.describe()} -> {out}")
    epoch_log = JsonlLog(out / "log.jsonl")
    result = strategy.search(data.x_train, data.y_train, num_classes=data.num_classes,
                             on_epoch=epoch_log.append, progress=progress)
    genotype = space.describe(result.arch)
    atomic_write_json(out / "arch.json", result.arch.to_json(genotype=genotype))
    supernet = {"state_dict": result.supernet.state_dict(), "alphas": result.alphas}
    atomic_write_bytes(out / "supernet.pt", lambda f: torch.save(supernet, f))
    final = result.history[-1]
    log(f"search done: val accuracy of the supernet {final['val_accuracy']:.4f}\n{genotype}")
    log(f"wrote {out / 'arch.json'}")
    return result.arch


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


def check_train_settings(settings: Mapping[str, Any], *, progress: bool = True) -> Trainer:
    """Everything about a training run that can be checked without its data and arch."""
    check_network_size(settings["channels"], settings["layers"])
    if settings["batch_size"] < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {settings['batch_size']}")
    return Trainer(epochs=settings["epochs"], lr=settings["lr"],
                   drop_path_prob=settings["drop_path"], device=resolve_device(settings["device"]),
                   progress=progress)


def run_train(arch: Arch, settings: Mapping[str, Any], out: Path, *, progress: bool = True,
              overwrite: bool = False, log: Log = print) -> dict[str, Any]:
    """Retrain `arch` from scratch; writes the train run directory and returns the metrics."""
    s = dict(settings)
    trainer = check_train_settings(s, progress=progress)
    data = load_dataset(s["dataset"], s["data_dir"], seed=s["seed"])
    model = build_network(arch, channels=s["channels"], layers=s["layers"],
                          num_classes=data.num_classes, in_channels=data.in_channels,
                          auxiliary=s["auxiliary"], seed=s["seed"])
    _check_aux(model, data)
    _check_batch(s["batch_size"], len(data.x_train))
    cutout = (16 if data.image_size >= 32 else max(1, data.image_size // 2)) if s["cutout"] else 0
    loader = TensorLoader(data.x_train, data.y_train, batch_size=s["batch_size"], seed=s["seed"],
                          cutout_length=cutout, **augmentation(data))
    out = prepare_run_dir(out, overwrite=overwrite)
    atomic_write_json(out / "config.json", _meta("train", {**s, "cutout_length": cutout}))
    log(f"train: {num_params(model):,} parameters on {data.describe()} -> {out}")
    start = time.perf_counter()
    history = trainer.fit(model, loader, on_epoch=JsonlLog(out / "log.jsonl").append)
    test = trainer.evaluate(model, data.x_test, data.y_test)
    metrics = {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
               "train_accuracy": history[-1]["train_accuracy"],
               "train_loss": history[-1]["train_loss"], "epochs": s["epochs"],
               "num_params": num_params(model, exclude_prefixes=("aux_head",)),
               "test_examples": len(data.x_test), "seconds": time.perf_counter() - start}
    checkpoint = {"state_dict": model.state_dict(), "arch": arch.to_json(),
                  "config": s, "metrics": metrics}
    atomic_write_bytes(out / "model.pt", lambda f: torch.save(checkpoint, f))
    atomic_write_json(out / "metrics.json", metrics)
    log(f"test accuracy {metrics['test_accuracy']:.4f} on {len(data.x_test)} test images "
        f"({data.name}); wrote {out / 'metrics.json'}")
    return metrics


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


def _check_batch(batch_size: int, available: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if batch_size > available:
        raise ConfigError(f"--batch-size {batch_size} exceeds the {available} training examples "
                          "available")


def _check_aux(model: torch.nn.Module, data: Dataset) -> None:
    # The auxiliary head needs a feature map of at least 2×2 after two reductions.
    if getattr(model, "aux_head", None) is not None and data.image_size < 8:
        raise ConfigError(f"--auxiliary needs images of at least 8×8, got {data.image_size}")
