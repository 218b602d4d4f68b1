"""Whole runs, as the CLI performs them: load data, search or train, write a run directory.

Each function validates every input *before* it creates the run directory, so bad input
never leaves a half-written run behind; every result file is written atomically, and a
checkpoint after every epoch lets `--resume` continue a run that was killed (Ctrl-C,
`kill -9`, a crash) to exactly the numbers an uninterrupted run gives.

Run directory of `search`:  config.json, log.jsonl (one record per epoch: losses,
accuracies, α, genotype), checkpoint.pt (the state after the last completed epoch),
supernet.pt (weights and α), arch.json (the derived cell, with its genotype rendered for
people; written last: it marks a finished search).
Run directory of `train`:  config.json (with the architecture), log.jsonl, checkpoint.pt,
metrics.json (`test_accuracy` is a fraction in [0, 1]), model.pt (last and best weights +
architecture + configuration, one file: `archsearch.train.model_file`; written last: it
marks a finished run).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from archsearch._version import __version__
from archsearch.data import Dataset, TensorLoader, load_dataset
from archsearch.distributed import (
    DistributedContext,
    check_one_shot_run,
    check_single_process,
)
from archsearch.errors import ArchError, ArchsearchError, ConfigError
from archsearch.hardware import count_macs, num_params
from archsearch.networks import DartsNetwork
from archsearch.networks.darts import check_network_size
from archsearch.space import Arch, SearchSpace
from archsearch.spaces.darts import NAMED_CELLS, DartsCellSpace
from archsearch.storage import atomic_write_bytes, atomic_write_json, prepare_run_dir
from archsearch.strategies._search_checkpoint import SEARCH_CHECKPOINT, SEARCH_CHECKPOINT_KEYS
from archsearch.strategies.darts import DARTS
from archsearch.strategies.proxyless import ProxylessNAS
from archsearch.train import (
    CHECKPOINT_NAME,
    TRAIN_CHECKPOINT,
    TRAIN_RECIPES,
    CheckpointedFit,
    Trainer,
    last_good,
    load_checkpoint,
    read_run_config,
    remove_stale_temporaries,
    resolve_recipe,
    restart_log,
    save_checkpoint,
)
from archsearch.train._resumable import TRAIN_CHECKPOINT_KEYS, hold_out
from archsearch.train.model_file import model_document, save_model_file

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


def _meta(command: str, settings: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {"command": command, "archsearch": __version__, "torch": torch.__version__,
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": dict(settings),
            **extra}


def _open_run(out: Path, command: str, settings: Mapping[str, Any], *, resume: bool,
              overwrite: bool, subdirs: tuple[str, ...] = (), **extra: Any) -> Path:
    """A fresh run directory with its config.json, or (resume) the existing one, tidied."""
    if resume:
        remove_stale_temporaries(out)  # a kill during an atomic write leaves its temp file
        return out
    out = prepare_run_dir(out, overwrite=overwrite, subdirs=subdirs)
    atomic_write_json(out / "config.json", _meta(command, settings, **extra))
    return out


def _read_checkpoint(out: Path, kind: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
    path = out / CHECKPOINT_NAME
    return load_checkpoint(path, kind=kind, keys=keys) if path.exists() else None


def _resuming(resume: bool, epochs_done: int) -> str:
    if not resume:
        return ""
    return f" (resuming after epoch {epochs_done})" if epochs_done else \
        " (resuming: no epoch was checkpointed, starting from the first)"


def run_search(settings: Mapping[str, Any], out: Path, *, progress: bool = True,
               overwrite: bool = False, resume: bool = False, log: Log = print) -> Arch:
    """DARTS on a dataset; writes the search run directory and returns the derived arch.

    With `resume`, `out` is an interrupted search of these settings: it continues after
    the last checkpointed epoch (from scratch if there is none yet).

    Under torchrun (WORLD_SIZE > 1) every rank runs the same data-parallel search
    (`archsearch.distributed`), and only rank 0 writes the run directory.
    """
    s = dict(settings)
    device = resolve_device(s["device"])
    ctx = DistributedContext.from_env(device)
    try:
        check_one_shot_run(ctx, s, resume=resume)
        return _run_search(s, out, ctx, device, progress=progress, overwrite=overwrite,
                           resume=resume, log=log)
    finally:
        ctx.close()  # a barrier: no rank leaves before rank 0 has written everything


def _run_search(s: dict[str, Any], out: Path, ctx: DistributedContext, device: torch.device,
                *, progress: bool, overwrite: bool, resume: bool, log: Log) -> Arch:
    space = DartsCellSpace(nodes=s["nodes"], ops=s["ops"])
    data = load_dataset(s["dataset"], s["data_dir"], seed=s["seed"])
    strategy = one_shot_strategy(s, space, device, augmentation(data), distributed=ctx)
    _check_batch(s["batch_size"], len(data.x_train) // 2)
    state = _read_checkpoint(out, SEARCH_CHECKPOINT, SEARCH_CHECKPOINT_KEYS) if resume else None
    # A search run may hold the retraining of its cell in retrain/: --overwrite replaces both.
    opened = ctx.on_main(lambda: _open_run(out, "search", s, resume=resume, overwrite=overwrite,
                                           subdirs=("retrain",)), what=f"create {out}")
    if not ctx.is_main:  # the same search, writing nothing
        return strategy.search(data.x_train, data.y_train, num_classes=data.num_classes,
                               progress=False).arch
    out = opened
    history = [] if state is None else list(state["history"])
    epoch_log = restart_log(out / "log.jsonl", history)
    done = _resuming(resume, len(history))
    log(f"search: {strategy!r} on {data.describe()} -> {out}{done}")

    def checkpoint(doc: dict[str, Any]) -> None:
        save_checkpoint(out / CHECKPOINT_NAME, doc)
        history.append(doc["history"][-1])

    try:
        result = strategy.search(data.x_train, data.y_train, num_classes=data.num_classes,
                                 on_epoch=epoch_log.append, progress=progress,
                                 on_checkpoint=checkpoint, resume=state)
    except FloatingPointError as exc:
        raise FloatingPointError(f"{exc}; {last_good(out / CHECKPOINT_NAME, len(history))}") \
            from None
    supernet = {"state_dict": result.supernet.state_dict(), "alphas": result.alphas}
    atomic_write_bytes(out / "supernet.pt", lambda f: torch.save(supernet, f))
    genotype = space.describe(result.arch)
    atomic_write_json(out / "arch.json", result.arch.to_json(genotype=genotype))
    final = result.history[-1]
    log(f"search done: val accuracy of the supernet {final['val_accuracy']:.4f}\n{genotype}")
    log(f"wrote {out / 'arch.json'}")
    draw_pictures(out, log)
    return result.arch


def one_shot_strategy(s: Mapping[str, Any], space: DartsCellSpace, device: torch.device,
                      augment: Mapping[str, Any],
                      distributed: DistributedContext | None = None) -> DARTS | ProxylessNAS:
    """DARTS or ProxylessNAS with a run's settings; a latency table (if any) replaces MACs
    as the cost that `cost_weight` penalises. `distributed` makes the search data-parallel."""
    tables = None
    if s.get("latency_table") is not None:
        from archsearch.hardware import LatencyTable
        from archsearch.supernet.latency_cost import op_latency_table

        tables = op_latency_table(space, LatencyTable.load(s["latency_table"]))
    common = {"epochs": s["epochs"], "channels": s["channels"], "layers": s["layers"],
              "batch_size": s["batch_size"], "seed": s["seed"], "device": device,
              "cost_weight": s.get("cost_weight", 0.0), "cost_tables": tables,
              "distributed": distributed, **augment}
    if s.get("method", "darts") == "proxyless":
        return ProxylessNAS(space, **common)
    return DARTS(space, order=s["order"], hvp=s["hvp"], **common)


def draw_pictures(out: Path, log: Log) -> None:
    """The run's pictures (cell graphs, α, curves, Pareto front); a picture that cannot be
    drawn never fails the run whose results are already written."""
    from archsearch.plots import plot_run

    try:
        paths = plot_run(out)
    except (ArchsearchError, OSError, ValueError) as exc:
        log(f"note: pictures not drawn ({exc})")
        return
    if paths:
        log(f"pictures: {', '.join(p.name for p in paths)}")


def resume_search(out: Path, *, progress: bool = True, log: Log = print) -> Arch:
    """Continue the one-shot search (DARTS or ProxylessNAS) in `out` (and its retraining, if it
    was started with one).

    A finished search is not run again: it says so, and its retraining is continued or
    started if the search asked for one and it has not finished.
    """
    settings = read_run_config(out)["settings"]
    missing = [key for key in SEARCH_KEYS if key not in settings]
    if missing:
        raise ConfigError(f"--resume {out}: config.json lacks the DARTS settings "
                          f"{', '.join(missing)}")
    if (out / "arch.json").exists():
        arch = Arch.load(out / "arch.json")
        log(f"search in {out} finished already (arch.json); nothing to resume")
    else:
        arch = run_search(settings, out, progress=progress, resume=True, log=log)
    retrain = settings.get("retrain")
    if retrain is not None:  # the search was started with --retrain
        train_dir = out / "retrain"
        if (train_dir / "config.json").exists():
            resume_train(train_dir, progress=progress, log=log)
        else:
            run_train(arch, retrain, train_dir, progress=progress, overwrite=True, log=log)
    return arch


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


def complete_train_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Training settings with every recipe value present (older runs may lack some)."""
    s = dict(settings)
    known = {k: s.get(k) for k in TRAIN_RECIPES["paper"]}
    s.update(resolve_recipe(s["dataset"], s.get("recipe"), known))
    s.setdefault("val_fraction", VAL_FRACTION)
    return s


