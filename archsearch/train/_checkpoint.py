"""Checkpoints of long runs: atomic torch files, RNG states, and guards against divergence.

A run that can be killed at any moment (Ctrl-C, `kill -9`) and continued with `--resume`
needs, after every epoch, everything its later epochs depend on: weights, optimiser states
(momentum buffers, Adam moments), the epoch, the random generators (the global torch one
draws drop-path masks; the loaders reseed per epoch), and its history. Files are written
to a temporary name and renamed (`archsearch.storage`), so a kill leaves the previous
checkpoint or the new one, never half of one. They hold only tensors and plain Python
values and are read with `torch.load(..., weights_only=True)`: never unpickled code.
(Resuming this way follows DARTS' own retraining scripts, arXiv:1806.09055, which save
weights per epoch; here optimiser and RNG states are saved too, so a resumed run is exact.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from archsearch.errors import ConfigError
from archsearch.storage import JsonlLog, atomic_write_bytes, atomic_write_text

CHECKPOINT_NAME = "checkpoint.pt"
# A cross-entropy loss starts near ln K (2.3 for 10 classes, 6.9 for 1000); one above this
# means the run has diverged even if it is still finite, so it is stopped like a NaN.
MAX_LOSS = 1000.0


def forked_rng(device: torch.device) -> AbstractContextManager[Any]:
    """Fork the global CPU RNG (and `device`'s, if an accelerator): restored on exit."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    index = torch.empty(0, device=device).device.index or 0  # "cuda" -> "cuda:N"
    return torch.random.fork_rng(devices=[index], device_type=device.type)


def rng_state(device: torch.device | str = "cpu") -> dict[str, Any]:
    """The global generators a training step may draw from, as checkpointable values."""
    device = torch.device(device)
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # legacy global numpy RNG
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device | str = "cpu") -> None:
    """Restore what `rng_state` returned (a ConfigError if it is not such a state)."""
    device = torch.device(device)
    try:
        torch.set_rng_state(state["torch"])
        np_state = state["numpy"]
        np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32),
                             np_state["pos"], np_state["has_gauss"], np_state["cached"]))
        if device.type == "cuda" and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], device)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise ConfigError(f"checkpoint holds no usable RNG state ({_first_line(exc)})") from None


def save_checkpoint(path: str | Path, doc: Mapping[str, Any]) -> Path:
    """`torch.save(doc)` to `path` atomically (temporary file, fsync, rename)."""
    return atomic_write_bytes(path, lambda f: torch.save(dict(doc), f))


def load_checkpoint(path: str | Path, *, kind: str, keys: Iterable[str]) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` with `doc["format"] == kind`.

    Raises:
        ConfigError: the file is missing, truncated, not a torch file, of another format, or
            lacks one of `keys` — in one line that names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint there")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, garbage, pickled code: all bad input
        raise ConfigError(f"{path}: not a readable checkpoint ({_first_line(exc)}); "
                          "it may be truncated") from None
    if not isinstance(doc, dict) or doc.get("format") != kind:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(f"{path}: expected a {kind!r} checkpoint, found {found!r}")
    missing = [key for key in keys if key not in doc]
    if missing:
        raise ConfigError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return doc


def load_module_state(module: nn.Module, state: Any, *, source: str) -> None:
    """`module.load_state_dict(state)`, a mismatch reported as a one-line ConfigError."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(f"{source}: weights do not fit the network ({_first_line(exc)})") \
            from None


def check_loss(loss: float, *, epoch: int, step: int, max_loss: float | None = MAX_LOSS) -> None:
    """Stop a diverging run: a loss that is not finite or exceeds `max_loss`.

    Raises:
        FloatingPointError: naming the (1-based) epoch and step.
    """
    if not math.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss} at epoch {epoch}, step {step}; "
                                 "lower --lr or check the data")
    if max_loss is not None and loss > max_loss:
        raise FloatingPointError(f"training loss diverged to {loss:.4g} (above {max_loss:g}) at "
                                 f"epoch {epoch}, step {step}; lower --lr or check the data")


def check_finite_weights(module: nn.Module, *, epoch: int) -> None:
    """Refuse to checkpoint weights that the last update made NaN or infinite."""
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise FloatingPointError(f"weights became non-finite ({name}) at the end of epoch "
                                     f"{epoch}; lower --lr or check the data")


def clone_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of `module.state_dict()` (the live one changes as training goes on)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files a killed atomic write left behind (`.NAME.XXXX.tmp`)."""
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The config.json of a run directory (`command`, `settings`, ...), for `--resume`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"--resume {run_dir}: no such run directory")
    try:
        doc = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        if not isinstance(doc["settings"], dict) or not isinstance(doc["command"], str):
            raise TypeError
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise ConfigError(f"--resume {run_dir}: no readable config.json (is it a run "
                          "directory of archsearch search or train?)") from None
    return doc


def restart_log(path: Path, history: list[dict[str, Any]]) -> JsonlLog:
    """The epoch log rewritten (atomically) from a checkpoint's history.

    The checkpoint of an epoch is written before its log line, so a kill in between leaves
    the log one epoch short, and a kill mid-append a half line: rewriting puts every
    checkpointed epoch in the log exactly once, and the resumed run appends the rest.
    """
    atomic_write_text(path, "".join(json.dumps(r, separators=(",", ":")) + "\n"
                                    for r in history))
    return JsonlLog(path)


def last_good(path: Path, epochs_done: int) -> str:
    """Where a stopped run's last good checkpoint is, for its error message."""
    if epochs_done == 0:
        return "no checkpoint was written (the run stopped in its first epoch)"
    return f"the last good checkpoint (epoch {epochs_done}) stays in {path}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
