"""Run directories and atomic file writes.

Every result file is written to a temporary file in the same folder and renamed into
place, so a crash leaves either the old file or the new one, never half of one. Epoch logs
are append-only JSON Lines, one complete record per line, flushed and fsynced per record.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from archsearch.errors import ConfigError


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, doc: Any) -> Path:
    return atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=False) + "\n")


def atomic_write_bytes(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call `write(file_object)` on a temporary file, fsync it, then rename it to `path`.

    A crash or an exception leaves either the old file or the new one, never half of one,
    and no temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); results get the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@functools.cache
def _umask() -> int:
    # Read once: os.umask can only be read by setting it, which is not thread-safe.
    mask = os.umask(0)
    os.umask(mask)
    return mask


class JsonlLog:
    """An append-only JSON Lines file: one complete record per line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(dict(record), separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                records.append(json.loads(line))
        return records


def prepare_run_dir(path: str | Path, *, overwrite: bool = False,
                    subdirs: tuple[str, ...] = ()) -> Path:
    """Create the run directory; refuse to mix a new run into a non-empty one.

    With `overwrite`, the files of an existing run are removed, and so are the folders
    named in `subdirs` (with their files) — but only after checking that nothing else is
    there, so a refusal deletes nothing.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise ConfigError(f"--out {path} already holds a run; choose another directory "
                              "or pass --overwrite")
        _clear_run_dir(path, subdirs)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {path}: cannot create the run directory "
                          f"({exc.strerror})") from None
    return path


def _clear_run_dir(path: Path, subdirs: tuple[str, ...]) -> None:
    children = list(path.iterdir())
    for child in children:
        if child.is_dir() and not child.is_symlink():
            if child.name not in subdirs or any(c.is_dir() for c in child.iterdir()):
                raise ConfigError(f"--out {path} contains the folder {child.name}; "
                                  "remove it yourself or choose another directory")
    for child in children:
        if child.is_dir() and not child.is_symlink():
            for inner in child.iterdir():
                inner.unlink()
            child.rmdir()
        else:
            child.unlink()
