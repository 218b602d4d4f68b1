"""What the kill tests share: run a CLI command straight through, run it again and kill it
with SIGKILL after its first checkpoint, then resume the killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class KilledRun:
    """A run killed after its first checkpoint and resumed, and its uninterrupted twin."""

    straight: Path  # the run that was never interrupted
    cut: Path  # the killed run, after its resume
    killed_log: list[dict]  # the epoch records the killed run had logged when it died
    killed_files: frozenset[str]  # the names in its directory when it died

    @staticmethod
    def log(run: Path) -> list[dict]:
        """The epoch records without their timings (wall-clock seconds differ)."""
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (run / "log.jsonl").read_text().splitlines()]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "archsearch", *args]


@pytest.fixture
def kill_and_resume(tmp_path: Path) -> Callable[[Sequence[str]], KilledRun]:
    """`run(args)` with `args` an `archsearch search|train ...` command line (no --out):
    runs it to the end in tmp/straight; runs it in tmp/cut and SIGKILLs it as soon as its
    checkpoint.pt appears (it must still be running); resumes tmp/cut with
    `archsearch <command> --resume`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(args: Sequence[str]) -> KilledRun:
        straight, cut = tmp_path / "straight", tmp_path / "cut"
        subprocess.run(_cli(*args, "--out", str(straight)), check=True, env=env, timeout=300,
                       capture_output=True)
        proc = subprocess.Popen(_cli(*args, "--out", str(cut)), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if (cut / "checkpoint.pt").exists():
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"`archsearch {args[0]}` ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        killed = KilledRun(straight, cut, KilledRun.log(cut),
                           frozenset(p.name for p in cut.iterdir()))
        subprocess.run(_cli(args[0], "--resume", str(cut), "--quiet"), check=True, env=env,
                       timeout=300, capture_output=True)
        return killed

    return run
