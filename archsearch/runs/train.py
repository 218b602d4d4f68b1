"""Training runs, as `archsearch train` (and `search --retrain`) perform them: a recipe, a
held-out part for the best weights, a checkpoint every epoch, the model file at the end."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from archsearch.data import Dataset, TensorLoader, load_dataset
from archsearch.distributed import (
    check_single_process,
)
from archsearch.errors import ArchsearchError, ConfigError
from archsearch.hardware import num_params
from archsearch.networks.darts import check_network_size
from archsearch.runs._common import (
    VAL_FRACTION,
    Log,
    augmentation,
    build_network,
    check_batch,
    open_run,
    read_run_checkpoint,
    resolve_device,
    resuming,
    space_of,
)
from archsearch.space import Arch
from archsearch.storage import atomic_write_json
from archsearch.train import (
    CHECKPOINT_NAME,
    TRAIN_CHECKPOINT,
    TRAIN_RECIPES,
    CheckpointedFit,
    Trainer,
    read_run_config,
    resolve_recipe,
    restart_log,
)
from archsearch.train._resumable import TRAIN_CHECKPOINT_KEYS, hold_out
from archsearch.train.model_file import model_document, save_model_file


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
    check_batch(s["batch_size"], len(x_fit))
    cutout = (16 if data.image_size >= 32 else max(1, data.image_size // 2)) if s["cutout"] else 0
    s["cutout_length"] = cutout
    loader = TensorLoader(x_fit, y_fit, batch_size=s["batch_size"], seed=s["seed"],
                          cutout_length=cutout, **augmentation(data))
    fit = CheckpointedFit(trainer, model, loader, path=out / CHECKPOINT_NAME, seed=s["seed"],
                          val_data=val, meta={"arch": arch.to_json(), "settings": s})
    state = read_run_checkpoint(out, TRAIN_CHECKPOINT, TRAIN_CHECKPOINT_KEYS) if resume else None
    if state is not None:
        fit.restore(state, source=str(out / CHECKPOINT_NAME))
    out = open_run(out, "train", s, resume=resume, overwrite=overwrite, arch=arch.to_json())
    epoch_log = restart_log(out / "log.jsonl", fit.history)
    done = resuming(resume, fit.epoch)
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


def _check_aux(model: torch.nn.Module, data: Dataset) -> None:
    # The auxiliary head needs a feature map of at least 2×2 after two reductions.
    if getattr(model, "aux_head", None) is not None and data.image_size < 8:
        raise ConfigError(f"--auxiliary needs images of at least 8×8, got {data.image_size}")
