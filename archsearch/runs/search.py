"""One-shot search runs (DARTS, ProxylessNAS), as `archsearch search` performs them: also
under torchrun, where every rank searches and rank 0 writes, and resumed from checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from archsearch.data import load_dataset
from archsearch.distributed import (
    DistributedContext,
    check_one_shot_run,
)
from archsearch.errors import ArchsearchError, ConfigError
from archsearch.runs._common import (
    SEARCH_KEYS,
    Log,
    augmentation,
    check_batch,
    open_run,
    read_run_checkpoint,
    resolve_device,
    resuming,
)
from archsearch.runs.train import resume_train, run_train
from archsearch.space import Arch
from archsearch.spaces.darts import DartsCellSpace
from archsearch.storage import atomic_write_bytes, atomic_write_json
from archsearch.strategies._one_shot import SEARCH_CHECKPOINT, SEARCH_CHECKPOINT_KEYS
from archsearch.strategies.darts import DARTS
from archsearch.strategies.proxyless import ProxylessNAS
from archsearch.train import (
    CHECKPOINT_NAME,
    last_good,
    read_run_config,
    restart_log,
    save_checkpoint,
)


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
    check_batch(s["batch_size"], len(data.x_train) // 2)
    state = read_run_checkpoint(out, SEARCH_CHECKPOINT, SEARCH_CHECKPOINT_KEYS) if resume else None
    # A search run may hold the retraining of its cell in retrain/: --overwrite replaces both.
    opened = ctx.on_main(lambda: open_run(out, "search", s, resume=resume, overwrite=overwrite,
                                           subdirs=("retrain",)), what=f"create {out}")
    if not ctx.is_main:  # the same search, writing nothing
        return strategy.search(data.x_train, data.y_train, num_classes=data.num_classes,
                               progress=False).arch
    out = opened
    history = [] if state is None else list(state["history"])
    epoch_log = restart_log(out / "log.jsonl", history)
    done = resuming(resume, len(history))
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


