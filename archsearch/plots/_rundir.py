"""Run directories as `archsearch plot` and `archsearch show` read them.

Three kinds, told apart by their files (see `archsearch.runs` and `archsearch.multitrial`):
a DARTS search (config.json with command "search", log.jsonl with α per epoch, arch.json
at the end), a training run (command "train": log.jsonl, metrics.json, model.pt) and a
multi-trial search (trials.jsonl; its config.json settings name a strategy). A run still
in progress is readable too: a journal's last line cut short mid-write is skipped, and
files written at the end may be missing. A malformed file is a ConfigError naming it.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archsearch.errors import ArchsearchError, ConfigError
from archsearch.space import Arch
from archsearch.storage import read_jsonl

DARTS, TRAIN, MULTITRIAL = "darts", "train", "multitrial"
KIND_NAMES = {DARTS: "DARTS search", TRAIN: "training run", MULTITRIAL: "multi-trial search"}


@dataclass
class RunDir:
    """A run directory: its path, kind and config.json ({} where there is none)."""

    path: Path
    kind: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> dict[str, Any]:
        settings = self.config.get("settings", {})
        return settings if isinstance(settings, dict) else {}

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def json(self, name: str) -> Any:
        """The parsed file, or None when it does not exist."""
        return read_json(self.path / name) if self.has(name) else None

    def jsonl(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.path / name) if self.has(name) else []

    def arch(self, name: str) -> Arch | None:
        """The architecture file `name` (arch.json, best_arch.json), or None if absent."""
        return Arch.load(self.path / name) if self.has(name) else None

    def trained_arch(self) -> Arch | None:
        """A training run's architecture: from config.json (where runs write it), else from
        the finished run's model.pt; None when neither holds one."""
        if "arch" in self.config:
            return Arch.from_json(self.config["arch"], source=str(self.path / "config.json"))
        if not self.has("model.pt"):
            return None
        import torch

        path = self.path / "model.pt"
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            doc = checkpoint["arch"]
        except (OSError, RuntimeError, EOFError, ValueError, KeyError, TypeError,
                pickle.UnpicklingError) as exc:
            raise ConfigError(f"{path}: not a readable archsearch checkpoint "
                              f"({type(exc).__name__})") from None
        return Arch.from_json(doc, source=str(path))


def open_run(path: str | Path) -> RunDir:
    """The run in `path`; a path that holds no run is a ConfigError."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run directory")
    config = read_json(path / "config.json") if (path / "config.json").is_file() else {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path / 'config.json'}: expected a JSON object")
    run = RunDir(path, "", config)
    command = config.get("command")
    if run.has("trials.jsonl") or "strategy" in run.settings:
        run.kind = MULTITRIAL
    elif command == "train" or (command is None and run.has("metrics.json")):
        run.kind = TRAIN
    elif command == "search" or run.has("arch.json") or run.has("log.jsonl"):
        run.kind = DARTS
    else:
        raise ConfigError(f"{path} is not a run directory (no config.json, log.jsonl, "
                          "trials.jsonl or metrics.json)")
    return run


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None


def space_for(arch: Arch, *, source: str) -> Any:
    """The space `arch` was made in (rebuilt from its space_args), checked against it."""
    from archsearch.runs import space_of

    try:
        return space_of(arch, source=source)
    except ArchsearchError:
        raise
    except (TypeError, ValueError, KeyError) as exc:  # odd space_args the space rejects
        raise ConfigError(f"{source}: cannot rebuild its space ({exc})") from None


def list_files(path: Path) -> list[tuple[str, int]]:
    """(path relative to the run, size in bytes) of every file, sorted; the temporary files
    of writes in progress (hidden names) are left out."""
    out = []
    for file in sorted(path.rglob("*")):
        rel = file.relative_to(path)
        if file.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append((rel.as_posix(), file.stat().st_size))
    return out
