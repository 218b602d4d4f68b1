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

    def read(self, *, repair: bool = False) -> list[dict[str, Any]]:
        """The records so far ([] before the first); see `read_jsonl`."""
        return read_jsonl(self.path, repair=repair) if self.path.exists() else []


def read_jsonl(path: str | Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """The records of a JSON Lines file: one JSON object per line, blank lines skipped.

    A last line without its newline is a record cut short by a crash mid-write (or being
    written right now): it is left out, and with `repair` also cut from the file, so that
    later appends start on a line of their own. Any other bad line is corruption.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8, or has a line that is not a
            JSON object — in one line naming the file and the line number.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
        if repair:
            atomic_write_text(path, text)
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is corrupt: line {number} is not valid JSON "
                              f"({exc.msg})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path} is corrupt: line {number} is not a JSON object")
        records.append(record)
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
