"""A real DARTS search process killed with SIGKILL after its first checkpoint resumes to the
same architecture, log and supernet, bit for bit, as a search that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

EPOCHS = 4


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "archsearch", *args]


def _log(run: Path) -> list[dict]:
    """The epoch records without their timings (wall-clock seconds differ between runs)."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 25)  # 80 training images: 2 steps an epoch at batch 16
    x = (rng.random((100, 8, 8)) * 100 + y[:, None, None] * 40).astype(np.uint8)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x, y_train=y)
    return path


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_darts_search_resumes_to_the_uninterrupted_result(tmp_path: Path,
                                                                 npz: Path) -> None:
    args = ["search", "--dataset", "npz", "--data-dir", str(npz), "--epochs", str(EPOCHS),
            "--channels", "4", "--layers", "3", "--batch-size", "16", "--seed", "3", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
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
    assert proc.poll() is None, "the search ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (cut / "arch.json").exists()
    # The checkpoint of an epoch is written before its log line: a kill in between leaves
    # the log an epoch short, which the resume rewrites from the checkpoint.
    assert len(_log(cut)) < EPOCHS
    subprocess.run(_cli("search", "--resume", str(cut), "--quiet"), check=True, env=env,
                   timeout=300, capture_output=True)
    assert [r["epoch"] for r in _log(cut)] == list(range(1, EPOCHS + 1))
    assert _log(cut) == _log(straight)
    assert (cut / "arch.json").read_bytes() == (straight / "arch.json").read_bytes()
    a, b = (torch.load(run / "supernet.pt", weights_only=True) for run in (straight, cut))
    assert a["alphas"] == b["alphas"]
    assert all(torch.equal(a["state_dict"][k], v) for k, v in b["state_dict"].items())
    assert sorted(p.name for p in cut.iterdir()) == sorted(p.name for p in straight.iterdir())