def check_train_settings(settings: Mapping[str, Any], *, progress: bool = True) -> Trainer:
    """Everything about a training run that can be checked without its data and arch."""
    s = complete_train_settings(settings)
    check_network_size(s["channels"], s["layers"])
    if s["batch_size"] < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {s['batch_size']}")
    if not 0.0 <= s["val_fraction"] < 1.0:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {s['val_fraction']}")
    return Trainer(epochs=s["epochs"], lr=s["lr"], momentum=s["momentum"],
                   weight_decay=s["weight_decay"], grad_clip=s["grad_clip"] or None,
                   auxiliary_weight=s["auxiliary_weight"], drop_path_prob=s["drop_path"],
                   label_smoothing=s["label_smoothing"], device=resolve_device(s["device"]),
                   progress=progress)


def run_train(arch: Arch, settings: Mapping[str, Any], out: Path, *, progress: bool = True,
              overwrite: bool = False, resume: bool = False, log: Log = print) -> dict[str, Any]:
    """Retrain `arch` from scratch; writes the train run directory and returns the metrics.

    With `resume`, `out` is an interrupted run of these settings: it continues after the
    last checkpointed epoch (from scratch if there is none yet).
    """
    check_single_process("archsearch train", "retrain in one process")
    s = complete_train_settings(settings)
    trainer = check_train_settings(s, progress=progress)
    data = load_dataset(s["dataset"], s["data_dir"], seed=s["seed"])
    (x_fit, y_fit), val = hold_out(data.x_train, data.y_train, s["val_fraction"],
                                   seed=s["seed"], name=data.name)
    network = {"channels": s["channels"], "layers": s["layers"],
               "num_classes": data.num_classes, "in_channels": data.in_channels,
               "image_size": data.image_size, "auxiliary": bool(s["auxiliary"])}
    model = build_network(arch, channels=s["channels"], layers=s["layers"],
                          num_classes=data.num_classes, in_channels=data.in_channels,
                          auxiliary=s["auxiliary"], seed=s["seed"])
    _check_aux(model, data)
    _check_batch(s["batch_size"], len(x_fit))
    cutout = (16 if data.image_size >= 32 else max(1, data.image_size // 2)) if s["cutout"] else 0
    s["cutout_length"] = cutout
    loader = TensorLoader(x_fit, y_fit, batch_size=s["batch_size"], seed=s["seed"],
                          cutout_length=cutout, **augmentation(data))
    fit = CheckpointedFit(trainer, model, loader, path=out / CHECKPOINT_NAME, seed=s["seed"],
                          val_data=val, meta={"arch": arch.to_json(), "settings": s})
    state = _read_checkpoint(out, TRAIN_CHECKPOINT, TRAIN_CHECKPOINT_KEYS) if resume else None
    if state is not None:
        fit.restore(state, source=str(out / CHECKPOINT_NAME))
    out = _open_run(out, "train", s, resume=resume, overwrite=overwrite, arch=arch.to_json())
    epoch_log = restart_log(out / "log.jsonl", fit.history)
    done = _resuming(resume, fit.epoch)
    held_out = f", {len(val[1])} of its training images held out" if val is not None else ""
    log(f"train: {num_params(model):,} parameters ({s['recipe']} recipe) on "
        f"{data.describe()}{held_out} -> {out}{done}")
    fit.run(on_epoch=epoch_log.append)
    metrics = _final_metrics(fit, data, s)
    atomic_write_json(out / "metrics.json", metrics)
    save_model_file(out / "model.pt", model_document(
        arch=arch.to_json(), network=network, state_dict=model.state_dict(),
        best_state_dict=fit.best_state_dict(), config=s, metrics=metrics))
    best = (f"; best weights (epoch {metrics['best_epoch']}, val accuracy "
            f"{metrics['best_val_accuracy']:.4f}): {metrics['best_test_accuracy']:.4f}"
            if val is not None else "")
    log(f"test accuracy {metrics['test_accuracy']:.4f} on {len(data.x_test)} test images "
        f"({data.name}){best}; wrote {out / 'metrics.json'}")
    return metrics


def _final_metrics(fit: CheckpointedFit, data: Dataset, s: Mapping[str, Any]) -> dict[str, Any]:
    """Test figures of the last and the best weights (the test split is used here only,
    once training is over), with the training and validation figures."""
    test, best_test = fit.test_last_and_best(data.x_test, data.y_test)
    last = fit.history[-1]
    return {"test_accuracy": test["accuracy"], "test_loss": test["loss"],
            "train_accuracy": last["train_accuracy"], "train_loss": last["train_loss"],
            "val_accuracy": last.get("val_accuracy"), "val_loss": last.get("val_loss"),
            "best_epoch": fit.best.epoch, "best_val_accuracy": fit.best.val_accuracy,
            "best_test_accuracy": best_test["accuracy"], "best_test_loss": best_test["loss"],
            "epochs": s["epochs"], "recipe": s["recipe"],
            "num_params": num_params(fit.model, exclude_prefixes=("aux_head",)),
            "train_examples": len(fit.loader.y),
            "val_examples": 0 if fit.val_data is None else len(fit.val_data[1]),
            "test_examples": len(data.x_test), "seconds": sum(r["seconds"] for r in fit.history)}


def resume_train(out: Path, *, progress: bool = True, log: Log = print) -> dict[str, Any]:
    """Continue the training run in `out`; a finished run says so and is not run again."""
    doc = read_run_config(out)
    if doc["command"] != "train":
        raise ConfigError(f"--resume {out}: not a train run (its config.json says "
                          f"{doc['command']!r}); continue it with `archsearch "
                          f"{doc['command']} --resume {out}`")
    missing = [k for k in ("dataset", "data_dir", "seed", "device") if k not in doc["settings"]]
    if "arch" not in doc or missing:
        raise ConfigError(f"--resume {out}: config.json lacks {', '.join(missing or ['arch'])} "
                          "(a run of an older archsearch cannot be resumed)")
    if (out / "model.pt").exists():
        log(f"training in {out} finished already (model.pt); nothing to resume")
        return json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    try:
        arch = Arch.from_json(doc["arch"])
    except ArchsearchError as exc:
        raise ConfigError(f"{out / 'config.json'}: its architecture is unusable ({exc})") \
            from None
    space_of(arch, source=str(out / "config.json"))
    return run_train(arch, doc["settings"], out, progress=progress, resume=True, log=log)


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
